import type { Queue } from 'bull';
import { Cluster } from 'ioredis';
import { errorSummary } from '../base/errors';
import type { Logger } from '../base/logger';
import type { RedisClient } from '../redis/scripts';
import { backoffDelayMs } from '../base/retryPolicy';
import { sleep, timeLimit } from '../base/sleep';
import { Throttle } from '../base/throttle';
import type { FairQueue } from './fairQueue';
import type { Intake } from './replies';

/** Jobs moved from Bull into the fair queue per script call: a story's burst comes in at once. */
const BATCH = 100;
/**
 * How long one blocking read waits for a job before it asks again. An idle worker costs Redis one read and one
 * intake script per this long; a job added wakes the read at once. Stopping unblocks the read under way.
 */
const BLOCK_S = 30;
/**
 * Whatever may stall the blocking read (a connection that died without a word), the jobs in Bull's wait list are
 * taken in through the shared connection once the read has not come back for this long past its timeout.
 */
const STUCK_MS = 10_000;
/** How long a stop waits for CLIENT UNBLOCK to free the read before it cuts the connection. */
const UNBLOCK_WAIT_MS = 1000;

/**
 * Bull's settings for what is left of Bull's own processing: only its promotion of delayed jobs (a producer's
 * `delay`) runs, woken by Bull's own message when such a job is added; the guard is its poll for a message lost.
 * Bull's stalled check does not run: the fair queue's sweep looks after Bull's active list.
 */
export const BULL_SETTINGS = { guardInterval: 60_000 };

export interface IntakeHooks {
  /** Jobs went into users' lines: vet them (data and token), so that those that need no API are answered at once. */
  lined(jobs: Intake['jobs']): void;
  /** Jobs are ready to be claimed: some in the answers, or all in users' lines. */
  ready(where: 'answers' | 'line'): void;
  /** How many jobs this worker would claim now: jobs beyond that wake the fleet. */
  room(): number;
}

/**
 * Brings jobs from Bull into the fair queue. Producers add to Bull as they always have. A blocking read waits for
 * Bull's wait list; each job then moves (one script for up to BATCH jobs) into its user's line and stays `active`
 * in Bull, locked for the fair queue, until it ends. Bull's promotion of delayed jobs still runs.
 */
export class BullIntake {
  private stopped = false;
  private loop: Promise<void> = Promise.resolve();
  private housekeeping: Promise<void> = Promise.resolve();
  private pollTimer: NodeJS.Timeout | undefined;
  /** performance.now() when the blocking read under way was sent; undefined while none is. */
  private readSince: number | undefined;
  private readonly throttle = new Throttle(30_000);
  /** The blocking connection's CLIENT ID on each node, asked once per connection (null: not to be had). */
  private blockingIds: Map<string, number> | null | undefined;

  constructor(
    private readonly fair: FairQueue,
    private readonly queue: Queue,
    /** A connection of its own: it blocks. */
    private readonly blocking: RedisClient,
    /** The shared command connection, which unblocks the blocking one when the intake stops. */
    private readonly control: RedisClient,
    private readonly logger: Logger,
    private readonly hooks: IntakeHooks = { lined: () => undefined, ready: () => undefined, room: () => 0 },
    /** Seconds one blocking read waits (a test makes it long to show that stopping does not wait it out). */
    private readonly blockS = BLOCK_S,
  ) {
    blocking.on('close', () => (this.blockingIds = undefined));
  }

  start(): void {
    const bull = this.queue as unknown as BullInternals;
    // Bull promotes delayed jobs only for a queue that processes: this is the step its process() runs for that.
    // Stopping waits for it: Bull's subscriber, opened after the queue closed, would outlive the worker.
    this.housekeeping = Promise.resolve(bull._initProcess?.()).then(
      () => undefined,
      () => undefined,
    );
    this.pollTimer = setInterval(() => void this.poll(), this.blockS * 1000 + STUCK_MS);
    this.pollTimer.unref();
    this.loop = this.run();
  }

  /**
   * Stops taking jobs in, once the blocking read under way has returned and what it moved is taken in. The read is
   * unblocked, not cut off: Redis answers it as a timeout, so a job is either moved, and taken in, or still in
   * Bull's wait list. Where it cannot be unblocked (a host that refuses CLIENT), the connection is cut: a job the
   * read moved meanwhile is taken in by the next sweep.
   */
  async stop(limitMs: number): Promise<void> {
    this.stopped = true;
    clearInterval(this.pollTimer);
    if (!(await Promise.race([this.unblock(), timeLimit(UNBLOCK_WAIT_MS).then(() => false)]))) this.blocking.disconnect();
    await Promise.race([Promise.all([this.loop, this.housekeeping]), timeLimit(limitMs)]);
    // Once only: ioredis' disconnect() of a closed connection leaves a 2 s timer that keeps the process up.
    if (this.blocking.status !== 'end') this.blocking.disconnect();
  }

