import type { KeyObject } from 'node:crypto';
import crypto from 'node:crypto';
import jwt from 'jsonwebtoken';
import nodeFetch from 'node-fetch';
import { withDeadline } from '../../base/abort';
import { abortError, permanentError, transientError, USER_MESSAGES, WorkerError } from '../../base/errors';
import { isTransientStatus } from '../../base/retryPolicy';
import { KeyKind, validateAlgorithms, validatePublicKey } from '../../base/jwtAlgorithms';
import type { TokenVerifier } from '../ports';

/** The contract's message for an expired token: the sentence the person reads too. */
const EXPIRED = USER_MESSAGES.SESSION_EXPIRED;

/** Real JWTs are a few hundred bytes; anything this big is junk or an attempt to make us parse a lot. */
export const MAX_TOKEN_LENGTH = 8192;

export interface JwtSettings {
  /** HMAC secret (JWT_SECRET). Exactly one of `secret` and `publicKey`. */
  secret?: string;
  /** PEM public key (JWT_PUBLIC_KEY): RSA, RSA-PSS or EC. */
  publicKey?: string;
  /** Allow-list (JWT_ALGORITHMS); see `defaultAlgorithms` and `validateAlgorithms`. */
  algorithms: jwt.Algorithm[];
  issuer?: string;
  audience?: string;
  /** Leeway for `exp` and `nbf`, in seconds (JWT_CLOCK_TOLERANCE_S, default 5). */
  clockToleranceS: number;
  /** The claim that must equal the job's `Id` (JWT_USER_CLAIM, default `Id`). */
  userClaim: string;
}

/** Verifies tokens locally with jsonwebtoken. Construct it at start: a bad key or allow-list throws. */
export class JwtTokenVerifier implements TokenVerifier {
  private readonly key: KeyObject;
  private readonly options: jwt.VerifyOptions & { complete?: false };

  constructor(private readonly settings: JwtSettings) {
    const { secret, publicKey } = settings;
    if ((secret === undefined) === (publicKey === undefined)) {
      throw new Error('Give exactly one of a JWT secret and a JWT public key');
    }
    const kind: KeyKind = secret !== undefined ? 'secret' : 'publicKey';
    const problem = validateAlgorithms(kind, settings.algorithms) ?? (publicKey !== undefined ? validatePublicKey(publicKey, settings.algorithms) : undefined);
    if (problem) throw new Error(`Unusable JWT settings: ${problem}`);

    // Typed KeyObjects pin the key's role: jsonwebtoken would otherwise try a string as a public key first.
    this.key = secret !== undefined ? crypto.createSecretKey(Buffer.from(secret, 'utf8')) : crypto.createPublicKey(publicKey!);
    this.options = {
      algorithms: settings.algorithms,
      issuer: settings.issuer,
      audience: settings.audience,
      clockTolerance: settings.clockToleranceS,
    };
  }

  async verify(token: string, userId: string, signal: AbortSignal): Promise<void> {
    if (signal.aborted) throw abortError(signal.reason);
    checkShape(token);
    let payload: jwt.JwtPayload | string;
    try {
      payload = jwt.verify(token, this.key, this.options);
    } catch (err) {
      throw fromJwtError(err);
    }
    checkOwner(typeof payload === 'object' ? [payload[this.settings.userClaim]] : [], userId);
  }
}

export interface RemoteVerifierOptions {
  /**
   * JWT_VERIFY_URL: answers `POST {Token}` with `{Status: boolean, ...}`. The StoryBang JWT service's
   * `/Verify_Jwt` answers `200 {Status: true, Response: "Valid token", Id: {Id, iat, exp}}` or
   * `401 {Status: false, Response: "..."}`.
   */
  url: string;
  /** Per-request timeout; the caller's signal also cancels. */
  timeoutMs: number;
  userClaim: string;
  fetch?: typeof nodeFetch;
}

/** Delegates to a verification service (the StoryBang JWT service), then checks the token's owner. */
export class RemoteTokenVerifier implements TokenVerifier {
  private readonly fetch: typeof nodeFetch;

  constructor(private readonly options: RemoteVerifierOptions) {
    this.fetch = options.fetch ?? nodeFetch;
  }

  async verify(token: string, userId: string, signal: AbortSignal): Promise<void> {
    if (signal.aborted) throw abortError(signal.reason);
    checkShape(token);
    const { status, body } = await this.post(token, signal);

    if (isTransientStatus(status)) {
      throw transientError(`Token verification service answered ${status}`, { status });
    }
    const answer = parseAnswer(body);
    if (status >= 300) {
      throw answer?.Status === false
        ? refusal(answer, status, token)
        : permanentError('INVALID_TOKEN', `Invalid token: the verification service answered ${status}`, { status });
    }
    if (answer === undefined) {
      throw transientError('Token verification service sent an answer without a boolean Status', { status });
    }
    if (answer.Status === false) throw refusal(answer, status, token);

    // The service vouched for the signature, so the token's own payload is trustworthy when the answer carries no claims.
    const stated = statedClaims(answer, this.options.userClaim);
    checkOwner(stated.length > 0 ? stated : [decodedClaim(token, this.options.userClaim)], userId);
  }

