/** The failure codes of the contract, as the user and the job's failed reason see them. */
export type ErrorCode =
  | 'INVALID_JOB'
  | 'INVALID_TOKEN'
  | 'SESSION_EXPIRED'
  | 'CONTENT_REJECTED'
  | 'GENERATION_FAILED';

/**
 * What the person waiting for the picture reads, one fixed sentence per code, in both wire formats
 * (legacy `Message`, schema `error`). The StoryBang front end puts `Message` into the page as HTML, so
 * nothing from an API, a stack or the job's own data ever goes there: the details stay in the log.
 * SESSION_EXPIRED and INVALID_TOKEN share the original worker's sentence: its JWT service cannot tell
 * them apart, and the front end knows that text.
 */
export const USER_MESSAGES: Readonly<Record<ErrorCode, string>> = Object.freeze({
  INVALID_JOB: 'We could not read this picture request. Please try again.',
  INVALID_TOKEN: 'Session expired. Please log in again.',
  SESSION_EXPIRED: 'Session expired. Please log in again.',
  CONTENT_REJECTED: 'We cannot draw this picture. Please try describing it another way.',
  GENERATION_FAILED: 'We could not make this picture right now. Please try again in a moment.',
});

/** The sentence for `code`; a code this table does not know reads as GENERATION_FAILED. */
export function userMessage(code: string | undefined): string {
  return Object.prototype.hasOwnProperty.call(USER_MESSAGES, code ?? '') ? USER_MESSAGES[code as ErrorCode] : USER_MESSAGES.GENERATION_FAILED;
}

export interface WorkerErrorOptions {
  cause?: unknown;
  /** May the same work succeed if tried again later (network, timeout, 408, 429, 5xx)? */
  transient?: boolean;
  /** The remote side asked us to wait this long before trying again (Retry-After). */
  retryAfterMs?: number;
  /** HTTP status of the answer that caused this error, if any. */
  status?: number;
  /** The image API refused the key, model or URL: logged at error level for an operator to act on. */
  misconfiguration?: boolean;
  /**
   * A 429 that is the team's rate limit (not used-up credits): a wait, never a failure. The capacity layer
   * slows the fleet and asks again; it never uses up a job's retries.
   */
  rateLimited?: boolean;
  /** An operator must act: the job-end line carries `alert` (used-up credits: `billing`). */
  alert?: 'billing' | 'misconfiguration';
}

/**
 * The one error type the pipeline acts on: `code` is what the user is told, `transient` decides
 * whether the work is retried. Anything else thrown is a bug: the job fails, it is not retried.
 */
export class WorkerError extends Error {
  readonly code: ErrorCode;
  readonly transient: boolean;
  readonly retryAfterMs?: number;
  readonly status?: number;
  readonly misconfiguration: boolean;
  readonly rateLimited: boolean;
  readonly alert?: 'billing' | 'misconfiguration';

  constructor(code: ErrorCode, message: string, options: WorkerErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'WorkerError';
    this.code = code;
    this.transient = options.transient ?? false;
    this.retryAfterMs = options.retryAfterMs;
    this.status = options.status;
    this.misconfiguration = options.misconfiguration ?? false;
    this.rateLimited = options.rateLimited ?? false;
    this.alert = options.alert ?? (this.misconfiguration ? 'misconfiguration' : undefined);
  }
}

/** A failure that will not go away by retrying: the user is told and the job ends. */
export function permanentError(code: ErrorCode, message: string, options: Omit<WorkerErrorOptions, 'transient'> = {}): WorkerError {
  return new WorkerError(code, message, { ...options, transient: false });
}

/** A failure worth trying again (the image API or a service was briefly unavailable). */
export function transientError(message: string, options: Omit<WorkerErrorOptions, 'transient'> = {}): WorkerError {
  return new WorkerError('GENERATION_FAILED', message, { ...options, transient: true });
}

/**
 * Only a WorkerError can be transient: every edge turns its network and HTTP failures into one, so
 * anything else is a bug, and retrying a bug only repeats it (and may pay for it again).
 */
export function isTransient(err: unknown): boolean {
  return err instanceof WorkerError && err.transient;
}

export function isAbortError(err: unknown): boolean {
  return err instanceof Error && (err.name === 'AbortError' || (err as { type?: string }).type === 'aborted');
}

/** Whatever was thrown, as an Error, so it can be logged and given a message. */
export function toError(value: unknown): Error {
  if (value instanceof Error) return value;
  if (typeof value === 'string') return new Error(value);
  try {
    return new Error(`Non-error thrown: ${JSON.stringify(value)}`);
  } catch {
    return new Error(`Non-error thrown: ${String(value)}`);
  }
}

/** An error as a log line's `err` field: its message, plus code and HTTP status for a WorkerError. */
export function errorSummary(err: unknown): { message: string; code?: string; status?: number } {
  const error = toError(err);
  return err instanceof WorkerError ? { message: error.message, code: err.code, status: err.status } : { message: error.message };
}

/** The error every cancelled wait rejects with (the same name fetch uses). */
export function abortError(cause?: unknown): Error {
  const err = new Error('The operation was aborted', cause === undefined ? undefined : { cause });
  err.name = 'AbortError';
  return err;
}

/**
 * The run's lease on its job was lost (it lapsed while the worker was frozen or cut off, and the job may be
 * running elsewhere): the run stops without paying, delivering or recording anything.
 */
export class LeaseLostError extends Error {
  constructor(readonly jobId: string) {
    super(`Lease on job ${jobId} lost: another worker may hold it now`);
    this.name = 'LeaseLostError';
  }
}
