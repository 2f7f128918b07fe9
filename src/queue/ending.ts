import { ErrorCode, errorSummary, isAbortError, permanentError, WorkerError } from '../base/errors';
import type { WorkerEvents } from '../events/workerEvents';
import type { JobEnd, JobEndOutcome } from '../events/jobEnd';
import type { Logger } from '../base/logger';
import { failureEvent, failureOutcome, RunOutcome, RunReport } from '../pipeline/runJob';
import { backoffDelayMs, producerBackoffMs } from '../base/retryPolicy';
import { timeLimit } from '../base/sleep';
import type { JobEvent, Notifier } from '../pipeline/ports';
import type { Claims } from './claims';
import type { Claim, FairQueue, NextClaim, RunEnd } from './fairQueue';
import type { ClaimReply } from './replies';

/**
 * The one place a run ends: it turns what the pipeline reports into the job's end. A delivered picture completes
 * the job (and the jobs that joined it); a failure is retried after the producer's backoff while attempts are
 * left, else held back (a repeat for the same ask) or told (the claim checked first) and then recorded; a run
 * stopped by shutdown is handed back. Every end is recorded fenced by the claim, and each gets its `job end`.
 */

/** The dispatcher's offer to take the next job from the round trip that ends this one. */
export interface NextJob {
  /** The claim to make, when the dispatcher wants a job now (it has room, and claims without the pace). */
  wanted(): NextClaim | undefined;
  /** What the claim made with the end found. */
  take(claim: ClaimReply, next: NextClaim): void;
  /**
   * No claim came back: the end was refused (its claim was gone), or its call failed, and then the claim made with
   * it may have happened all the same (see giveBackOrphans).
   */
  lost(next: NextClaim): void;
}

export interface EndingContext {
  fair: FairQueue;
  claims: Claims;
  notifier: Notifier;
  logger: Logger;
  events: WorkerEvents;
  /** Brings back what was set aside once it is due. */
  promoteAfter(delayMs: number): void;
  /** Aborted when shutdown runs out of time. */
  hardStop: AbortSignal;
}

/** What the ending needs to know about the run besides its outcome. */
export interface RunFacts {
  startedAt: number;
  /** The run reserved a slot of the image API (else the slot its claim was promised is given back). */
  askedApi: boolean;
  next?: NextJob;
}

/**
 * Failures that belong to the job's own token or data, not to its ask: the jobs that joined it run on their own
 * instead of failing with it.
 */
const OWN_FAILURES: ReadonlySet<ErrorCode> = new Set(['INVALID_JOB', 'INVALID_TOKEN', 'SESSION_EXPIRED']);

