import { errorSummary, isAbortError, toError, WorkerError } from './errors';
import { echoableNumber, InvalidJobError, ImageJob, validateJobData } from './jobData';
import type { Logger } from './logger';
import { preparePrompt } from './prompt';
import { withRetries } from './retryPolicy';
import type { CheckpointStore, GeneratedImage, ImageProvider, JobEvent, Notifier, TokenVerifier } from './types';

/** The steps' collaborators: the pipeline never builds a client or reads the environment itself. */
export interface PipelineDeps {
  verifier: TokenVerifier;
  provider: ImageProvider;
  notifier: Notifier;
  checkpoints: CheckpointStore;
  logger: Logger;
  settings: PipelineSettings;
  /** Overrides for tests: how long to wait before retry `attempt`, and how to wait. */
  retryDelay?: (attempt: number, err: unknown) => number;
  sleep?: (ms: number, signal?: AbortSignal) => Promise<void>;
}

export interface PipelineSettings {
  promptPrefix: string;
  promptMaxLength: number;
  /** Extra attempts for a transient failure inside one run of the job. */
  maxRetries: number;
  notifyProgress: boolean;
}

/** One run of a job as the queue hands it over. */
export interface JobRun {
  jobId: string;
  data: unknown;
  /** 1-based; a Bull retry is a later attempt. */
  attempt: number;
  /** Attempts the producer allowed (Bull's `attempts`, 1 when not given). */
  maxAttempts: number;
  /** When the job was created: with the user it fingerprints a checkpoint to this very job. */
  createdAt: number;
}

export type Outcome = 'completed' | 'failed' | 'retry';

export interface JobResult {
  outcome: Outcome;
  /** The failure, when not completed. `retry`: transient, hand back to the queue for another attempt. */
  error?: WorkerError;
  userId?: string;
  steps: { token?: number; generate?: number; notify?: number };
  promptChars?: number;
  imageBytes?: number;
  /** The image came from a checkpoint: nothing was paid for on this run. */
  fromCheckpoint?: boolean;
  costUsd?: number;
}

/** validate job -> validate token -> generate image -> notify. Never throws except on abort (shutdown). */
export async function runJob(run: JobRun, deps: PipelineDeps, signal: AbortSignal): Promise<JobResult> {
  const { logger } = deps;
  const result: JobResult = { outcome: 'failed', steps: {} };
  let job: ImageJob | undefined;
  const retrying = <T>(fn: () => Promise<T>, step: string): Promise<T> =>
    withRetries(fn, {
      maxRetries: deps.settings.maxRetries,
      signal,
      delayFor: deps.retryDelay,
      sleep: deps.sleep,
      onRetry: ({ attempt, delayMs, error }) =>
        logger.warn({ jobId: run.jobId, step, retry: attempt, delayMs, err: errorSummary(error) }, `${step} failed, retrying`),
    });
  const timed = async <T>(step: keyof JobResult['steps'], fn: () => Promise<T>): Promise<T> => {
    const started = performance.now();
    try {
      return await fn();
    } finally {
      result.steps[step] = Math.round(performance.now() - started);
    }
  };

  try {
    job = validateJobData(run.data);
    result.userId = job.userId;
    const { userId, token } = job;
    const fingerprint = `${userId}:${run.createdAt}`;

    // An image checkpointed by an earlier run of this very job was only made after its token was verified:
    // it is delivered even if the token has expired since (a Bull backoff, a restart), never paid for again.
    const saved = await loadCheckpoint(run.jobId, fingerprint, deps);
    if (!saved) await timed('token', () => retrying(() => deps.verifier.verify(token, userId, signal), 'token'));

    // Progress goes out only once the room is proven to be this user's.
    if (deps.settings.notifyProgress) deps.notifier.tryNotify(eventFor(run, job, 'processing'));

    const prompt = preparePrompt(job.prompt, deps.settings.promptPrefix, deps.settings.promptMaxLength);
    result.promptChars = prompt.sentLength;
    if (prompt.cut) {
      logger.info({ jobId: run.jobId, originalChars: prompt.originalLength, sentChars: prompt.sentLength }, 'prompt cut to PROMPT_MAX_LENGTH');
    }
    logger.debug({ jobId: run.jobId, prompt: prompt.text }, 'prompt');

    result.fromCheckpoint = saved !== null;
    const image = saved ?? (await timed('generate', () => retrying(() => deps.provider.generate({ prompt: prompt.text, userId }, signal), 'generate')));
    result.imageBytes = base64Bytes(image.base64);
    // A checkpointed image was paid for by an earlier run, and logged there.
    result.costUsd = saved ? 0 : image.costUsd;

    const completed: JobEvent = { ...eventFor(run, job, 'completed'), image };
    await timed('notify', async () => {
      if (deps.notifier.tryDeliver(completed)) return;
      // Delivery has to wait (the service is away, or must acknowledge): the image is kept in Redis meanwhile,
      // so a crash, a stall or a later attempt delivers it without paying again. The queue's side removes it
      // once the job has finished.
      if (!saved) await saveCheckpoint(run.jobId, fingerprint, image, deps);
      await deps.notifier.notify(completed, signal);
    });
    result.outcome = 'completed';
    return result;
  } catch (err) {
    if (signal.aborted && isAbortError(err)) throw err;
    const error = asWorkerError(err, logger, run.jobId);
    result.error = error;
    const userId = job?.userId ?? (error instanceof InvalidJobError ? error.userId : undefined);
    result.userId = userId;
    const lastAttempt = run.attempt >= run.maxAttempts;
    if (error.transient && !lastAttempt) {
      result.outcome = 'retry';
      return result;
    }
    result.outcome = 'failed';
    if (userId === undefined) return result;
    const failure = failureEvent(run, userId, job?.number ?? echoableNumber(run.data), error);
    // A failed delivery means the service is away: waiting as long again to say so would only block the
    // worker, so the failure goes out only if the connection happens to be back.
    if (result.steps.notify !== undefined) deps.notifier.tryNotify(failure);
    else await tellFailure(failure, deps, signal);
    return result;
  }
}

