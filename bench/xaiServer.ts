import { randomBytes } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';

/**
 * How long an answer takes: a fixed time, or `[min, max]` drawn uniformly per admitted request (xAI's image API
 * takes 6 to 12 s). The draws come from a generator seeded at every `configure`, so runs see the same delays.
 */
export type Delay = number | [number, number];

/** What the server answers from now on: an image of `imageBytes` (before base64), after `delayMs`. */
export interface XaiBehaviour {
  imageBytes: number;
  delayMs: Delay;
  /** xAI's team limit: at most `max` requests admitted per rolling `windowMs`; beyond it 429 with Retry-After: 1. */
  limit?: { max: number; windowMs: number };
  /** Prompts containing any of these are refused by content moderation (400). */
  moderated?: string[];
  /** Count requests per prompt (`XaiCounters.byPrompt`); reads every request's body. */
  countPrompts?: boolean;
}

/** Requests for one prompt: all of them, and those the team limit admitted (the ones xAI would work on and bill). */
interface PromptCount {
  requests: number;
  admitted: number;
}

/** What the server saw since the last `configure`. */
export interface XaiCounters {
  requests: number;
  connections: number;
  /** Requests answered 429 by the team limit. */
  limited: number;
  /** Requests answered 400 by content moderation. */
  moderated: number;
  /** Most admitted requests in flight at once. */
  peakInFlight: number;
  /** Most requests admitted within any 200 ms: 1 when a 5/s limit is smoothed, up to 5 when it comes in bursts. */
  peakPer200ms: number;
  /** Admitted requests not yet answered, now. */
  inFlight: number;
  /** By prompt as received, when `countPrompts` (or `moderated`) is set. */
  byPrompt: Record<string, PromptCount>;
}

export interface XaiServer {
  url: string;
  configure(behaviour: XaiBehaviour): void;
  counters(): XaiCounters;
  /** Answers nothing more to the requests in flight and closes every connection (a run's leftovers end here). */
  drop(): void;
  close(): Promise<void>;
}

const RATE_LIMITED = (max: number): Buffer =>
  Buffer.from(JSON.stringify({ code: 'Some resource has been exhausted', error: `Team rate limit exceeded: ${max} requests per second` }));
const MODERATED = Buffer.from(
  JSON.stringify({ error: { message: 'Generated image rejected by content moderation.', type: 'invalid_request_error', code: 'content_moderation' } }),
);

/**
 * A stand-in for xAI's images endpoint (POST, JSON body) that costs as little as possible: the JSON answer for
 * each size is encoded once and sent as one buffer, so the benchmark measures the worker, not this server.
 * Optionally it enforces the team rate limit, refuses chosen prompts as xAI's moderation does, takes a latency
 * drawn from a range, and counts requests per prompt.
 */
