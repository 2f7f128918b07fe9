import http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { PNG } from 'pngjs';

/** A canned answer. `json` is serialised with Content-Type application/json; `body` is sent as is. */
export type FakeResponse =
  | { status?: number; json?: unknown; body?: string | Buffer; headers?: Record<string, string>; delayMs?: number }
  /** Accepts the request and never answers. */
  | { hang: true }
  /**
   * Sends the headers and half the body, then drops the connection. Chunked by default;
   * `contentLength: true` announces the full length instead, which node-fetch@2 does not notice
   * being cut short (the client then waits for its own timeout).
   */
  | { truncate: true; contentLength?: boolean; status?: number; json?: unknown; body?: string | Buffer };

interface RecordedCall {
  headers: http.IncomingHttpHeaders;
  /** Parsed JSON when the body is JSON, else the raw text. */
  body: unknown;
  /** When the request arrived (Date.now()). */
  at: number;
}

export interface FakeXai {
  /** Full URL of the generations endpoint. */
  url: string;
  /** http://127.0.0.1:<port> */
  baseUrl: string;
  /** Every POST, in order. */
  calls: RecordedCall[];
  /** POSTs received and not yet answered (a hanging one stays in flight), and the most there ever were at once. */
  readonly inFlight: number;
  readonly peakInFlight: number;
  /**
   * Leaves every POST unanswered until the returned function is called (then each gets its answer), so a
   * test can see how many requests a worker has in flight at once.
   */
  stall(): () => void;
  /** Every GET /files/<name>, in order. */
  downloads: Array<{ name: string; headers: http.IncomingHttpHeaders }>;
  /** Queues answers for the next POSTs, used in order; after them the default answers. */
  script(responses: FakeResponse[]): void;
  setDefault(response: FakeResponse): void;
  /** Serves `response` at GET /files/<name>; unknown names answer 404. */
  setFile(name: string, response: FakeResponse): void;
  fileUrl(name: string): string;
  close(): Promise<void>;
}

const GENERATIONS_PATH = '/v1/images/generations';

/** A real 2x2 PNG, small enough to send in every default answer. */
export const TINY_PNG: Buffer = (() => {
  const png = new PNG({ width: 2, height: 2 });
  png.data.fill(0x7f);
  return PNG.sync.write(png);
})();
export const TINY_PNG_BASE64 = TINY_PNG.toString('base64');
export const DEFAULT_COST_TICKS = 200_000_000;

/** The answer xAI gives when all goes well, with the prompt echoed as the revised prompt. */
export function successAnswer(prompt = 'a test image'): FakeResponse {
  return {
    status: 200,
    json: {
      data: [{ b64_json: TINY_PNG_BASE64, mime_type: 'image/png', revised_prompt: `Revised: ${prompt}` }],
      usage: { cost_in_usd_ticks: DEFAULT_COST_TICKS },
    },
  };
}

export interface FakeXaiOptions {
  /** Answer once the script is used up. Default: successAnswer with the request's prompt. */
  default?: FakeResponse;
}

/** A local HTTP server speaking xAI's images contract, for tests that want the real HTTP path. */
export async function startFakeXai(opts: FakeXaiOptions = {}): Promise<FakeXai> {
  const calls: RecordedCall[] = [];
  const downloads: FakeXai['downloads'] = [];
  const queue: FakeResponse[] = [];
  const files = new Map<string, FakeResponse>();
  const sockets = new Set<Socket>();
  const timers = new Set<NodeJS.Timeout>();
  let fallback = opts.default;
  let inFlight = 0;
  let peakInFlight = 0;
  let held: Array<() => void> | undefined;

  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const path = (req.url ?? '/').split('?')[0];
      if (req.method === 'POST') {
        const raw = Buffer.concat(chunks).toString('utf8');
        const body = parseJson(raw);
        calls.push({ headers: req.headers, body, at: Date.now() });
        inFlight += 1;
        peakInFlight = Math.max(peakInFlight, inFlight);
        // 'close' comes after the answer is sent and when the client gives up first.
        res.once('close', () => (inFlight -= 1));
        const prompt = (body as { prompt?: unknown } | null)?.prompt;
        const answer = queue.shift() ?? fallback ?? successAnswer(typeof prompt === 'string' ? prompt : undefined);
        if (held) held.push(() => respond(res, answer));
        else respond(res, answer);
      } else if (req.method === 'GET' && path.startsWith('/files/')) {
        const name = decodeURIComponent(path.slice('/files/'.length));
        downloads.push({ name, headers: req.headers });
        respond(res, files.get(name) ?? { status: 404, body: 'not found' });
      } else {
        respond(res, { status: 404, body: 'not found' });
      }
    });
  });

  function respond(res: http.ServerResponse, answer: FakeResponse): void {
    if ('hang' in answer) return;
    const status = answer.status ?? 200;
    const payload =
      answer.body !== undefined ? Buffer.from(answer.body) : answer.json !== undefined ? Buffer.from(JSON.stringify(answer.json)) : Buffer.alloc(0);
    const headers: Record<string, string> = { 'Content-Length': String(payload.length) };
    if (answer.body === undefined && answer.json !== undefined) headers['Content-Type'] = 'application/json';
    if ('truncate' in answer) {
      if (!answer.contentLength) delete headers['Content-Length'];
      res.writeHead(status, headers);
      res.write(payload.subarray(0, Math.floor(payload.length / 2)), () => res.socket?.destroy());
      return;
    }
    Object.assign(headers, answer.headers);
    const send = (): void => {
      res.writeHead(status, headers);
      res.end(payload);
    };
    if (!answer.delayMs) return send();
    const timer = setTimeout(() => {
      timers.delete(timer);
      send();
    }, answer.delayMs);
    timers.add(timer);
  }

  server.on('connection', (socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;

  let closing: Promise<void> | undefined;
  return {
    url: baseUrl + GENERATIONS_PATH,
    baseUrl,
    calls,
    downloads,
    get inFlight() {
      return inFlight;
    },
    get peakInFlight() {
      return peakInFlight;
    },
    stall: () => {
      const waiting: Array<() => void> = (held ??= []);
      return () => {
        if (held === waiting) held = undefined;
        waiting.splice(0).forEach((answer) => answer());
      };
    },
    script: (responses) => void queue.push(...responses),
    setDefault: (response) => void (fallback = response),
    setFile: (name, response) => void files.set(name, response),
    fileUrl: (name) => `${baseUrl}/files/${encodeURIComponent(name)}`,
    close: () =>
      (closing ??= new Promise<void>((resolve) => {
        for (const t of timers) clearTimeout(t);
        server.close(() => resolve());
        // Hanging requests and idle keep-alive connections would otherwise hold jest open.
        for (const s of sockets) s.destroy();
      })),
  };
}

function parseJson(raw: string): unknown {
  try {
    return JSON.parse(raw);
  } catch {
    return raw;
  }
}
