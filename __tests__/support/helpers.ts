import { randomBytes } from 'node:crypto';
import { Writable } from 'node:stream';
import type Bull from 'bull';
import type Redis from 'ioredis';
import jwt from 'jsonwebtoken';
import type { JobEvent, Notifier } from '../../src/pipeline/ports';

/**
 * What unit and integration tests share that needs no worker, relay or Bull queue: the test Redis, names,
 * tokens, captured logs, polling. Light to load; harness.ts builds whole systems on top of it.
 */

export const JWT_SECRET = 'test-secret-0123456789abcdef';

/**
 * Lease settings for tests of workers that die, freeze or stop. A worker whose lease a test lets lapse (or
 * writes lapsed) holds short leases, reaped every 500 ms by the others; a worker that takes a job over and must
 * keep it holds a lease no pause of a loaded machine outlasts. Each claim takes its own worker's lease length.
 */
export const SHORT_LEASES = { LOCK_DURATION_MS: '2000', STALLED_INTERVAL_MS: '500' };
export const KEPT_LEASES = { LOCK_DURATION_MS: '15000', STALLED_INTERVAL_MS: '500' };

export function redisUrl(): string {
  const url = process.env.TEST_REDIS_URL;
  if (!url) throw new Error('TEST_REDIS_URL is not set: run the tests through jest (globalSetup starts Redis)');
  return url;
}

/**
 * Closes a test's own connection once: ioredis' disconnect() on a connection already closed starts a 2 s timer
 * that nothing clears, and keeps jest's worker alive after the file.
 */
export async function closeClient(redis: Redis): Promise<void> {
  if (redis.status === 'end') return;
  if (redis.status === 'ready') await redis.quit().catch(() => undefined);
  else redis.disconnect();
}

export function uniqueQueueName(label: string): string {
  return `test_${label}_${randomBytes(4).toString('hex')}`;
}

/** A job's identity in the fair queue: Bull's creation time and id. */
export function fidOf(job: Bull.Job): string {
  return `${job.timestamp}-${job.id}`;
}

export function signToken(userId: string, options: { expiresInS?: number; secret?: string } = {}): string {
  const now = Math.floor(Date.now() / 1000);
  return jwt.sign({ Id: userId, iat: now - 60, exp: now + (options.expiresInS ?? 3600) }, options.secret ?? JWT_SECRET);
}

/** Pino lines captured in memory, parsed. */
export class LogCapture extends Writable {
  readonly lines: Array<Record<string, unknown>> = [];
  readonly raw: string[] = [];
  override _write(chunk: Buffer, _enc: BufferEncoding, done: () => void): void {
    for (const line of chunk.toString().split('\n').filter(Boolean)) {
      this.raw.push(line);
      this.lines.push(JSON.parse(line) as Record<string, unknown>);
    }
    done();
  }
  jobEnds(): Array<Record<string, unknown>> {
    return this.lines.filter((l) => typeof l.msg === 'string' && l.msg.startsWith('job end'));
  }
}

export function isFinal(p: Record<string, unknown>): boolean {
  return p.status === 'completed' || p.status === 'failed' || typeof p.Status === 'boolean';
}

/** What a StoryBang browser gets for a delivered image: `Status` true and the image as a data URL. */
export function isImage(p: Record<string, unknown>): boolean {
  return p.Status === true && typeof p.Message === 'string' && /^data:image\/[a-z0-9.+-]+;base64,[A-Za-z0-9+/]+=*$/.test(p.Message);
}

/**
 * Makes every lease of the fair queue under `prefix` lapse now, as if each holder had stopped renewing a lease
 * ago: a test writes the lapse rather than sleeping through it. Only for jobs whose worker is dead; a live one
 * would lose its lease as a frozen worker does.
 */
export async function lapseLeases(redis: Redis, prefix: string): Promise<void> {
  const members = await redis.zrange(`${prefix}fq:claims`, 0, -1);
  for (const m of members) await redis.zadd(`${prefix}fq:claims`, 0, m);
}

/** Polls `condition` until it holds, failing after `timeoutMs`. */
export async function waitUntil(condition: () => Promise<boolean> | boolean, timeoutMs = 15_000, what = 'condition'): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`${what} not met within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** A notifier that delivers everything at once and keeps each event it was given, for unit tests of the pipeline. */
export function recordingNotifier(): Notifier & { events: JobEvent[] } {
  const events: JobEvent[] = [];
  return {
    events,
    notify: async (event) => void events.push(event),
    tryNotify: (event) => (events.push(event), true),
    tryDeliver: (event) => (events.push(event), true),
    close: async () => undefined,
  };
}
