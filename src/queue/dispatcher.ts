import { errorSummary } from '../errors';
import type { Logger } from '../logger';
import { timeLimit } from '../sleep';
import { Throttle } from '../throttle';
import type { Claim, FairJob, FairQueue } from './fairQueue';
import type { NextJob } from './jobRun';

/** How long the dispatcher waits for a claimed job's first image API slot before it claims the next one anyway. */
const FIRST_SLOT_WAIT_MS = 2000;
/** An idle worker asks again this often even without a wake message (one lost while Redis reconnected). */
const IDLE_POLL_MS = 1000;

type Waiting = 'work' | 'room' | 'first-slot' | 'pace' | 'nothing';

/**
 * Claims jobs from the fair queue while this process has room (the in-flight limit) and starts each run. With
 * the pace on it claims one job at a time, each once the previous one has its slot of the image API: the queue
 * then decides, fairly between users, who gets each slot. Every run is tracked from its claim until it has
 * ended or been handed back, so shutdown can wait for exactly that.
 */
export class Dispatcher {
  private readonly running = new Map<string, Promise<void>>();
  private readonly throttle = new Throttle(30_000);
  private stopped = false;
  private waiting: Waiting = 'nothing';
  private nudge: (() => void) | undefined;
  private loop: Promise<void> = Promise.resolve();

  constructor(
    private readonly fair: FairQueue,
    /**
     * Runs one claimed job to its end; calls `onSlot` once it has its first image API slot (or needs none). The
     * round trip that ends it may claim the next job for this dispatcher (`next`).
     */
    private readonly run: (job: FairJob, onSlot: () => void, next: NextJob) => Promise<void>,
    /** How many jobs this process may have in flight now. */
    private readonly limit: () => number,
    private readonly paced: boolean,
    private readonly logger: Logger,
  ) {}

  start(): void {
    this.loop = this.dispatch();
  }

  get inFlight(): number {
    return this.running.size;
  }

  /** Jobs became ready somewhere in the fleet: an idle dispatcher claims now rather than at its next poll. */
  wake(): void {
    if (this.waiting === 'work') this.nudge?.();
  }

  /** Stops claiming and resolves true once the running jobs have ended, or false after `timeoutMs`. */
  async drain(timeoutMs: number): Promise<boolean> {
    this.stopped = true;
    this.nudge?.();
    await this.loop;
    return this.settled(timeoutMs);
  }

  /** Resolves true when every job still running has ended or been handed back, or false after `limitMs`. */
  async settled(limitMs: number): Promise<boolean> {
    return Promise.race([Promise.all(this.running.values()).then(() => true), timeLimit(limitMs).then(() => false)]);
  }

  private async dispatch(): Promise<void> {
    while (!this.stopped) {
      if (this.running.size >= this.limit()) {
        await this.idle('room', IDLE_POLL_MS);
        continue;
      }
      let claim: Claim;
      try {
        claim = await this.fair.claim();
      } catch (err) {
        if (this.throttle.allow()) this.logger.warn({ component: 'fair-queue', err: errorSummary(err) }, 'jobs not claimed: Redis failed; trying again');
        await this.idle('nothing', IDLE_POLL_MS);
        continue;
      }
      this.backlog = claim.job !== undefined;
      if (claim.job) {
        const hasSlot = this.startRun(claim.job);
        if (this.paced) {
          await Promise.race([hasSlot, this.idle('first-slot', FIRST_SLOT_WAIT_MS)]);
          if (this.waiting === 'first-slot') this.nudge?.();
        }
        continue;
      }
      await this.idle(claim.retryInMs === null ? 'work' : 'pace', claim.retryInMs ?? IDLE_POLL_MS);
    }
  }

  /**
   * Without the pace, a run that ends claims the next job in the same round trip when this process has room for
   * it (the ending run still counts until it has left). With the pace on, claims wait for the pace's slots.
   */
  private readonly next: NextJob = {
    wanted: () => this.backlog && !this.stopped && !this.paced && this.running.size <= this.limit(),
    take: (job) => void this.startRun(job),
    found: (any) => void (this.backlog = any),
  };
  /** The last claim found a job: more are likely waiting, and claiming with the end of a run is worth it. */
  private backlog = false;

  /** Starts the job's run; the promise returned settles once it has its first image API slot (or needs none). */
  private startRun(job: FairJob): Promise<void> {
    let gotSlot!: () => void;
    const hasSlot = new Promise<void>((resolve) => (gotSlot = resolve));
    const ended = this.run(job, () => gotSlot(), this.next)
      .catch((err: unknown) => this.logger.error({ jobId: job.id, err: errorSummary(err) }, 'job run failed unexpectedly'))
      .finally(() => {
        this.running.delete(job.fid);
        gotSlot();
        if (this.waiting === 'room') this.nudge?.();
      });
    this.running.set(job.fid, ended);
    return hasSlot;
  }

  /** Waits `ms`, or less when nudged (a wake message for 'work', a run ending for 'room'), or stopped. */
  private idle(reason: Waiting, ms: number): Promise<void> {
    if (this.stopped) return Promise.resolve();
    return new Promise((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        if (this.nudge === done) {
          this.nudge = undefined;
          this.waiting = 'nothing';
        }
        resolve();
      };
      const timer = setTimeout(done, ms);
      this.nudge = done;
      this.waiting = reason;
    });
  }
}
