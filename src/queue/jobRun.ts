import { CapacityOptions, withCapacity } from '../capacity/withCapacity';
import type { InFlightLimit } from '../capacity/inFlight';
import { ErrorCode, errorSummary, isAbortError, LeaseLostError, permanentError, toError, WorkerError } from '../errors';
import { echoableNumber } from '../steps/jobData';
import { JobEndOutcome, logJobEnd } from '../jobEnd';
import { failureEvent, JobResult, PipelineDeps, runJob, tellFailure } from '../pipeline';
import { backoffDelayMs, producerBackoffMs } from '../retryPolicy';
import { timeLimit } from '../sleep';
import type { Checkpoints } from './checkpoints';
import type { FairJob, FairQueue, RunEnd } from './fairQueue';

/** The dispatcher's offer to take the next job from the round trip that ends this one. */
export interface NextJob {
  /** Whether the dispatcher has room for another job once this one ends (and claims without waiting for the pace). */
  wanted(): boolean;
  take(job: FairJob): void;
  /** Whether a claim made with the end of a run found a job. */
  found(any: boolean): void;
}
import type { Leases } from './leases';
import type { Reaper } from './reaper';

/** What running one claimed job needs; built once by the worker. */
export interface RunContext {
  fair: FairQueue;
  leases: Leases;
  reaper: Reaper;
  checkpoints: Checkpoints;
  /** The pipeline's collaborators; the provider is wrapped per job in the shared pace. */
  deps: PipelineDeps;
  capacity: CapacityOptions;
  inFlight: InFlightLimit;
  /** Aborted when shutdown runs out of time: running jobs stop and are handed back. */
  hardStop: AbortSignal;
  leaseMs: number;
  maxStalledCount: number;
}

/**
 * Runs one job the fair queue leased to this worker, to one of its ends: completed or failed (finished in Bull
 * too), a retry later, a failure answer held back, handed back at shutdown, or nothing at all when the lease was
 * lost (another worker may hold the job; a stale holder must not touch it). `onSlot` is called once the job has
 * its first slot of the image API, or will not need one.
 */
export async function runClaimedJob(job: FairJob, ctx: RunContext, onSlot: () => void, next?: NextJob): Promise<void> {
  const startedAt = Date.now();
  const signal = AbortSignal.any([ctx.hardStop, ctx.leases.hold(job)]);
  const end = (outcome: JobEndOutcome, result: Omit<JobResult, 'outcome'>): void =>
    logJobEnd(ctx.deps.logger, { jobId: job.id, attempt: job.attemptsMade + 1, startedAt, waitedMs: startedAt - job.createdAt, outcome, result });
  try {
    let askedApi = false;
    let result: JobResult;
    if (job.answer) {
      // Nothing to make: tell the failure it carries, then end it as every failure ends.
      onSlot();
      const error = answerError(job, ctx.maxStalledCount);
      await tellAnswer(job, error.code, ctx, signal);
      result = { outcome: 'failed', userId: job.userId || undefined, steps: {}, error };
    } else {
      const deps: PipelineDeps = {
        ...ctx.deps,
        provider: withCapacity(ctx.deps.provider, ctx.capacity, job.id, {
          onSlot: () => {
            askedApi = true;
            onSlot();
          },
          mayPay: () => ctx.leases.stillHeld(job),
          onAnswer: (ms) => ctx.inFlight.observe(ms),
        }),
        checkpoints: ctx.checkpoints.forJob(job),
        lease: { stillHeld: () => ctx.leases.stillHeld(job), holdFailure: (code) => ctx.fair.hold(job, code) },
      };
      try {
        const run = { jobId: job.id, data: job.data, attempt: job.attemptsMade + 1, maxAttempts: job.attempts, createdAt: job.createdAt };
        result = await runJob(run, deps, signal);
      } catch (err) {
        if (err instanceof LeaseLostError || signal.reason instanceof LeaseLostError) {
          end('lease_lost', { userId: job.userId || undefined, steps: {} });
          return;
        }
        if (ctx.hardStop.aborted && isAbortError(err)) {
          // Out of shutdown time: back where it was in its user's line, for the next worker, which delivers a
          // checkpointed image from there without paying again.
          await record(job, { how: 'back' }, ctx, askedApi);
          end('handed_back', { userId: job.userId || undefined, steps: {} });
          return;
        }
        // runJob reports every failure as an outcome: anything thrown is a bug, and retrying a bug only repeats it.
        ctx.deps.logger.error({ jobId: job.id, err: toError(err) }, 'unexpected error running a job');
        const error = new WorkerError('GENERATION_FAILED', 'Job run failed unexpectedly', { cause: err });
        result = { outcome: 'failed', userId: job.userId || undefined, steps: {}, error };
      }
    }
    const joined = await finish(job, result, ctx, askedApi, next);
    end(result.outcome === 'held' ? 'held_back' : result.outcome, result);
    if (result.outcome === 'completed' || result.outcome === 'failed') logJoined(joined, job, result.outcome, result.error, ctx);
  } finally {
    ctx.leases.release(job);
    onSlot();
  }
}