export async function endRun(claim: Claim, outcome: RunOutcome, facts: RunFacts, ctx: EndingContext): Promise<void> {
  const { job } = claim;
  const end = (how: JobEndOutcome, extra: Partial<JobEnd['report']> = {}): void => emitEnd(ctx, claim, facts, how, { ...outcome.report, ...extra });

  if (outcome.delivered) {
    ctx.events.emit('job:delivered', { jobId: job.id, userId: job.userId, fromCheckpoint: outcome.report.fromCheckpoint ?? false });
    const returnValue = { delivered: true, fromCheckpoint: outcome.report.fromCheckpoint ?? false, imageBytes: outcome.report.imageBytes };
    const joined = await record(claim, { how: 'completed', returnValue }, facts, ctx);
    if (joined === null) return end('claim_lost');
    end('completed');
    endJoined(ctx, claim, joined, 'completed', outcome.report);
    return;
  }

  const { error } = outcome;
  if (!job.answer && failureOutcome(error, { attempt: job.attemptsMade + 1, maxAttempts: job.attempts }) === 'retry') {
    // A transient failure with the producer's Bull attempts left: the next attempt after Bull's own backoff.
    const delayMs = producerBackoffMs(job.backoff, job.attemptsMade + 1);
    if ((await record(claim, { how: 'retry', delayMs }, facts, ctx)) === null) return end('claim_lost', { error });
    ctx.promoteAfter(delayMs);
    return end('retry', { error });
  }

  const heldMs = job.answer ? job.heldMs : undefined;
  if (outcome.owner) {
    const decision = job.answer ? await confirm(claim, ctx) : await holdBack(claim, error.code, ctx);
    if (decision === 'lost') return end('claim_lost', { error });
    if (typeof decision === 'number') {
      ctx.logger.debug({ jobId: job.id, code: error.code, heldMs: decision }, 'failure answer held back: the same ask failed a moment ago');
      ctx.events.emit('job:heldBack', { jobId: job.id, userId: outcome.owner.userId, code: error.code, heldMs: decision });
      ctx.promoteAfter(decision);
      return;
    }
    if ((await tell(failureEvent(job.id, outcome.owner, error.code), outcome.serviceAway, ctx)) === 'stopped') {
      // Shutdown ran out of time before the person was told: the job comes back as that answer, for the next worker.
      return handBack(claim, facts, ctx, error.code);
    }
  }
  const shared = !OWN_FAILURES.has(error.code);
  const joined = await record(claim, { how: 'failed', code: error.code, shared }, facts, ctx);
  if (joined === null) return end('claim_lost', { error, heldMs });
  end('failed', { error, heldMs });
  endJoined(ctx, claim, joined, 'failed', outcome.report, error);
}

/**
 * A run stopped by shutdown: back where it was, for the next worker, which delivers a kept picture without paying
 * again, or tells `answer` when that is what the run was telling.
 */
export async function handBack(claim: Claim, facts: RunFacts, ctx: EndingContext, answer?: ErrorCode): Promise<void> {
  const joined = await record(claim, { how: 'back', answer }, facts, ctx);
  emitEnd(ctx, claim, facts, joined === null ? 'claim_lost' : 'handed_back', { userId: claim.job.userId || undefined, steps: {} });
}

/** A run whose claim was lost: it stops, and says so once. */
export function claimLost(claim: Claim, facts: RunFacts, ctx: EndingContext): void {
  emitEnd(ctx, claim, facts, 'claim_lost', { userId: claim.job.userId || undefined, steps: {} });
}

/** The answer of a job that needs no run: the failure it was held back with, or the one its stalls earned it. */
export function answerError(claim: Claim, maxStalledCount: number): WorkerError {
  const { job } = claim;
  const code = job.answer ?? 'GENERATION_FAILED';
  return job.stalledOut
    ? permanentError(code, `Job stalled more than MAX_STALLED_COUNT (${maxStalledCount}) times: its worker kept dying or freezing`)
    : permanentError(code, 'A failure answer held back because the same ask failed a moment ago; told now');
}

function emitEnd(ctx: EndingContext, claim: Claim, facts: RunFacts, outcome: JobEndOutcome, report: JobEnd['report']): void {
  const { job } = claim;
  ctx.events.emit('job:end', {
    jobId: job.id,
    attempt: job.attemptsMade + 1,
    startedAt: facts.startedAt,
    waitedMs: facts.startedAt - job.createdAt,
    outcome,
    report,
  });
}

/** Jobs that joined an identical one end with it: each still gets its own `job end` line. */
function endJoined(ctx: EndingContext, leader: Claim, joined: string[], outcome: 'completed' | 'failed', report: RunReport, error?: WorkerError): void {
  const startedAt = Date.now();
  for (const jobId of joined) {
    ctx.events.emit('job:end', {
      jobId,
      attempt: 1,
      startedAt,
      outcome,
      report: { userId: report.userId, steps: {}, error, joinedTo: leader.job.id },
    });
  }
}

