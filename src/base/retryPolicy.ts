import { isTransient, WorkerError } from './errors';
import { sleep as cancellableSleep } from './sleep';

/** Answers worth asking again; any other 5xx is treated the same way (see `isTransientStatus`). */
const TRANSIENT_STATUSES: ReadonlySet<number> = new Set([408, 429, 500, 502, 503, 504]);

/** Longest wait a server may impose with Retry-After: a job holds a worker slot while it waits. */
export const MAX_RETRY_AFTER_MS = 60_000;

export function isTransientStatus(status: number): boolean {
  return TRANSIENT_STATUSES.has(status) || (status >= 500 && status <= 599);
}

/**
 * Retry-After (delay-seconds or an HTTP date) as milliseconds to wait from `now`.
 * Capped at MAX_RETRY_AFTER_MS; a date in the past is 0; absent or unreadable is undefined.
 */
export function parseRetryAfter(header: string | null | undefined, now: number = Date.now()): number | undefined {
  const value = header?.trim();
  if (!value) return undefined;
  let ms: number;
  if (/^\d+(\.\d+)?$/.test(value)) {
    ms = Number(value) * 1000;
  } else if (/[a-z]/i.test(value)) {
    // Date.parse reads bare numbers like "-5" as years; an HTTP date always names a day or month.
    const at = Date.parse(value);
    if (Number.isNaN(at)) return undefined;
    ms = at - now;
  } else {
    return undefined;
  }
  return Math.min(MAX_RETRY_AFTER_MS, Math.max(0, Math.ceil(ms)));
}

export interface BackoffOptions {
  /** Wait before the first retry, before jitter. Default 1000. */
  baseMs?: number;
  /** Ceiling for any single wait. Default 30000. */
  maxMs?: number;
  /** Source of jitter in [0, 1). Default Math.random. */
  random?: () => number;
}

/**
 * Wait after failed attempt `attempt` (1-based): baseMs doubling per attempt, capped at maxMs,
 * with "equal jitter": a uniform pick in [ceiling/2, ceiling]. Half the wait is guaranteed, so a
 * struggling API still gets breathing room, and the other half spreads workers that failed together.
 */
export function backoffDelayMs(attempt: number, opts: BackoffOptions = {}): number {
  const { baseMs = 1000, maxMs = 30_000, random = Math.random } = opts;
  const n = Number.isFinite(attempt) && attempt >= 1 ? Math.floor(attempt) : 1;
  const ceiling = Math.min(maxMs, baseMs * 2 ** (n - 1));
  const r = Math.min(1, Math.max(0, random()));
  return Math.round(ceiling / 2 + (ceiling / 2) * r);
}

/**
 * Wait before retrying after `err`: the server's Retry-After when the error carries one (a transient or
 * rate-limited WorkerError's `retryAfterMs`, capped at MAX_RETRY_AFTER_MS), otherwise the jittered backoff.
 */
export function retryDelayMs(attempt: number, err: unknown, opts: BackoffOptions = {}): number {
  const retryAfterMs = err instanceof WorkerError ? err.retryAfterMs : undefined;
  if (retryAfterMs !== undefined && Number.isFinite(retryAfterMs) && retryAfterMs >= 0) {
    return Math.min(MAX_RETRY_AFTER_MS, retryAfterMs);
  }
  return backoffDelayMs(attempt, opts);
}

/**
 * The wait before a producer's next Bull attempt, as Bull 4 computes it from the job's `backoff` option after
 * `attemptsMade` failed attempts: a number or `{type: 'fixed', delay}` waits `delay`; `{type: 'exponential',
 * delay}` waits (2^attemptsMade - 1) x delay. No backoff (or one Bull would not know) runs the next attempt at once.
 */
export function producerBackoffMs(backoff: unknown, attemptsMade: number): number {
  const option = typeof backoff === 'number' ? { type: 'fixed', delay: backoff } : (backoff as { type?: unknown; delay?: unknown } | null);
  const delay = typeof option?.delay === 'number' && Number.isFinite(option.delay) ? Math.max(0, option.delay) : 0;
  if (option?.type === 'fixed') return delay;
  if (option?.type === 'exponential') return Math.round((2 ** Math.max(1, attemptsMade) - 1) * delay);
  return 0;
}

interface RetryInfo {
  /** The attempt that just failed (1-based); the next call is attempt + 1. */
  attempt: number;
  delayMs: number;
  error: unknown;
}

export interface WithRetriesOptions {
  /** Extra calls after the first one fails transiently: at most 1 + maxRetries calls in all. */
  maxRetries: number;
  /** Aborting stops the wait between attempts at once and rethrows. */
  signal?: AbortSignal;
  /** Default: the cancellable sleep of sleep.ts. */
  sleep?: (ms: number, signal?: AbortSignal) => Promise<void>;
  /** Default: retryDelayMs with its default backoff. */
  delayFor?: (attempt: number, err: unknown) => number;
  /** Called before each wait, e.g. to log the retry. */
  onRetry?: (info: RetryInfo) => void;
}

/**
 * Calls `fn` until it succeeds, fails with an error that is not transient (see isTransient),
 * or the retries are used up; then rethrows the last error as it was thrown.
 */
export async function withRetries<T>(fn: (attempt: number) => Promise<T>, opts: WithRetriesOptions): Promise<T> {
  const { signal, sleep = cancellableSleep, delayFor = retryDelayMs, onRetry } = opts;
  const maxRetries = Math.max(0, Math.floor(opts.maxRetries));
  for (let attempt = 1; ; attempt++) {
    try {
      return await fn(attempt);
    } catch (err) {
      if (signal?.aborted || attempt > maxRetries || !isTransient(err)) throw err;
      const delayMs = delayFor(attempt, err);
      onRetry?.({ attempt, delayMs, error: err });
      await sleep(delayMs, signal);
    }
  }
}