  private async post(token: string, signal: AbortSignal): Promise<{ status: number; body: string }> {
    const request = withDeadline(signal, this.options.timeoutMs);
    try {
      const res = await this.fetch(this.options.url, {
        method: 'POST',
        headers: { 'content-type': 'application/json', accept: 'application/json' },
        body: JSON.stringify({ Token: token }),
        signal: request.signal,
        size: 1024 * 1024,
      });
      return { status: res.status, body: await res.text() };
    } catch (err) {
      if (signal.aborted) throw abortError(signal.reason);
      if (request.timedOut()) {
        throw transientError(`Token verification service did not answer within ${this.options.timeoutMs} ms`, { cause: err });
      }
      throw transientError('Token verification service is unreachable', { cause: err });
    } finally {
      request.dispose();
    }
  }
}

function checkShape(token: unknown): asserts token is string {
  const problem =
    typeof token !== 'string'
      ? `expected a string, got ${token === null ? 'null' : typeof token}`
      : token.length === 0
        ? 'it is empty'
        : token.length > MAX_TOKEN_LENGTH
          ? `it is longer than ${MAX_TOKEN_LENGTH} characters`
          : token.split('.').length !== 3
            ? 'it is not a JWT (three dot-separated parts)'
            : undefined;
  if (problem) throw permanentError('INVALID_TOKEN', `Invalid token: ${problem}`);
}

/** Every place that names the user must name this one; no place at all is a refusal too. */
function checkOwner(claims: unknown[], userId: string): void {
  const ok = claims.length > 0 && claims.every((c) => (typeof c === 'string' || (typeof c === 'number' && Number.isFinite(c))) && String(c) === userId);
  if (!ok) throw permanentError('INVALID_TOKEN', 'Token does not belong to this user');
}

function fromJwtError(err: unknown): WorkerError {
  if (err instanceof jwt.TokenExpiredError) return permanentError('SESSION_EXPIRED', EXPIRED, { cause: err });
  if (err instanceof jwt.NotBeforeError) {
    return permanentError('INVALID_TOKEN', 'Invalid token: it is not valid yet', { cause: err });
  }
  // jsonwebtoken's own messages are fixed texts ("invalid signature", "jwt issuer invalid. expected: x"), never the token.
  const reason = err instanceof jwt.JsonWebTokenError ? err.message : 'it could not be verified';
  return permanentError('INVALID_TOKEN', `Invalid token: ${reason}`, { cause: err });
}

interface ServiceAnswer extends Record<string, unknown> {
  Status: boolean;
}

function parseAnswer(body: string): ServiceAnswer | undefined {
  try {
    const value: unknown = JSON.parse(body);
    return isRecord(value) && typeof value.Status === 'boolean' ? (value as ServiceAnswer) : undefined;
  } catch {
    return undefined;
  }
}

function refusal(answer: ServiceAnswer, status: number, token: string): WorkerError {
  // StoryBang's service says why in `Response`; others use Message, message or an error object.
  const said = [answer.Response, answer.Message, answer.message, answer.error, answer.Error]
    .flatMap((v) => (typeof v === 'string' ? [v] : isRecord(v) ? [v.name, v.message] : []))
    .filter((v): v is string => typeof v === 'string')
    .join(' ')
    .split(token)
    .join('[token]');
  // The service's words go to the cause only: they are not ours to show the user.
  const cause = new Error(`Verification service refused the token${said ? `: ${said.slice(0, 200)}` : ''}`);
  // StoryBang's service cannot tell an expired token from a bad one ("Invalid token or session expired."):
  // whenever the text allows that the session ran out, the person is asked to log in again.
  return /expired/i.test(said)
    ? permanentError('SESSION_EXPIRED', EXPIRED, { cause, status })
    : permanentError('INVALID_TOKEN', 'Invalid token: refused by the verification service', { cause, status });
}

/** The user claim wherever services of this kind put decoded claims. */
function statedClaims(answer: ServiceAnswer, claim: string): unknown[] {
  return [answer.Data, answer.data, answer.decoded, answer].flatMap((o) => (isRecord(o) && Object.hasOwn(o, claim) ? [unnested(o[claim], claim)] : []));
}

/**
 * A claim whose value is an object holding the claim is the decoded payload nested under that name:
 * StoryBang's service answers `Id: {Id, iat, exp}`. Any other object stays as it is and is refused.
 */
function unnested(value: unknown, claim: string): unknown {
  return isRecord(value) && Object.hasOwn(value, claim) ? value[claim] : value;
}

function decodedClaim(token: string, claim: string): unknown {
  const payload = jwt.decode(token);
  return isRecord(payload) ? payload[claim] : undefined;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
