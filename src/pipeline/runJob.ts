import { ClaimLostError, ErrorCode, errorSummary, isAbortError, permanentError, toError, userMessage, WorkerError } from '../base/errors';
import { echoableNumber, InvalidJobError, ImageJob, validateJobData } from './steps/jobData';
import type { Logger } from '../base/logger';
import { PreparedPrompt, preparePrompt } from './steps/prompt';
import { retryDelayMs, withRetries } from '../base/retryPolicy';
import type {
  CheckpointStore,
  GeneratedImage,
  ImageBytes,
  ImageProvider,
  JobEvent,
  JobOwner,
  Notifier,
  PictureMemory,
  RefusalMemory,
  TokenVerifier,
} from './ports';

/** The steps' collaborators: the pipeline never builds a client or reads the environment itself. */
export interface PipelineDeps {
  verifier: TokenVerifier;
  provider: ImageProvider;
  notifier: Notifier;
  checkpoints: CheckpointStore;
  /** Prompts refused by moderation, per user (REFUSAL_MEMORY_S). Absent: every prompt goes to the API. */
  refusals?: RefusalMemory;
  /** Pictures delivered lately for this job's ask (REMEMBER_PICTURES_S). Absent: none is kept or given again. */
  pictures?: PictureMemory;
  logger: Logger;
  settings: PipelineSettings;
  /** The run's claim on its job, when the queue fences its runs. Absent: the job is always the run's. */
  claim?: RunClaim;
  /** The image bytes in the process' memory: a run's picture counts from its answer until the run is over. */
  images?: ImageBytes;
  /** Overrides for tests: how long to wait before retry `attempt`, and how to wait. */
  retryDelay?: (attempt: number, err: unknown) => number;
  sleep?: (ms: number, signal?: AbortSignal) => Promise<void>;
}

/** What the pipeline asks of the queue that claimed it the job. */
interface RunClaim {
  /** Whether the job is still this run's. Asked before delivering: a run that lost it must not deliver. */
  stillOurs(): Promise<boolean>;
}

export interface PipelineSettings {
  promptPrefix: string;
  promptMaxLength: number;
  /** Extra attempts for a transient failure inside one run of the job. */
  maxRetries: number;
  notifyProgress: boolean;
  /**
   * How long the generate step may take, waits included (GENERATION_DEADLINE_MS). The provider gets
   * `deadlineAt`, and no retry wait starts that would end after it. Absent: no deadline.
   */
  generationDeadlineMs?: number;
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
  /**
   * Deliver the picture an earlier run kept, or fail with this error; never verify, never generate (an answer
   * held back, or a job whose claims kept lapsing, that has a paid picture after all).
   */
  keptOnly?: WorkerError;
}

/** What a run found out, for the job's end line. */
export interface RunReport {
  userId?: string;
  steps: { token?: number; generate?: number; notify?: number };
  promptChars?: number;
  imageBytes?: number;
  /** The image came from a checkpoint: nothing was paid for on this run. */
  fromCheckpoint?: boolean;
  /** The picture delivered for the same ask lately was given again (REMEMBER_PICTURES_S): nothing was paid for. */
  remembered?: boolean;
  /** CONTENT_REJECTED from the refusal memory: the image API was not asked (and not paid) again. */
  refusalRemembered?: boolean;
  costUsd?: number;
}

/**
 * How a run went. The pipeline tells nobody of a failure: the queue's side decides whether to tell it now, hold it
 * back, or try the job again later (src/queue/ending.ts).
 */
export type RunOutcome =
  | { delivered: true; report: RunReport }
  | {
      delivered: false;
      error: WorkerError;
      report: RunReport;
      /** Whom to tell, when the data names a usable user. */
      owner?: JobOwner;
      /** The failure was the delivery's: the notification service is away, so waiting to tell a failure is futile. */
      serviceAway: boolean;
    };

/** How far a run got; a failure in `deliver` means the notification service is away. */
type Phase = 'validate' | 'token' | 'generate' | 'deliver';

/** One run in progress: what the steps share. */
interface RunState {
  run: JobRun;
  deps: PipelineDeps;
  signal: AbortSignal;
  report: RunReport;
  phase: Phase;
  job?: ImageJob;
}

/**
 * validate job -> validate token -> generate image -> notify, and how it went. Never throws except on abort
 * (shutdown) and when the run's claim was lost (ClaimLostError): then nothing more is recorded or told.
 */
