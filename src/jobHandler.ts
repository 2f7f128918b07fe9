import type { Job } from 'bull';
import type { RedisCheckpointStore } from './checkpointStore';
import { isAbortError } from './errors';
import { usableUserId } from './jobData';
import type { Logger } from './logger';
import { errorSummary, JobResult, PipelineDeps, runJob } from './pipeline';

/**
 * The Bull side of one job: runs the pipeline, logs the job's end, and turns the outcome into what Bull
 * understands (return, throw for a retry, discard for a permanent failure, hand back at shutdown).
 */
export interface JobContext {
  deps: PipelineDeps;
  signal: AbortSignal;
  shuttingDown: () => boolean;
  /** Jobs being given back to the queue because shutdown ran out of time. */
  handBacks: Set<Promise<void>>;
  logger: Logger;
}

export async function handleJob(job: Job, { deps, signal, shuttingDown, handBacks, logger }: JobContext): Promise<void> {
  const started = Date.now();
  const attempt = job.attemptsMade + 1;
  let result: JobResult;
  try {
    result = await runJob(
      { jobId: String(job.id), data: job.data, attempt, maxAttempts: job.opts.attempts ?? 1, createdAt: job.timestamp },
      deps,
      signal,
    );
  } catch (err) {
    if (!(isAbortError(err) && shuttingDown())) throw err;
    // Out of shutdown time: give the job back to the queue so another worker starts it now, rather than
    // after its lock expires. A checkpointed image is delivered from there without being paid again.
    const handBack = (job as unknown as BullJobInternals)
      .moveToDelayed(Date.now(), false)
      .then(() => logJobEnd(logger, job, attempt, started, { outcome: 'handed_back', userId: userIdOf(job.data), steps: {} }))
      .catch((handBackErr: unknown) => logger.warn({ jobId: String(job.id), err: errorSummary(handBackErr) }, 'job not handed back; stalled recovery will redo it'));
    handBacks.add(handBack);
    // Settling would make Bull try to finish a job that is no longer ours.
    return new Promise<void>(() => undefined);
  }
  logJobEnd(logger, job, attempt, started, result);
  if (result.outcome === 'completed') return;
  const error = result.error!;
  if (result.outcome === 'failed' && job.opts.attempts && job.opts.attempts > attempt) await job.discard();
  // Bull records the code as the failed reason; with attempts left (`retry`) it schedules the next one.
  throw Object.assign(new Error(result.outcome === 'retry' ? `${error.code}: ${error.message}` : error.code), { code: error.code });
}

function userIdOf(data: unknown): string | undefined {
  const id = typeof data === 'object' && data !== null ? (data as Record<string, unknown>).Id : undefined;
  return usableUserId(id) ? id : undefined;
}

/**
 * Bull fails a job that stalled more than MAX_STALLED_COUNT times (a job that keeps killing its worker)
 * without running it; with removeOnFail its data is gone too. Every worker hears of it; the one that
 * takes the owner record tells the user and logs the job's end.
 */
export async function reportStallLimit(jobId: string, reason: string, checkpoints: RedisCheckpointStore, deps: PipelineDeps, logger: Logger): Promise<void> {
  if (!/stalled more than/.test(reason)) return;
  try {
    const owner = await checkpoints.takeOwner(jobId);
    if (!owner) return;
    const message = 'Image generation was interrupted too many times. Please try again.';
    logger.warn(
      { jobId, userId: owner.userId, outcome: 'failed', code: 'GENERATION_FAILED', error: { message: reason } },
      'job end: stalled more than MAX_STALLED_COUNT times',
    );
    await deps.notifier.notify(
      { userId: owner.userId, number: owner.number, jobId, status: 'failed', error: { code: 'GENERATION_FAILED', message } },
      new AbortController().signal,
    );
  } catch (err) {
    logger.warn({ jobId, err: errorSummary(err) }, 'stalled job failure not reported');
  }
}

/** Bull 4 has this method; its type definitions miss it. Needs the job's lock, so only its holder can use it. */
interface BullJobInternals {
  moveToDelayed(timestamp: number, ignoreLock: boolean): Promise<void>;
}

type JobEnd = Omit<JobResult, 'outcome'> & { outcome: JobResult['outcome'] | 'handed_back' };

function logJobEnd(logger: Logger, job: Job, attempt: number, started: number, result: JobEnd): void {
  const error = result.error;
  const line = {
    jobId: String(job.id),
    userId: result.userId,
    outcome: result.outcome,
    code: error?.code ?? null,
    attempt,
    durationMs: Date.now() - started,
    steps: result.steps,
    promptChars: result.promptChars,
    imageBytes: result.imageBytes,
    fromCheckpoint: result.fromCheckpoint ?? false,
    costUsd: result.costUsd,
    error: error ? errorSummary(error) : undefined,
  };
  if (error?.misconfiguration) {
    logger.error(line, 'job end: the image API refused the request; check GROK_API_KEY, GROK_MODEL and GROK_API');
  } else if (result.outcome === 'completed') logger.info(line, 'job end');
  else logger.warn(line, 'job end');
}
