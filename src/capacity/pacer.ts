import path from 'node:path';
import { defineScripts, loadScripts, RedisClient, ScriptCommand } from '../redis/scripts';

const SCRIPTS = loadScripts(path.join(__dirname, 'commands'));

/**
 * The fleet's one pace for the image API (GROK_RATE_LIMIT requests per GROK_RATE_WINDOW_MS): every request
 * from every worker on the Redis reserves the next slot, one per interval, so requests are spread evenly
 * rather than sent in a burst at the top of each window. Nothing is held: a worker that dies after
 * reserving leaves no slot taken. A rate-limit answer slows the whole fleet (see commands/slow-down-1.lua).
 */
export interface Pacer {
  /** The spacing between two requests at full speed. */
  readonly intervalMs: number;
  /**
   * Reserves the next slot and returns the ms to wait for it; null when it would come after `deadlineInMs`. The
   * slot a claim promised to job `fid` is the one reserved, at its own time (the promise ends).
   */
  acquire(deadlineInMs?: number, fid?: string): Promise<number | null>;
  /** The image API said "rate limited": pause the fleet for `retryAfterMs` (or a little) and slow it down. */
  slowDown(retryAfterMs?: number): Promise<void>;
}

/**
 * Requests are spaced a little wider than the limit allows: arrival times at the API wobble by a few ms, and
 * an API that counts requests in a rolling window answers 429 to one that arrives early.
 */
const PACE_MARGIN = 1.05;

/**
 * With the pace on, how long a claim promises the next slot to the job it claims (see commands/_pace.lua): long
 * enough for the job to reserve it, short enough that a job that dies first holds up nobody.
 */
export const PROMISE_MS = 50;

/** An idle fleet's pace is forgotten after this long. */
const IDLE_TTL_MS = 3_600_000;

export function paceIntervalMs(rateLimit: { max: number; windowMs: number }): number {
  return (rateLimit.windowMs / rateLimit.max) * PACE_MARGIN;
}

export class RedisPacer implements Pacer {
  private readonly commands: Record<'acquire' | 'slowDown', ScriptCommand>;

  constructor(
    client: RedisClient,
    /** The pace's hash, shared by the queue's workers (the fair queue's claim promises its next slot). */
    private readonly key: string,
    readonly intervalMs: number,
  ) {
    this.commands = defineScripts(client, SCRIPTS, 'pace', ['acquire', 'slowDown']);
  }

  async acquire(deadlineInMs?: number, fid = ''): Promise<number | null> {
    const deadline = deadlineInMs === undefined ? -1 : Math.max(0, Math.floor(deadlineInMs));
    const wait = (await this.commands.acquire(this.key, this.intervalMs, deadline, IDLE_TTL_MS, fid)) as number;
    return wait < 0 ? null : wait;
  }

  async slowDown(retryAfterMs?: number): Promise<void> {
    const pause = retryAfterMs === undefined ? -1 : Math.max(0, Math.round(retryAfterMs));
    await this.commands.slowDown(this.key, this.intervalMs, pause, IDLE_TTL_MS);
  }
}
