import crypto from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import jwt from 'jsonwebtoken';

/**
 * A local stand-in for StoryBang's JWT service (Security/Jwt), answering exactly as the real one does
 * (see shared/STORYBANG.md), so tests exercise the worker against its real answers rather than ones we wish
 * it gave:
 *
 * - `POST /Create_Jwt {Id}` -> `200 {Status: true, Response: "Security created successfully", Content: <token>}`,
 *   the token HS256 with payload `{Id}` and a one-hour expiry.
 * - `POST /Verify_Jwt {Token}`:
 *   - valid: `200 {Status: true, Response: "Valid token", Id: {Id, iat, exp}}` (the decoded payload under `Id`);
 *   - invalid or expired: `401 {Status: false, Response: "Invalid token or session expired. Please log in again."}`;
 *   - no token: `401 {Status: false, Response: "Session expired. Please log in again."}`.
 *
 * Usage:
 * ```ts
 * const service = await startStorybangJwt();
 * // the original .env's API_JWT; the worker then calls `${baseUrl}/Verify_Jwt`
 * const env = { API_JWT: service.baseUrl };
 * const token = await service.create('alice'); // what StoryBang's server mints per request
 * const stale = service.expired('alice');      // signed by the same service, expired an hour ago
 * await service.close();
 * ```
 */
export interface StorybangJwt {
  /** The service's base URL without a trailing slash: what the original `.env` calls `API_JWT`. */
  baseUrl: string;
  /** The HS256 secret it signs with, for a worker that verifies locally (`JWT_SECRET`). */
  secret: string;
  /** A fresh one-hour token for `id`, obtained through `POST /Create_Jwt` as StoryBang's server does. */
  create(id: string): Promise<string>;
  /** A token for `id` signed by this service that expired an hour ago. */
  expired(id: string): string;
  /** The parsed bodies of every `/Verify_Jwt` request, in order (a body that was not JSON is kept as text). */
  verifyRequests: unknown[];
  close(): Promise<void>;
}

const CREATED = 'Security created successfully';
export const VALID = 'Valid token';
export const INVALID_OR_EXPIRED = 'Invalid token or session expired. Please log in again.';
export const NO_TOKEN = 'Session expired. Please log in again.';

const TOKEN_LIFETIME_S = 3600;

export async function startStorybangJwt(secret: string = crypto.randomBytes(32).toString('hex')): Promise<StorybangJwt> {
  const verifyRequests: unknown[] = [];

  const server = http.createServer((req, res) => {
    let text = '';
    req.setEncoding('utf8');
    req.on('data', (chunk: string) => (text += chunk));
    req.on('end', () => {
      const body = parse(text);
      const answer = (status: number, payload: unknown): void => {
        res.writeHead(status, { 'content-type': 'application/json; charset=utf-8' });
        res.end(JSON.stringify(payload));
      };
      if (req.method === 'POST' && req.url === '/Create_Jwt') {
        const Id = isRecord(body) ? body.Id : undefined;
        answer(200, { Status: true, Response: CREATED, Content: jwt.sign({ Id }, secret, { algorithm: 'HS256', expiresIn: TOKEN_LIFETIME_S }) });
        return;
      }
      if (req.method === 'POST' && req.url === '/Verify_Jwt') {
        verifyRequests.push(body);
        const token = isRecord(body) ? body.Token : undefined;
        if (!token) {
          answer(401, { Status: false, Response: NO_TOKEN });
          return;
        }
        try {
          answer(200, { Status: true, Response: VALID, Id: jwt.verify(String(token), secret, { algorithms: ['HS256'] }) });
        } catch {
          answer(401, { Status: false, Response: INVALID_OR_EXPIRED });
        }
        return;
      }
      res.writeHead(404, { 'content-type': 'text/plain' });
      res.end('Not Found');
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;

  return {
    baseUrl,
    secret,
    verifyRequests,
    async create(id: string): Promise<string> {
      const res = await fetch(`${baseUrl}/Create_Jwt`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ Id: id }),
      });
      const answer = (await res.json()) as { Status?: boolean; Content?: unknown };
      if (res.status !== 200 || answer.Status !== true || typeof answer.Content !== 'string') {
        throw new Error(`Create_Jwt answered ${res.status}`);
      }
      return answer.Content;
    },
    expired(id: string): string {
      const now = Math.floor(Date.now() / 1000);
      return jwt.sign({ Id: id, iat: now - 2 * TOKEN_LIFETIME_S, exp: now - TOKEN_LIFETIME_S }, secret, { algorithm: 'HS256' });
    },
    close(): Promise<void> {
      server.closeAllConnections();
      return new Promise((resolve) => server.close(() => resolve()));
    },
  };
}

function parse(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
