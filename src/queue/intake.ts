import type { Queue } from 'bull';
import { Cluster } from 'ioredis';
import { errorSummary } from '../errors';
import type { Logger } from '../logger';
import type { RedisClient } from '../redisScripts';
import { backoffDelayMs } from '../retryPolicy';
import { sleep, timeLimit } from '../sleep';
import { Throttle } from '../throttle';
import type { FairQueue } from './fairQueue';

/** Jobs moved from Bull into the fair queue per script call: a story's burst comes in at once. */
const BATCH = 100;
/**
 * How long one blocking read waits for a job before it asks again. Stopping cuts the read under way short
 * (CLIENT UNBLOCK) where it can; where it cannot (a cluster, a host that refuses CLIENT), it waits this long.
 */
const BLOCK_S = 1;

/**
 * Bull's settings for what is left of Bull's own processing. They are fixed, not the fair queue's lease
 * settings: a job sits in Bull's active list without a lock only between a blocking read and the intake script,
 * and Bull's stalled check puts such a job back in its wait list (never fails it: removeOnFail would delete it).
 */
export const BULL_SETTINGS = { lockDuration: 30_000, stalledInterval: 30_000, maxStalledCount: 1000 };

/**
 * Brings jobs from Bull into the fair queue. Producers add to Bull as they always have. A blocking read waits
 * for Bull's wait list; each job then moves (one script for up to BATCH jobs) into its user's line and stays
 * `active` in Bull, locked by the fair queue, until it ends. Bull's own housekeeping still runs: delayed jobs
 * (a producer's `delay`) are promoted into the wait list, and its stalled check returns a job a dying worker
 * had read but not taken in.
 */
export class BullIntake {
  private stopped = false;
  private loop: Promise<void> = Promise.resolve();
  private housekeeping: Promise<void> = Promise.resolve();
  private stalledTimer: NodeJS.Timeout | undefined;
  private readonly throttle = new Throttle(30_000);
  /** The blocking connection's CLIENT ID, asked once per connection (undefined: not asked yet; null: not to be had). */
  private blockingId: number | null | undefined;

  constructor(
    private readonly fair: FairQueue,
    private readonly queue: Queue,
    /** A connection of its own: it blocks. */
    private readonly blocking: RedisClient,
    /** The shared command connection, which unblocks the blocking one when the intake stops. */
    private readonly control: RedisClient,
    private readonly logger: Logger,
    /** Seconds one blocking read waits (a test makes it long to show that stopping does not wait it out). */
    private readonly blockS = BLOCK_S,
  ) {
    blocking.on('close', () => (this.blockingId = undefined));
  }

  start(): void {
    const bull = this.queue as unknown as BullInternals;
    // Bull promotes delayed jobs only for a queue that processes; these are the two steps its process() runs.
    // Stopping waits for them: Bull's subscriber, opened after the queue closed, would outlive the worker.
    this.housekeeping = Promise.all([bull._initProcess?.(), bull.moveUnlockedJobsToWait?.()]).then(
      () => undefined,
      () => undefined,
    );
    this.stalledTimer = setInterval(() => void bull.moveUnlockedJobsToWait?.(), BULL_SETTINGS.stalledInterval);
    this.stalledTimer.unref();
    this.loop = this.run();
  }

  /**
   * Stops taking jobs in, once the blocking read under way has returned and what it moved is taken in (a read
   * cut off by a closed connection could leave its job in Bull's active list for Bull's stalled check to bring
   * back, a minute later). The read is unblocked, not cut off: Redis answers it as a timeout, so a job is either
   * moved, and taken in, or still in Bull's wait list.
   */
  async stop(limitMs: number): Promise<void> {
    this.stopped = true;
    clearInterval(this.stalledTimer);
    const id = this.blockingId;
    if (typeof id === 'number') void this.control.client('UNBLOCK', id).catch(() => undefined);
    await Promise.race([Promise.all([this.loop, this.housekeeping]), timeLimit(limitMs)]);
    this.blocking.disconnect();
  }

  private async run(): Promise<void> {
    let firstId: string | null = null;
    for (let failures = 0; ;) {
      try {
        const moved = firstId !== null || !this.stopped ? await this.takeIn(firstId) : false;
        firstId = null;
        failures = 0;
        if (this.stopped) return;
        if (moved) continue;
        // Before the read: a stop that comes while it blocks can then unblock it.
        if (this.blockingId === undefined) this.blockingId = await this.clientId();
        if (this.stopped) return;
        firstId = await this.blocking.brpoplpush(this.fair.keys.bullWait, this.fair.keys.bullActive, this.blockS);
      } catch (err) {
        failures += 1;
        // Stopping: a job read but not taken in is left to Bull's stalled check after a few tries.
        if (this.stopped && (firstId === null || failures > 3)) return;
        if (this.throttle.allow()) this.logger.warn({ component: 'intake', err: errorSummary(err) }, 'jobs not taken in from Bull: Redis failed; trying again');
        await sleep(backoffDelayMs(failures, { baseMs: 200, maxMs: 5000 })).catch(() => undefined);
      }
    }
  }

  /** A cluster's connection is several; a host may refuse CLIENT: then stopping waits for the read's timeout. */
  private async clientId(): Promise<number | null> {
    if (this.blocking instanceof Cluster) return null;
    return (this.blocking.client('ID') as Promise<number>).catch(() => null);
  }

  /** One script call; true when it may have left more jobs in Bull's wait list. */
  private async takeIn(firstId: string | null): Promise<boolean> {
    const { taken, joined, unapplied } = await this.fair.intake(firstId, BATCH);
    for (const { id, option } of unapplied) {
      this.logger.warn(
        { jobId: id, option },
        `Bull option "${option}" is not applied by this worker: GENERATION_DEADLINE_MS and GROK_TIMEOUT_MS bound a job, and repeatable jobs are not supported`,
      );
    }
    if (joined > 0) this.logger.info({ joined }, 'jobs joined an identical job waiting or running: one image, one delivery');
    return taken + joined >= BATCH;
  }
}

/** What the intake uses of Bull beyond its typings: the housekeeping `queue.process()` would start. */
interface BullInternals {
  _initProcess?: () => Promise<void>;
  moveUnlockedJobsToWait?: () => Promise<void>;
}
