/** The failure codes of the contract, as the user and the job's failed reason see them. */
export type ErrorCode = 'INVALID_JOB' | 'INVALID_TOKEN' | 'SESSION_EXPIRED' | 'CONTENT_REJECTED' | 'GENERATION_FAILED' | 'QUOTA_REACHED';

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
  QUOTA_REACHED: 'No more pictures can be made today. Please try again tomorrow.',
});

/** The sentence for `code`; a code this table does not know reads as GENERATION_FAILED. */
export function userMessage(code: string | undefined): string {
  return Object.prototype.hasOwnProperty.call(USER_MESSAGES, code ?? '') ? USER_MESSAGES[code as ErrorCode] : USER_MESSAGES.GENERATION_FAILED;
}

/**
 * What kind of failure an error is, which alone decides what the worker does about it:
 * - `permanent`: trying again will not help; the user is told and the job ends.
 * - `transient`: the same work may succeed if tried again later (network, timeout, 408, 5xx).
 * - `rateLimited`: the team's rate limit (a 429 that is not about credits): a wait, never a failure. The
 *   capacity layer slows the fleet and asks again without using up the job's retries; elsewhere it is transient.
 * - `billing`: used-up credits or a reached spending limit: permanent, and an operator must top up.
 * - `misconfiguration`: the image API refused the key, the URL or a setting: permanent, and an operator must fix it.
 * - `budget`: the fleet reached DAILY_BUDGET_USD for the day (QUOTA_REACHED): permanent, and an operator is told
 *   once a day.
 */
export type ErrorKind = 'permanent' | 'transient' | 'rateLimited' | 'billing' | 'misconfiguration' | 'budget';

/** The kinds worth trying again: they alone may carry the server's Retry-After. */
type RetryableKind = 'transient' | 'rateLimited';

/** What an operator must act on; the job-end line carries it as `alert`. */
export type OperatorAlert = 'billing' | 'misconfiguration' | 'budget';

/**
 * Each kind's consequences, in one table: no combination of them can contradict another. A kind other than
 * `permanent` is told as its one code.
 */
const KINDS: Readonly<Record<ErrorKind, { transient: boolean; alert?: OperatorAlert; code?: ErrorCode }>> = Object.freeze({
  permanent: { transient: false },
  transient: { transient: true, code: 'GENERATION_FAILED' },
  rateLimited: { transient: true, code: 'GENERATION_FAILED' },
  billing: { transient: false, alert: 'billing', code: 'GENERATION_FAILED' },
  misconfiguration: { transient: false, alert: 'misconfiguration', code: 'GENERATION_FAILED' },
  budget: { transient: false, alert: 'budget', code: 'QUOTA_REACHED' },
});

interface CommonOptions {
  cause?: unknown;
  /** HTTP status of the answer that caused this error, if any. */
  status?: number;
}

/** A failure that is not tried again. Any code may be told to the user. */
export interface PermanentOptions extends CommonOptions {
  /** Default `permanent`. */
  kind?: 'permanent';
  retryAfterMs?: never;
}

/** A failure of the image API an operator must act on; the user is told GENERATION_FAILED. */
export interface AlertOptions extends CommonOptions {
  kind: 'billing' | 'misconfiguration';
  retryAfterMs?: never;
}

/** The fleet's daily budget is spent; the user is told QUOTA_REACHED. */
export interface BudgetOptions extends CommonOptions {
  kind: 'budget';
  retryAfterMs?: never;
}

/** A failure worth trying again; the user is told GENERATION_FAILED only once the tries are used up. */
export interface RetryableOptions extends CommonOptions {
  kind: RetryableKind;
  /** The remote side asked us to wait this long before trying again (Retry-After). */
  retryAfterMs?: number;
}

type WorkerErrorOptions = PermanentOptions | AlertOptions | BudgetOptions | RetryableOptions;

/**
 * The one error type the pipeline acts on: `code` is what the user is told, `kind` decides whether the work is
 * tried again and whether an operator is alerted. Anything else thrown is a bug: the job fails, it is not retried.
 *
 * The constructor's types admit only coherent errors: a kind other than `permanent` means its own code (`budget`
 * QUOTA_REACHED, the others GENERATION_FAILED), and only a retryable kind carries `retryAfterMs`. The same rules are checked at run time for callers that go around
 * the types.
 */