export async function runJob(run: JobRun, deps: PipelineDeps, signal: AbortSignal): Promise<RunOutcome> {
  const state: RunState = { run, deps, signal, report: { steps: {} }, phase: 'validate' };
  let letGo = (): void => undefined;
  try {
    const job = validate(state);
    const fingerprint = `${job.userId}:${run.createdAt}`;
    // An image checkpointed by an earlier run of this very job was only made after its token was verified:
    // it is delivered even if the token has expired since (a Bull backoff, a restart), never paid for again.
    const saved = await loadCheckpoint(state, fingerprint);
    if (!saved && run.keptOnly) throw run.keptOnly;
    if (!saved) await verifyToken(state, job);
    announceProgress(state, job);
    const prompt = prepare(state, job);
    // A picture delivered for the same ask lately is given again, to a user whose token was verified just now.
    const remembered = saved ? null : await recall(state);
    state.report.fromCheckpoint = saved !== null;
    if (remembered) state.report.remembered = true;
    const image = saved ?? remembered ?? (await generate(state, job, prompt));
    letGo = deps.images?.use(image.base64.length) ?? letGo;
    state.report.imageBytes = base64Bytes(image.base64);
    // A checkpointed image was paid for by an earlier run, and logged there; a remembered one by another job.
    state.report.costUsd = saved || remembered ? 0 : image.costUsd;
    await deliver(state, job, image, saved || remembered ? undefined : fingerprint);
    if (!remembered) await keepPicture(state, image);
    return { delivered: true, report: state.report };
  } catch (err) {
    if (err instanceof ClaimLostError || (signal.aborted && isAbortError(err))) throw err;
    return failed(state, err);
  } finally {
    letGo();
  }
}

/**
 * How a run that failed with `error` ends: a transient failure goes back to the queue while the producer
 * allows attempts; anything else, or the last attempt, fails the job.
 */
export function failureOutcome(error: WorkerError, run: Pick<JobRun, 'attempt' | 'maxAttempts'>): 'failed' | 'retry' {
  return error.transient && run.attempt < run.maxAttempts ? 'retry' : 'failed';
}

/** The event that tells a job's owner it failed: the code, and the fixed sentence for it (never the details). */
export function failureEvent(jobId: string, owner: JobOwner, code: ErrorCode): JobEvent {
  return { userId: owner.userId, number: owner.number, jobId, status: 'failed', error: { code, message: userMessage(code) } };
}

function validate(state: RunState): ImageJob {
  state.job = validateJobData(state.run.data);
  state.report.userId = state.job.userId;
  return state.job;
}

async function loadCheckpoint(state: RunState, fingerprint: string): Promise<GeneratedImage | null> {
  const { run, deps } = state;
  return deps.checkpoints.load(fingerprint).catch((err: unknown) => {
    deps.logger.warn({ jobId: run.jobId, err: errorSummary(err) }, 'checkpoint unreadable, generating');
    return null;
  });
}

/** The memory only saves money: when Redis cannot answer, the picture is made again. */
async function recall(state: RunState): Promise<GeneratedImage | null> {
  const { run, deps } = state;
  return (deps.pictures?.recall() ?? Promise.resolve(null)).catch((err: unknown) => {
    deps.logger.warn({ jobId: run.jobId, err: errorSummary(err) }, 'picture memory unreadable, generating');
    return null;
  });
}

async function keepPicture(state: RunState, image: GeneratedImage): Promise<void> {
  const { run, deps } = state;
  await deps.pictures?.keep(image).catch((err: unknown) => {
    deps.logger.warn({ jobId: run.jobId, err: errorSummary(err) }, 'picture not kept for a reload');
  });
}

async function verifyToken(state: RunState, job: ImageJob): Promise<void> {
  state.phase = 'token';
  await timed(state, 'token', () => retrying(state, 'token', () => state.deps.verifier.verify(job.token, job.userId, state.signal)));
}

/** Progress goes out only once the room is proven to be this user's (or the image is already made). */
function announceProgress(state: RunState, job: ImageJob): void {
  if (state.deps.settings.notifyProgress) state.deps.notifier.tryNotify(eventFor(state.run, job, 'processing'));
}

function prepare(state: RunState, job: ImageJob): PreparedPrompt {
  const { run, deps, report } = state;
  const prompt = preparePrompt(job.prompt, deps.settings.promptPrefix, deps.settings.promptMaxLength);
  report.promptChars = prompt.sentLength;
  if (prompt.cut) {
    deps.logger.info({ jobId: run.jobId, originalChars: prompt.originalLength, sentChars: prompt.sentLength }, 'prompt cut to PROMPT_MAX_LENGTH');
  }
  deps.logger.debug({ jobId: run.jobId, prompt: prompt.text }, 'prompt');
  return prompt;
}

/**
 * The paid step. A prompt moderation refused for this user is refused again from memory (the StoryBang
 * front end asks again at once after any failure); a new refusal is remembered.
 */
async function generate(state: RunState, job: ImageJob, prompt: PreparedPrompt): Promise<GeneratedImage> {
  state.phase = 'generate';
  return timed(state, 'generate', async () => {
    if (await refusedBefore(state, job.userId, prompt.text)) {
      state.report.refusalRemembered = true;
      throw permanentError('CONTENT_REJECTED', 'Refused by moderation earlier for this user and prompt: the image API was not asked again');
    }
    const { generationDeadlineMs } = state.deps.settings;
    const deadlineAt = generationDeadlineMs === undefined ? undefined : Date.now() + generationDeadlineMs;
    try {
      return await retrying(
        state,
        'generate',
        () => state.deps.provider.generate({ prompt: prompt.text, userId: job.userId, deadlineAt }, state.signal),
        deadlineAt,
      );
    } catch (err) {
      if (err instanceof WorkerError && err.code === 'CONTENT_REJECTED') await rememberRefusal(state, job.userId, prompt.text);
      throw err;
    }
  });
}