/** Whether the failure is told now (the claim confirmed), held back for a number of ms, or the claim is gone. */
async function holdBack(claim: Claim, code: ErrorCode, ctx: EndingContext): Promise<'tell' | 'lost' | number> {
  ctx.claims.ending(claim);
  try {
    const reply = await ctx.fair.holdBack(claim, code);
    if (reply.tell) return 'tell';
    return 'heldMs' in reply ? reply.heldMs : 'lost';
  } catch (err) {
    // Nothing is told on a claim that may be gone: the claim is confirmed instead, waiting for Redis if need be.
    ctx.logger.warn({ jobId: claim.job.id, err: errorSummary(err) }, 'failure answer not checked for repeats: telling it once the claim is confirmed');
    return confirm(claim, ctx);
  }
}

async function confirm(claim: Claim, ctx: EndingContext): Promise<'tell' | 'lost'> {
  return (await ctx.claims.stillOurs(claim, ctx.hardStop)) ? 'tell' : 'lost';
}

/**
 * Tells the user their job failed, waiting for the notification service; a delivery that fails is logged, not
 * thrown. When the service is away (the picture's own delivery gave up), the failure goes out only if the
 * connection happens to be back: waiting as long again to say so would only hold the worker. 'stopped': shutdown
 * ran out of time first, and the person was not told.
 */
async function tell(event: JobEvent, serviceAway: boolean, ctx: EndingContext): Promise<'told' | 'not told' | 'stopped'> {
  try {
    if (serviceAway) {
      if (!ctx.notifier.tryNotify(event)) return 'not told';
    } else {
      await ctx.notifier.notify(event, ctx.hardStop);
    }
    ctx.events.emit('job:told', { jobId: event.jobId, userId: event.userId, code: event.error!.code as ErrorCode });
    return 'told';
  } catch (err) {
    if (ctx.hardStop.aborted && isAbortError(err)) return 'stopped';
    ctx.logger.warn({ jobId: event.jobId, code: event.error?.code, err: errorSummary(err) }, 'failure notification not delivered');
    return 'not told';
  }
}

/**
 * Writes how the run ended, trying again while Redis is away: once it answers, the end is either recorded or
 * refused because the claim is gone (the job was taken back and runs again; a kept picture is then delivered
 * without paying again). Returns the Bull ids of the jobs that ended with it, or null when it was not recorded.
 * Only shutdown running out of time stops the tries, two seconds later.
 */
async function record(claim: Claim, how: RunEnd, facts: RunFacts, ctx: EndingContext): Promise<string[] | null> {
  let giveUpAt = ctx.hardStop.aborted ? Date.now() + 2000 : Infinity;
  ctx.claims.ending(claim);
  let wanted = how.how === 'completed' || how.how === 'failed' ? facts.next?.wanted() : undefined;
  for (let attempt = 1; ; attempt++) {
    try {
      const { ended, joined, next } = await ctx.fair.end(claim, how, facts.askedApi, wanted);
      if (wanted && next) facts.next?.take(next, wanted);
      else if (wanted) facts.next?.lost(wanted);
      if (!ended) {
        ctx.logger.warn({ jobId: claim.job.id, what: how.how }, 'claim lost before the run ended: its end was not recorded (the job was taken back)');
        return null;
      }
      return joined;
    } catch (err) {
      // The end may have run without its reply: the tries claim nothing more (what it claimed is given back later).
      if (wanted) facts.next?.lost(wanted);
      wanted = undefined;
      if (ctx.hardStop.aborted && giveUpAt === Infinity) giveUpAt = Date.now() + 2000;
      if (Date.now() >= giveUpAt) {
        ctx.logger.error({ jobId: claim.job.id, what: how.how, err: errorSummary(err) }, 'job end not recorded in Redis: the job will run again');
        return null;
      }
      if (attempt === 1 || attempt % 20 === 0)
        ctx.logger.warn({ jobId: claim.job.id, what: how.how, err: errorSummary(err) }, 'job end not recorded yet: Redis failed; trying again');
      await timeLimit(backoffDelayMs(attempt, { baseMs: 100, maxMs: 2000 }));
    }
  }
}