  private async run(): Promise<void> {
    let firstId: string | null = null;
    for (let failures = 0; ;) {
      try {
        const more = firstId !== null || !this.stopped ? await this.takeIn(firstId) : false;
        firstId = null;
        failures = 0;
        if (this.stopped) return;
        if (more) continue;
        // Before the read: a stop that comes while it blocks can then unblock it.
        if (this.blockingIds === undefined) this.blockingIds = await this.clientIds();
        if (this.stopped) return;
        this.readSince = performance.now();
        try {
          firstId = await this.blocking.brpoplpush(this.fair.keys.bullWait, this.fair.keys.bullActive, this.blockS);
        } finally {
          this.readSince = undefined;
        }
      } catch (err) {
        failures += 1;
        // Stopping: a job read but not taken in is left to the sweep after a few tries.
        if (this.stopped && (firstId === null || failures > 3)) return;
        if (this.throttle.allow()) this.logger.warn({ component: 'intake', err: errorSummary(err) }, 'jobs not taken in from Bull: Redis failed; trying again');
        await sleep(backoffDelayMs(failures, { baseMs: 200, maxMs: 5000 })).catch(() => undefined);
      }
    }
  }

  /** What waits in Bull's wait list, taken in through the shared connection while the blocking read is stuck. */
  private async poll(): Promise<void> {
    if (this.readSince === undefined || performance.now() - this.readSince < this.blockS * 1000 + STUCK_MS) return;
    try {
      while (!this.stopped && (await this.takeIn(null)));
    } catch (err) {
      if (this.throttle.allow()) this.logger.warn({ component: 'intake', err: errorSummary(err) }, 'jobs not taken in from Bull: Redis failed; trying again');
    }
  }

  /** The blocking connection's CLIENT ID on every node it may block on; null where CLIENT is refused. */
  private async clientIds(): Promise<Map<string, number> | null> {
    const nodes = this.blocking instanceof Cluster ? this.blocking.nodes('master') : [this.blocking];
    try {
      const ids = new Map<string, number>();
      for (const node of nodes) ids.set(nodeKey(node), (await node.client('ID')) as number);
      return ids;
    } catch {
      return null;
    }
  }

  /** Unblocks the read under way through the shared connection; false when that cannot be done. */
  private async unblock(): Promise<boolean> {
    const ids = this.blockingIds;
    if (!ids) return false;
    const nodes = this.control instanceof Cluster ? this.control.nodes('master') : [this.control];
    try {
      await Promise.all(nodes.map((node) => (ids.has(nodeKey(node)) ? node.client('UNBLOCK', ids.get(nodeKey(node))!) : undefined)));
      return true;
    } catch {
      return false;
    }
  }

  /** One script call; true when it may have left more jobs in Bull's wait list. */
  private async takeIn(firstId: string | null): Promise<boolean> {
    const intake = await this.fair.intake(firstId, BATCH, this.hooks.room());
    const { read, lined, joined, answers, unapplied, jobs } = intake;
    for (const { id, option } of unapplied) {
      this.logger.warn(
        { jobId: id, option },
        `Bull option "${option}" is not applied by this worker: GENERATION_DEADLINE_MS and GROK_TIMEOUT_MS bound a job, and repeatable jobs are not supported`,
      );
    }
    if (joined > 0) this.logger.info({ joined }, 'jobs joined an identical job waiting or running: one image, one delivery');
    if (lined + answers > 0) this.hooks.ready(answers > 0 ? 'answers' : 'line');
    if (jobs.length > 0) this.hooks.lined(jobs);
    return read >= BATCH;
  }
}

/** `host:port` of a connection: the same node on two clients of one cluster. */
function nodeKey(node: RedisClient): string {
  const { host, port } = (node as { options: { host?: string; port?: number } }).options;
  return `${host}:${port}`;
}

/** What the intake uses of Bull beyond its typings: the housekeeping `queue.process()` would start. */
interface BullInternals {
  _initProcess?: () => Promise<void>;
}