/** The memory only saves money: when Redis cannot answer, the job goes on as if it had no memory. */
async function refusedBefore(state: RunState, userId: string, prompt: string): Promise<boolean> {
  const { refusals, logger } = state.deps;
  if (!refusals) return false;
  try {
    return await refusals.has(userId, prompt);
  } catch (err) {
    logger.warn({ jobId: state.run.jobId, err: errorSummary(err) }, 'refusal memory unreadable, asking the image API');
    return false;
  }
}

async function rememberRefusal(state: RunState, userId: string, prompt: string): Promise<void> {
  const { refusals, logger } = state.deps;
  try {
    await refusals?.remember(userId, prompt);
  } catch (err) {
    logger.warn({ jobId: state.run.jobId, err: errorSummary(err) }, 'refusal not remembered');
  }
}

async function deliver(state: RunState, job: ImageJob, image: GeneratedImage, checkpointAs: string | undefined): Promise<void> {
  const { run, deps, signal } = state;
  state.phase = 'deliver';
  const completed: JobEvent = { ...eventFor(run, job, 'completed'), image };
  await timed(state, 'notify', async () => {
    if (deps.claim && !(await deps.claim.stillOurs())) {
      // The job was taken back: the next run must not get a second picture out. The one paid for here is kept for
      // that run (unless the job has ended meanwhile), so it is not paid for again.
      if (checkpointAs !== undefined) await saveCheckpoint(state, checkpointAs, image);
      throw new ClaimLostError(run.jobId);
    }
    if (deps.notifier.tryDeliver(completed)) return;
    // Delivery has to wait (the service is away, or must acknowledge): the image is kept in Redis meanwhile,
    // so a crash, a stall or a later attempt delivers it without paying again. The queue's side removes it
    // once the job has finished. An image that came from a checkpoint is already there.
    if (checkpointAs !== undefined) await saveCheckpoint(state, checkpointAs, image);
    await deps.notifier.notify(completed, signal);
  });
}

async function saveCheckpoint(state: RunState, fingerprint: string, image: GeneratedImage): Promise<void> {
  const { run, deps } = state;
  // Losing the checkpoint only risks paying again after a crash; it never stops the delivery.
  await deps.checkpoints.save(fingerprint, image).catch((err: unknown) => {
    deps.logger.warn({ jobId: run.jobId, err: errorSummary(err) }, 'checkpoint not saved');
  });
}

/** A failed run: what went wrong and whom to tell. Telling, holding back and retrying are the queue's to decide. */
function failed(state: RunState, err: unknown): RunOutcome {
  const { run, deps, report, job } = state;
  const error = asWorkerError(err, deps.logger, run.jobId);
  report.userId = job?.userId ?? (error instanceof InvalidJobError ? error.userId : undefined);
  const owner = report.userId === undefined ? undefined : { userId: report.userId, number: job?.number ?? echoableNumber(run.data) };
  return { delivered: false, error, report, owner, serviceAway: state.phase === 'deliver' };
}

async function timed<T>(state: RunState, step: keyof RunReport['steps'], fn: () => Promise<T>): Promise<T> {
  const started = performance.now();
  try {
    return await fn();
  } finally {
    state.report.steps[step] = Math.round(performance.now() - started);
  }
}

/**
 * Retries a step's transient failures (logged at warn). With `deadlineAt`, a wait that would end after it
 * is not started: the step fails GENERATION_FAILED at once instead of holding a worker slot in vain.
 */
function retrying<T>(state: RunState, step: string, fn: () => Promise<T>, deadlineAt?: number): Promise<T> {
  const { run, deps, signal } = state;
  const delayFor = deps.retryDelay ?? retryDelayMs;
  return withRetries(fn, {
    maxRetries: deps.settings.maxRetries,
    signal,
    sleep: deps.sleep,
    delayFor: (attempt, err) => {
      const delayMs = delayFor(attempt, err);
      if (deadlineAt !== undefined && Date.now() + delayMs > deadlineAt) throw pastDeadline(err, delayMs, deps.settings.generationDeadlineMs);
      return delayMs;
    },
    onRetry: ({ attempt, delayMs, error }) =>
      deps.logger.warn({ jobId: run.jobId, step, retry: attempt, delayMs, err: errorSummary(error) }, `${step} failed, retrying`),
  });
}

function pastDeadline(cause: unknown, delayMs: number, deadlineMs: number | undefined): WorkerError {
  const last = toError(cause).message;
  return permanentError('GENERATION_FAILED', `Waiting ${delayMs} ms to retry would pass GENERATION_DEADLINE_MS (${deadlineMs} ms); last error: ${last}`, {
    cause,
  });
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

function base64Bytes(base64: string): number {
  const padding = base64.endsWith('==') ? 2 : base64.endsWith('=') ? 1 : 0;
  return Math.floor((base64.length * 3) / 4) - padding;
}
