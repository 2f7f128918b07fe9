import { CapacityOptions, withCapacity } from './capacity';
import { errorSummary, isAbortError, permanentError, toError, WorkerError } from './errors';
import type { Claim, FairJob, FairQueue } from './fairQueue';
import { logJobEnd } from './jobEnd';
import { echoableNumber } from './jobData';
import { failureEvent, JobResult, PipelineDeps, runJob, tellFailure } from './pipeline';
import { backoffDelayMs, producerBackoffMs } from './retryPolicy';
import { timeLimit } from './sleep';
import { Throttle } from './throttle';

export interface RunnerSettings {
  /** CONCURRENCY: jobs this process runs at once. */
  concurrency: number;
  /** LOCK_DURATION_MS: a claimed job's lease, renewed every third of it while the job runs. */
  leaseMs: number;
  /** STALLED_INTERVAL_MS: how often this worker looks for jobs whose worker died (0: never). */
  stalledIntervalMs: number;
  /** MAX_STALLED_COUNT: a job whose lease lapsed more often than this ends as GENERATION_FAILED. */
  maxStalledCount: number;
}

/** How long the dispatcher waits for a claimed job's first image API slot before it claims the next one anyway. */
const FIRST_SLOT_WAIT_MS = 2000;
/** An idle worker asks again this often even without a wake message (one lost while Redis reconnected). */
const IDLE_POLL_MS = 1000;

type Waiting = 'work' | 'slot' | 'first-slot' | 'pace' | 'nothing';

/**
 * Runs jobs from the fair queue: claims while it has room (CONCURRENCY), runs each through the pipeline,
 * records how it ended, and keeps the leases of running jobs alive. With the rate limit on it claims one job at
 * a time, each once the previous one has its slot: the queue then decides, fairly between users, who gets each
 * slot of the image API. Every running job is tracked from its start until it has ended or been handed back, so
 * shutdown can wait for exactly that.
 */
export class JobRunner {
  private readonly running = new Map<string, Promise<void>>();
  private readonly timers: NodeJS.Timeout[] = [];
  private readonly promotions = new Set<NodeJS.Timeout>();
  private readonly throttle = new Throttle(30_000);
  private stopped = false;
  private waiting: Waiting = 'nothing';
  private nudge: (() => void) | undefined;
  private dispatching: Promise<void> = Promise.resolve();

  constructor(
    private readonly fair: FairQueue,
    private readonly deps: PipelineDeps,
    private readonly capacity: CapacityOptions,
    private readonly settings: RunnerSettings,
    /** Aborted when shutdown runs out of time: running jobs stop and are handed back. */
    private readonly hardStop: AbortSignal,
  ) {}

  start(): void {
    this.dispatching = this.dispatch();
    this.every(Math.max(500, Math.floor(this.settings.leaseMs / 3)), () => this.renew());
    if (this.settings.stalledIntervalMs > 0) {
      void this.reap();
      this.every(this.settings.stalledIntervalMs, () => this.reap());
    }
  }

  /** Jobs became ready somewhere in the fleet: an idle dispatcher claims now rather than at its next poll. */
  wake(): void {
    if (this.waiting === 'work') this.nudge?.();
  }

  /**
   * Stops claiming and resolves true once the running jobs have ended, or false after `timeoutMs`. Their leases
   * are still renewed meanwhile: a lease lapsing during a long drain would let another worker run the job too.
   */
  async drain(timeoutMs: number): Promise<boolean> {
    this.stopped = true;
    this.nudge?.();
    await this.dispatching;
    const allEnded = Promise.all(this.running.values()).then(() => true);
    return Promise.race([allEnded, timeLimit(timeoutMs).then(() => false)]);
  }

  /** Once hardStop has aborted: resolves when every job still running has been handed back (or after `limitMs`). */
  async handedBack(limitMs: number): Promise<void> {
    await Promise.race([Promise.all(this.running.values()), timeLimit(limitMs)]);
  }

  /** Stops renewing, reaping and promoting: nothing of this runner's is running any more. */
  dispose(): void {
    this.timers.forEach((timer) => clearInterval(timer));
    this.promotions.forEach((timer) => clearTimeout(timer));
  }

  private async dispatch(): Promise<void> {
    while (!this.stopped) {
      if (this.running.size >= this.settings.concurrency) {
        await this.idle('slot', IDLE_POLL_MS);
        continue;
      }
      let claim: Claim;
      try {
        claim = await this.fair.claim();
      } catch (err) {
        this.warn('jobs not claimed: Redis failed; trying again', err);
        await this.idle('nothing', IDLE_POLL_MS);
        continue;
      }
      if (claim.job) {
        const hasSlot = this.run(claim.job);
        if (this.capacity.pacer) {
          await Promise.race([hasSlot, this.idle('first-slot', FIRST_SLOT_WAIT_MS)]);
          if (this.waiting === 'first-slot') this.nudge?.();
        }
        continue;
      }
      await this.idle(claim.retryInMs === null ? 'work' : 'pace', claim.retryInMs ?? IDLE_POLL_MS);
    }
  }

  /** Waits `ms`, or less when nudged (a wake message for 'work', a job ending for 'slot'), or stopped. */
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