export class WorkerError extends Error {
  readonly code: ErrorCode;
  readonly kind: ErrorKind;
  /** Retry-After of a transient or rate-limited failure; undefined for every other kind. */
  readonly retryAfterMs?: number;
  readonly status?: number;

  constructor(code: ErrorCode, message: string, options?: PermanentOptions);
  constructor(code: 'QUOTA_REACHED', message: string, options: BudgetOptions);
  constructor(code: 'GENERATION_FAILED', message: string, options: PermanentOptions | AlertOptions | RetryableOptions);
  constructor(code: ErrorCode, message: string, options: WorkerErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    const kind = options.kind ?? 'permanent';
    if (!Object.prototype.hasOwnProperty.call(KINDS, kind)) throw new TypeError(`WorkerError: unknown kind ${JSON.stringify(kind)}`);
    const own = KINDS[kind].code;
    if (own !== undefined && code !== own) throw new TypeError(`WorkerError: a ${kind} error is ${own}, not ${code}`);
    const retryAfterMs = (options as { retryAfterMs?: unknown }).retryAfterMs;
    if (retryAfterMs !== undefined && !KINDS[kind].transient) throw new TypeError(`WorkerError: a ${kind} error is not retried, so it has no retryAfterMs`);
    this.name = 'WorkerError';
    this.code = code;
    this.kind = kind;
    this.retryAfterMs = retryAfterMs as number | undefined;
    this.status = options.status;
  }

  /** May the same work succeed if tried again later? (`transient` or `rateLimited`) */
  get transient(): boolean {
    return KINDS[this.kind].transient;
  }

  /** The team's rate limit: the capacity layer waits and asks again, never using up a job's retries. */
  get rateLimited(): boolean {
    return this.kind === 'rateLimited';
  }

  /** What an operator must act on, if anything: the job-end line logs it at error level. */
  get alert(): OperatorAlert | undefined {
    return KINDS[this.kind].alert;
  }
}

/** A failure that will not go away by retrying: the user is told `code` and the job ends. */
export function permanentError(code: ErrorCode, message: string, options: Omit<PermanentOptions, 'kind'> = {}): WorkerError {
  return new WorkerError(code, message, { ...options, kind: 'permanent' });
}

/** A failure worth trying again (the image API or a service was briefly unavailable). */
export function transientError(message: string, options: Omit<RetryableOptions, 'kind'> = {}): WorkerError {
  return new WorkerError('GENERATION_FAILED', message, { ...options, kind: 'transient' });
}

/** The team's rate limit was reached: wait (`retryAfterMs` when the API said how long) and ask again. */
export function rateLimitedError(message: string, options: Omit<RetryableOptions, 'kind'> = {}): WorkerError {
  return new WorkerError('GENERATION_FAILED', message, { ...options, kind: 'rateLimited' });
}

/** Used-up credits or a reached spending limit: not retried, and an operator is alerted (`billing`). */
export function billingError(message: string, options: Omit<AlertOptions, 'kind'> = {}): WorkerError {
  return new WorkerError('GENERATION_FAILED', message, { ...options, kind: 'billing' });
}

/** The API refused the key, the URL or a setting: not retried, and an operator is alerted (`misconfiguration`). */
export function misconfigurationError(message: string, options: Omit<AlertOptions, 'kind'> = {}): WorkerError {
  return new WorkerError('GENERATION_FAILED', message, { ...options, kind: 'misconfiguration' });
}

/**
 * No picture may be bought for this job today: its user reached USER_DAILY_IMAGES, or the fleet DAILY_BUDGET_USD.
 * `alert`: this is the first job the budget stops today, and an operator is told (`budget`).
 */
export function quotaError(message: string, options: { alert?: boolean } = {}): WorkerError {
  return options.alert ? new WorkerError('QUOTA_REACHED', message, { kind: 'budget' }) : permanentError('QUOTA_REACHED', message);
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
 * The run's claim on its job was lost (it lapsed while the worker was frozen or cut off, or its worker looked gone,
 * and the job was taken back): the run stops without paying, delivering, telling or ending anything.
 */
export class ClaimLostError extends Error {
  constructor(readonly jobId: string) {
    super(`Claim on job ${jobId} lost: the job was taken back`);
    this.name = 'ClaimLostError';
  }
}