export async function startXaiServer(): Promise<XaiServer> {
  const answers = new Map<number, Buffer>();
  let behaviour: XaiBehaviour = { imageBytes: 1024, delayMs: 0 };
  let answer = answerFor(behaviour.imageBytes, answers);
  const zero = (): XaiCounters => ({ requests: 0, connections: 0, limited: 0, moderated: 0, peakInFlight: 0, peakPer200ms: 0, inFlight: 0, byPrompt: {} });
  let counts = zero();
  let inFlight = 0;
  let nextDelay = delays(behaviour.delayMs);
  /** When each admitted request arrived, for the rolling window. */
  let admitted: number[] = [];
  /** Admissions within the last 200 ms, for the burst figure. */
  let recent: number[] = [];
  const sockets = new Set<Socket>();
  const timers = new Set<NodeJS.Timeout>();

  const reply = (res: http.ServerResponse, status: number, body: Buffer, headers: Record<string, string> = {}): void => {
    res.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': String(body.length), ...headers });
    res.end(body);
  };

  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    const wantsBody = (behaviour.moderated?.length ?? 0) > 0 || behaviour.countPrompts === true;
    req.on('data', (chunk: Buffer) => void (wantsBody && chunks.push(chunk)));
    req.on('end', () => {
      counts.requests++;
      const prompt = wantsBody ? promptOf(Buffer.concat(chunks)) : '';
      const perPrompt = wantsBody ? (counts.byPrompt[prompt] ??= { requests: 0, admitted: 0 }) : undefined;
      if (perPrompt) perPrompt.requests++;
      const { limit } = behaviour;
      if (limit && limit.max > 0) {
        const now = performance.now();
        admitted = admitted.filter((t) => t > now - limit.windowMs);
        if (admitted.length >= limit.max) {
          counts.limited++;
          return reply(res, 429, RATE_LIMITED(limit.max), { 'Retry-After': '1' });
        }
        admitted.push(now);
      }
      if (perPrompt) perPrompt.admitted++;
      let status = 200;
      let body = answer;
      if (wantsBody) {
        if ((behaviour.moderated ?? []).some((m) => prompt.includes(m))) {
          counts.moderated++;
          status = 400;
          body = MODERATED;
        }
      }
      const now = performance.now();
      recent = recent.filter((t) => t > now - 200);
      recent.push(now);
      counts.peakPer200ms = Math.max(counts.peakPer200ms, recent.length);
      inFlight++;
      counts.peakInFlight = Math.max(counts.peakInFlight, inFlight);
      const send = (): void => {
        inFlight--;
        reply(res, status, body);
      };
      const delayMs = nextDelay();
      if (delayMs <= 0) return send();
      const timer = setTimeout(() => {
        timers.delete(timer);
        send();
      }, delayMs);
      timers.add(timer);
    });
  });
  // Idle gaps between batches must not close kept-alive connections under a client about to reuse them.
  server.keepAliveTimeout = 120_000;
  server.on('connection', (socket: Socket) => {
    counts.connections++;
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const { port } = server.address() as AddressInfo;

  return {
    url: `http://127.0.0.1:${port}/v1/images/generations`,
    configure(next) {
      behaviour = next;
      answer = answerFor(next.imageBytes, answers);
      nextDelay = delays(next.delayMs);
      counts = zero();
      admitted = [];
      recent = [];
    },
    drop() {
      for (const timer of timers) clearTimeout(timer);
      timers.clear();
      for (const socket of sockets) socket.destroy();
      inFlight = 0;
    },
    counters: () => ({ ...counts, inFlight, byPrompt: Object.fromEntries(Object.entries(counts.byPrompt).map(([p, c]) => [p, { ...c }])) }),
    close: () =>
      new Promise<void>((resolve) => {
        for (const timer of timers) clearTimeout(timer);
        server.close(() => resolve());
        for (const socket of sockets) socket.destroy();
      }),
  };
}

/** The mean of a delay: what a run's ideal times are computed with. */
export function meanDelayMs(delay: Delay): number {
  return typeof delay === 'number' ? delay : (delay[0] + delay[1]) / 2;
}

/**
 * Successive delays: the fixed one, or uniform draws in [min, max] from a seeded generator (mulberry32). The
 * server draws one per request in the order they arrive, from a fresh generator at every `configure`.
 */
export function delays(delay: Delay): () => number {
  if (typeof delay === 'number') return () => delay;
  const [min, max] = delay;
  let seed = 0x2545f491;
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    const unit = ((t ^ (t >>> 14)) >>> 0) / 4294967296;
    return Math.round(min + unit * (max - min));
  };
}

function promptOf(body: Buffer): string {
  try {
    const parsed = JSON.parse(body.toString('utf8')) as { prompt?: unknown };
    return typeof parsed.prompt === 'string' ? parsed.prompt : '';
  } catch {
    return '';
  }
}

function answerFor(imageBytes: number, cache: Map<number, Buffer>): Buffer {
  let answer = cache.get(imageBytes);
  if (!answer) {
    // Random bytes: nothing on the way (HTTP, Redis, socket.io) gets to compress them.
    const b64 = randomBytes(imageBytes).toString('base64');
    answer = Buffer.from(JSON.stringify({ data: [{ b64_json: b64, mime_type: 'image/png' }], usage: { cost_in_usd_ticks: 200_000_000 } }));
    cache.set(imageBytes, answer);
  }
  return answer;
}