  /** Starts the job; the promise returned settles once its first request to the image API has its slot. */
  private run(job: FairJob): Promise<void> {
    let gotSlot!: () => void;
    const hasSlot = new Promise<void>((resolve) => (gotSlot = resolve));
    const deps: PipelineDeps = {
      ...this.deps,
      provider: withCapacity(this.deps.provider, this.capacity, job.id, () => gotSlot()),
      // A first clean run cannot find a checkpoint: spare it the read.
      checkpoints: job.mayHaveCheckpoint ? this.deps.checkpoints : { load: async () => null, save: (...args) => this.deps.checkpoints.save(...args) },
    };
    const ended = this.execute(job, deps).finally(() => {
      this.running.delete(job.id);
      gotSlot();
      if (this.waiting === 'slot') this.nudge?.();
    });
    this.running.set(job.id, ended);
    return hasSlot;
  }

  private async execute(job: FairJob, deps: PipelineDeps): Promise<void> {
    const startedAt = Date.now();
    const attempt = job.attemptsMade + 1;
    const end = (outcome: JobResult['outcome'] | 'handed_back', result: Omit<JobResult, 'outcome'>): void =>
      logJobEnd(this.deps.logger, { jobId: job.id, attempt, startedAt, waitedMs: startedAt - job.createdAt, outcome, result });
    let result: JobResult;
    try {
      const run = { jobId: job.id, data: job.data, attempt, maxAttempts: job.attempts, createdAt: job.createdAt };
      result = await runJob(run, deps, this.hardStop);
    } catch (err) {
      if (this.hardStop.aborted && isAbortError(err)) {
        // Out of shutdown time: first in its user's line for the next worker, which delivers a checkpointed
        // image from there without paying again.
        await this.record(job, 'handed back', () => this.fair.handBack(job));
        end('handed_back', { userId: job.userId || undefined, steps: {} });
        return;
      }
      // runJob reports every failure as an outcome: anything thrown is a bug, and retrying a bug only repeats it.
      this.deps.logger.error({ jobId: job.id, err: toError(err) }, 'unexpected error running a job');
      result = { outcome: 'failed', userId: job.userId || undefined, steps: {}, error: new WorkerError('GENERATION_FAILED', 'Job run failed unexpectedly', { cause: err }) };
    }
    if (result.outcome === 'retry') {
      // A transient failure with the producer's Bull attempts left: the next attempt after Bull's own backoff.
      const delayMs = producerBackoffMs(job.backoff, attempt);
      await this.record(job, 'retry', () => this.fair.retryLater(job, delayMs));
      this.promoteAfter(delayMs);
    } else {
      await this.record(job, 'ended', () => this.fair.done(job));
    }
    end(result.outcome, result);
  }

  /**
   * Writes how the job ended, trying again while Redis is away. Past the lease the job is no longer ours to
   * record: the reaper gives it to another worker, which delivers a checkpointed image without paying again.
   */
  private async record(job: FairJob, what: string, write: () => Promise<boolean>): Promise<void> {
    const giveUpAt = Date.now() + (this.hardStop.aborted ? 2000 : this.settings.leaseMs);
    for (let attempt = 1; ; attempt++) {
      try {
        if (!(await write())) this.deps.logger.warn({ jobId: job.id, what }, 'job lease had lapsed: another worker may have run it too');
        return;
      } catch (err) {
        if (Date.now() >= giveUpAt) {
          this.deps.logger.error({ jobId: job.id, what, err: errorSummary(err) }, 'job end not recorded in Redis: it will run again');
          return;
        }
        await timeLimit(backoffDelayMs(attempt, { baseMs: 100, maxMs: 2000 }));
      }
    }
  }

  /** Brings a retry into its user's line once due (the reaper does it too, should this worker die first). */
  private promoteAfter(delayMs: number): void {
    const timer = setTimeout(() => {
      this.promotions.delete(timer);
      this.fair.promote().catch((err: unknown) => this.warn('retries not promoted: Redis failed; the reaper will', err));
    }, delayMs + 5);
    timer.unref();
    this.promotions.add(timer);
  }

  private async renew(): Promise<void> {
    try {
      await this.fair.renew([...this.running.keys()]);
    } catch (err) {
      this.warn('job leases not renewed: Redis failed', err);
    }
  }

  /** Jobs whose worker died go back to their users' lines; those that stalled too often end, and this worker tells their users. */
  private async reap(): Promise<void> {
    let ended: FairJob[];
    try {
      ended = await this.fair.reap(this.settings.maxStalledCount);
    } catch (err) {
      this.warn('stalled jobs not checked: Redis failed', err);
      return;
    }
    for (const job of ended) await this.endStalled(job);
  }

  private async endStalled(job: FairJob): Promise<void> {
    const error = permanentError('GENERATION_FAILED', `Job stalled more than MAX_STALLED_COUNT (${this.settings.maxStalledCount}) times: its worker kept dying or blocking`);
    const userId = job.userId || undefined;
    if (userId) {
      const event = failureEvent(job.id, { userId, number: echoableNumber(job.data) }, error.code);
      // Only shutdown running out of time aborts it: the job has ended all the same.
      await tellFailure(event, this.deps, this.hardStop).catch(() => undefined);
    }
    logJobEnd(this.deps.logger, { jobId: job.id, attempt: job.attemptsMade + 1, startedAt: Date.now(), outcome: 'failed', result: { userId, steps: {}, error } });
  }

  private every(ms: number, task: () => Promise<void>): void {
    const timer = setInterval(() => void task(), ms);
    timer.unref();
    this.timers.push(timer);
  }

  private warn(message: string, err: unknown): void {
    if (this.throttle.allow()) this.deps.logger.warn({ component: 'fair-queue', err: errorSummary(err) }, message);
  }
}