/**
 * Records how the run ended; a retry and a held answer come back into line when due. Returns the Bull ids of
 * jobs that had joined this one and ended with it.
 */
async function finish(job: FairJob, result: JobResult, ctx: RunContext, askedApi: boolean, next?: NextJob): Promise<string[]> {
  switch (result.outcome) {
    case 'completed': {
      const returnValue = { delivered: true, fromCheckpoint: result.fromCheckpoint ?? false, imageBytes: result.imageBytes };
      return record(job, { how: 'completed', returnValue }, ctx, askedApi, next);
    }
    case 'failed':
      return record(job, { how: 'failed', code: result.error?.code ?? 'GENERATION_FAILED' }, ctx, askedApi, next);
    case 'retry': {
      // A transient failure with the producer's Bull attempts left: the next attempt after Bull's own backoff.
      const delayMs = producerBackoffMs(job.backoff, job.attemptsMade + 1);
      await record(job, { how: 'retry', delayMs }, ctx, askedApi);
      ctx.reaper.promoteAfter(delayMs);
      return [];
    }
    case 'held':
      // The hold itself set the job aside (hold-14.lua); it is told when due.
      ctx.reaper.promoteAfter(result.heldMs ?? 0);
      return [];
  }
}

/** Jobs that joined an identical one end with it: each still gets its own `job end` line. */
function logJoined(joined: string[], leader: FairJob, outcome: 'completed' | 'failed', error: WorkerError | undefined, ctx: RunContext): void {
  const startedAt = Date.now();
  for (const jobId of joined) {
    logJobEnd(ctx.deps.logger, {
      jobId,
      attempt: 1,
      startedAt,
      outcome,
      result: { userId: leader.userId || undefined, steps: {}, error, joinedTo: leader.id },
    });
  }
}

function answerError(job: FairJob, maxStalledCount: number): WorkerError {
  const code = job.answer as ErrorCode;
  return job.stalledOut
    ? permanentError(code, `Job stalled more than MAX_STALLED_COUNT (${maxStalledCount}) times: its worker kept dying or freezing`)
    : permanentError(code, 'A failure answer held back because the same page failed a moment ago; told now');
}

async function tellAnswer(job: FairJob, code: ErrorCode, ctx: RunContext, signal: AbortSignal): Promise<void> {
  if (!job.userId) return;
  const event = failureEvent(job.id, { userId: job.userId, number: echoableNumber(job.data) }, code);
  // Only shutdown running out of time aborts it: the job ends all the same, and stalled recovery is not needed.
  await tellFailure(event, ctx.deps, signal).catch(() => undefined);
}

/**
 * Writes how the run ended, trying again while Redis is away. Past the lease the job is no longer ours to
 * record: the reaper gives it to another worker, which delivers a checkpointed image without paying again.
 */
async function record(job: FairJob, how: RunEnd, ctx: RunContext, askedApi: boolean, next?: NextJob): Promise<string[]> {
  const { logger } = ctx.deps;
  const giveUpAt = Date.now() + (ctx.hardStop.aborted ? 2000 : ctx.leaseMs);
  for (let attempt = 1; ; attempt++) {
    try {
      const { held, joined, next: claimed } = await ctx.fair.end(job, how, askedApi, next?.wanted() ?? false);
      if (claimed) next?.found(claimed.job !== undefined);
      if (claimed?.job) next?.take(claimed.job);
      if (!held) logger.warn({ jobId: job.id, what: how.how }, 'job lease had lapsed: its end was not recorded (another worker holds it)');
      return joined;
    } catch (err) {
      if (Date.now() >= giveUpAt) {
        logger.error({ jobId: job.id, what: how.how, err: errorSummary(err) }, 'job end not recorded in Redis: it will run again');
        return [];
      }
      await timeLimit(backoffDelayMs(attempt, { baseMs: 100, maxMs: 2000 }));
    }
  }
}
