import { WorkerError } from '../../base/errors';
import { cleanPrompt } from './prompt';

/** A job's data once it has passed the contract's rules. */
export interface ImageJob {
  userId: string;
  token: string;
  prompt: string;
  /** Echoed back untouched; null when the producer sent none. */
  number: string | number | boolean | null;
}

/** The rule on `Id`: a non-empty string of at most this many characters (UTF-16 code units). */
export const MAX_ID_LENGTH = 128;

/** An INVALID_JOB error that remembers the user when the `Id` was usable, so they can be told. */
export class InvalidJobError extends WorkerError {
  constructor(
    message: string,
    readonly userId: string | undefined,
  ) {
    super('INVALID_JOB', message);
    this.name = 'InvalidJobError';
  }
}

function own(data: object, key: string): unknown {
  // Only the object's own fields count: `__proto__` or `constructor` in job data must not reach the prototype.
  return Object.prototype.hasOwnProperty.call(data, key) ? (data as Record<string, unknown>)[key] : undefined;
}

function isScalar(value: unknown): value is string | number | boolean {
  return typeof value === 'string' || typeof value === 'number' || typeof value === 'boolean';
}

/** The data's `Number` if it can be echoed (a scalar), else null: for telling a user about invalid data. */
export function echoableNumber(data: unknown): ImageJob['number'] {
  if (typeof data !== 'object' || data === null) return null;
  const number = own(data, 'Number');
  return isScalar(number) ? number : null;
}

function describe(value: unknown): string {
  if (value === undefined) return 'missing';
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  return `a ${typeof value}`;
}

function usableUserId(value: unknown): value is string {
  return typeof value === 'string' && value.trim() !== '' && value.length <= MAX_ID_LENGTH;
}

/** Applies the contract's job-data rules; throws InvalidJobError naming the first field that breaks them. */
export function validateJobData(data: unknown): ImageJob {
  if (typeof data !== 'object' || data === null || Array.isArray(data)) {
    throw new InvalidJobError(`Job data must be an object with Id, Token and Prompt (got ${describe(data)})`, undefined);
  }
  const id = own(data, 'Id');
  if (!usableUserId(id)) {
    const detail = typeof id === 'string' ? (id.trim() === '' ? 'blank' : `${id.length} characters`) : describe(id);
    throw new InvalidJobError(`Job field Id must be a non-empty string of at most ${MAX_ID_LENGTH} characters (got ${detail})`, undefined);
  }
  const fail = (message: string): never => {
    throw new InvalidJobError(message, id);
  };
  const token = own(data, 'Token');
  if (typeof token !== 'string') fail(`Job field Token must be a string (got ${describe(token)})`);
  const prompt = own(data, 'Prompt');
  if (typeof prompt !== 'string') fail(`Job field Prompt must be a string (got ${describe(prompt)})`);
  if (cleanPrompt(prompt as string) === '') fail('Job field Prompt must not be blank');
  const number = own(data, 'Number');
  if (number !== undefined && number !== null && !isScalar(number)) {
    fail(`Job field Number must be a string, number, boolean or null when given (got ${describe(number)})`);
  }
  return {
    userId: id,
    token: token as string,
    prompt: prompt as string,
    number: (number ?? null) as ImageJob['number'],
  };
}