async function loadCheckpoint(jobId: string, fingerprint: string, deps: PipelineDeps): Promise<GeneratedImage | null> {
  return deps.checkpoints.load(jobId, fingerprint).catch((err: unknown) => {
    deps.logger.warn({ jobId, err: errorSummary(err) }, 'checkpoint unreadable, generating');
    return null;
  });
}

async function saveCheckpoint(jobId: string, fingerprint: string, image: GeneratedImage, deps: PipelineDeps): Promise<void> {
  // Losing the checkpoint only risks paying again after a crash; it never stops the delivery.
  await deps.checkpoints.save(jobId, fingerprint, image).catch((err: unknown) => {
    deps.logger.warn({ jobId, err: errorSummary(err) }, 'checkpoint not saved');
  });
}

function failureEvent(run: JobRun, userId: string, number: ImageJob['number'], error: WorkerError): JobEvent {
  return { userId, number, jobId: run.jobId, status: 'failed', error: { code: error.code, message: error.message } };
}

async function tellFailure(event: JobEvent, deps: PipelineDeps, signal: AbortSignal): Promise<void> {
  try {
    await deps.notifier.notify(event, signal);
  } catch (err) {
    if (signal.aborted && isAbortError(err)) throw err;
    deps.logger.warn({ jobId: event.jobId, code: event.error?.code, err: errorSummary(err) }, 'failure notification not delivered');
  }
}

function eventFor(run: JobRun, job: ImageJob, status: JobEvent['status']): JobEvent {
  return { userId: job.userId, number: job.number, jobId: run.jobId, status };
}

/** Anything that is not a WorkerError is a bug in a step: logged loudly, and the job fails rather than loops. */
function asWorkerError(err: unknown, logger: Logger, jobId: string): WorkerError {
  if (err instanceof WorkerError) return err;
  const error = toError(err);
  logger.error({ jobId, err: error }, 'unexpected error in the pipeline');
  return new WorkerError('GENERATION_FAILED', 'Image generation failed unexpectedly', { cause: error });
}

export function base64Bytes(base64: string): number {
  const padding = base64.endsWith('==') ? 2 : base64.endsWith('=') ? 1 : 0;
  return Math.floor((base64.length * 3) / 4) - padding;
}
