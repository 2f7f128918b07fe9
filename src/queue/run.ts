import { CapacityOptions, withCapacity } from '../capacity/withCapacity';
import type { InFlightLimit } from '../capacity/inFlight';
import { ClaimLostError, isAbortError, toError, WorkerError } from '../base/errors';
import { PipelineDeps, RunOutcome, runJob } from '../pipeline/runJob';
import { echoableNumber } from '../pipeline/steps/jobData';
import type { PictureMemory } from '../pipeline/ports';
import type { Checkpoints } from './checkpoints';
import type { Claims } from './claims';
import type { Pictures } from './pictures';
import { answerError, claimLost, endRun, EndingContext, handBack, NextJob, RunFacts } from './ending';
import type { Claim } from './fairQueue';

/** What running one claimed job needs; built once by the worker. */
export interface RunContext extends EndingContext {
  claims: Claims;
  checkpoints: Checkpoints;
  /** The pipeline's collaborators; the provider is wrapped per run in the shared pace. */
  deps: PipelineDeps;
  capacity: CapacityOptions;
  inFlight: InFlightLimit;
  /** Pictures delivered lately, when REMEMBER_PICTURES_S is on. */
  pictures?: Pictures;
  maxStalledCount: number;
}

/**
 * Runs one job under its claim, to one of its ends (src/queue/ending.ts). Everything the run does is its claim's:
 * the claim's own signal stops it when the claim is lost, and a run that lost its claim pays, delivers, tells and
 * ends nothing. `onSlot` is called once the job has its first image API slot, or will not need one.
 */
export async function runClaim(claim: Claim, ctx: RunContext, onSlot: () => void, next?: NextJob): Promise<void> {
  const { job } = claim;
  const facts: RunFacts = { startedAt: Date.now(), askedApi: false, next };
  const lost = ctx.claims.take(claim);
  const signal = AbortSignal.any([ctx.hardStop, lost]);
  ctx.events.emit('job:started', { jobId: job.id, claim: claim.token, attempt: job.attemptsMade + 1 });
  if (job.lane === 'answers') onSlot();
  try {
    let outcome: RunOutcome;
    try {
      outcome = await produce(claim, ctx, signal, () => {
        facts.askedApi = true;
        onSlot();
      });
    } catch (err) {
      if (err instanceof ClaimLostError || lost.aborted) return claimLost(claim, facts, ctx);
      if (ctx.hardStop.aborted && isAbortError(err)) return await handBack(claim, facts, ctx);
      // runJob reports every failure as an outcome: anything thrown is a bug, and retrying a bug only repeats it.
      ctx.logger.error({ jobId: job.id, err: toError(err) }, 'unexpected error running a job');
      const error = new WorkerError('GENERATION_FAILED', 'Job run failed unexpectedly', { cause: err });
      outcome = { delivered: false, error, report: { userId: job.userId || undefined, steps: {} }, serviceAway: false };
    }
    await endRun(claim, outcome, facts, ctx);
  } finally {
    ctx.claims.release(claim);
    onSlot();
  }
}

/** The pipeline under this claim, or, for an answer with no picture kept, the answer itself. */
async function produce(claim: Claim, ctx: RunContext, signal: AbortSignal, onSlot: () => void): Promise<RunOutcome> {
  const { job } = claim;
  const answer = job.answer ? answerError(claim, ctx.maxStalledCount) : undefined;
  if (answer && !job.hasCheckpoint) {
    const owner = job.userId ? { userId: job.userId, number: echoableNumber(job.data) } : undefined;
    return { delivered: false, error: answer, report: { userId: job.userId || undefined, steps: {} }, owner, serviceAway: false };
  }
  const stillOurs = (): Promise<boolean> => ctx.claims.stillOurs(claim, signal);
  const deps: PipelineDeps = {
    ...ctx.deps,
    provider: withCapacity(ctx.deps.provider, ctx.capacity, job.id, {
      onSlot,
      mayPay: stillOurs,
      onAnswer: (ms) => ctx.inFlight.observe(ms),
      promised: job.fid,
    }),
    checkpoints: ctx.checkpoints.forJob(job),
    pictures: ctx.pictures && job.ask ? picturesFor(ctx.pictures, job) : undefined,
    claim: { stillOurs },
  };
  const run = { jobId: job.id, data: job.data, attempt: job.attemptsMade + 1, maxAttempts: job.attempts, createdAt: job.createdAt, keptOnly: answer };
  return runJob(run, deps, signal);
}

/** The job's ask's pictures; one not taken in as remembered is spared the read. */
function picturesFor(pictures: Pictures, job: Claim['job']): PictureMemory {
  const memory = pictures.forAsk(job.ask);
  return job.remembered ? memory : { recall: async () => null, keep: (image) => memory.keep(image) };
}
