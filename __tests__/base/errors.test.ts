import {
  billingError,
  errorSummary,
  isTransient,
  misconfigurationError,
  permanentError,
  rateLimitedError,
  transientError,
  WorkerError,
  AlertOptions,
} from '../../src/base/errors';

describe('errorSummary', () => {
  it('gives a WorkerError its message, code and status', () => {
    expect(errorSummary(permanentError('CONTENT_REJECTED', 'Image API 400: refused', { status: 400 }))).toEqual({
      message: 'Image API 400: refused',
      code: 'CONTENT_REJECTED',
      status: 400,
    });
    expect(errorSummary(transientError('timed out'))).toEqual({ message: 'timed out', code: 'GENERATION_FAILED', status: undefined });
  });

  it('gives anything else its message only, whatever was thrown', () => {
    expect(errorSummary(new TypeError('x is undefined'))).toEqual({ message: 'x is undefined' });
    expect(errorSummary('plain text')).toEqual({ message: 'plain text' });
    expect(errorSummary({ code: 'ECONNRESET' })).toEqual({ message: 'Non-error thrown: {"code":"ECONNRESET"}' });
  });
});

describe('WorkerError kinds', () => {
  /** What the rest of the worker reads, for each kind: the getters are derived from `kind` and nothing else. */
  const derived = (err: WorkerError) => ({
    kind: err.kind,
    transient: err.transient,
    rateLimited: err.rateLimited,
    alert: err.alert,
    retried: isTransient(err),
  });

  it.each<[string, WorkerError, ReturnType<typeof derived>]>([
    ['permanent', permanentError('CONTENT_REJECTED', 'refused'), { kind: 'permanent', transient: false, rateLimited: false, alert: undefined, retried: false }],
    ['transient', transientError('503'), { kind: 'transient', transient: true, rateLimited: false, alert: undefined, retried: true }],
    ['rateLimited', rateLimitedError('429'), { kind: 'rateLimited', transient: true, rateLimited: true, alert: undefined, retried: true }],
    ['billing', billingError('out of credits'), { kind: 'billing', transient: false, rateLimited: false, alert: 'billing', retried: false }],
    [
      'misconfiguration',
      misconfigurationError('401'),
      { kind: 'misconfiguration', transient: false, rateLimited: false, alert: 'misconfiguration', retried: false },
    ],
  ])('%s: its kind alone says whether it is retried and whom it alerts', (_label, err, expected) => {
    expect(derived(err)).toEqual(expected);
    expect(err).toBeInstanceOf(WorkerError);
  });

  it('only a permanent error may carry a code other than GENERATION_FAILED', () => {
    for (const err of [transientError('x'), rateLimitedError('x'), billingError('x'), misconfigurationError('x')]) {
      expect(err.code).toBe('GENERATION_FAILED');
    }
    expect(permanentError('SESSION_EXPIRED', 'x').code).toBe('SESSION_EXPIRED');
  });

  it('keeps the constructor of old: (code, message, {cause}) is a permanent error', () => {
    const cause = new Error('bug');
    const err = new WorkerError('GENERATION_FAILED', 'Image generation failed unexpectedly', { cause });
    expect(err).toMatchObject({ name: 'WorkerError', kind: 'permanent', transient: false, alert: undefined, cause });
    expect(new WorkerError('GENERATION_FAILED', 'slow', { kind: 'transient', retryAfterMs: 100 })).toMatchObject({ transient: true, retryAfterMs: 100 });
  });

  it('carries Retry-After on the retryable kinds only', () => {
    expect(transientError('x', { retryAfterMs: 100 }).retryAfterMs).toBe(100);
    expect(rateLimitedError('x', { retryAfterMs: 200, status: 429 })).toMatchObject({ retryAfterMs: 200, status: 429 });
    expect(permanentError('GENERATION_FAILED', 'x').retryAfterMs).toBeUndefined();
  });

  it('has read-only flags: nothing can be set beside the kind', () => {
    const err = permanentError('GENERATION_FAILED', 'x') as unknown as Record<string, unknown>;
    expect(() => {
      err.transient = true;
    }).toThrow(TypeError);
    expect(() => {
      err.alert = 'billing';
    }).toThrow(TypeError);
    expect((err as unknown as WorkerError).transient).toBe(false);
  });

  /*
   * The contradictions the old flags allowed (transient and misconfigured, rate-limited but not transient, a
   * billing alert on a retried error...) do not type-check. ts-jest only transpiles: `npm run typecheck` fails
   * if any line below stops being an error. At run time the constructor refuses them as well.
   */
  it('cannot be built contradictory', () => {
    // Around the types, as plain JavaScript or a cast could go.
    const build = (code: string, options: unknown) => () => new WorkerError(code as 'GENERATION_FAILED', 'x', options as AlertOptions);

    // @ts-expect-error a retried error is GENERATION_FAILED: the user is told only once the tries are used up
    expect(() => new WorkerError('CONTENT_REJECTED', 'x', { kind: 'transient' })).toThrow(/transient error is GENERATION_FAILED/);
    // @ts-expect-error an alert is GENERATION_FAILED too
    expect(() => new WorkerError('INVALID_TOKEN', 'x', { kind: 'billing' })).toThrow(TypeError);
    // @ts-expect-error a permanent failure is never retried, so it has no Retry-After
    expect(() => permanentError('GENERATION_FAILED', 'x', { retryAfterMs: 1000 })).toThrow(/no retryAfterMs/);
    // @ts-expect-error nor has an alert
    expect(() => billingError('x', { retryAfterMs: 1000 })).toThrow(/no retryAfterMs/);
    // @ts-expect-error the flags of old are gone: a transient error is not rate-limited by an option
    expect(transientError('x', { rateLimited: true }).rateLimited).toBe(false);
    // @ts-expect-error nor a billing alert on a retried one
    expect(transientError('x', { alert: 'billing' }).alert).toBeUndefined();
    // @ts-expect-error nor a permanent error that is rate-limited
    expect(permanentError('GENERATION_FAILED', 'x', { rateLimited: true }).rateLimited).toBe(false);
    // @ts-expect-error a spent budget is told as QUOTA_REACHED, nothing else
    expect(() => new WorkerError('GENERATION_FAILED', 'x', { kind: 'budget' })).toThrow(/budget error is QUOTA_REACHED/);
    // @ts-expect-error a kind is one of six
    expect(() => new WorkerError('GENERATION_FAILED', 'x', { kind: 'fatal' })).toThrow(/unknown kind "fatal"/);

    expect(build('CONTENT_REJECTED', { kind: 'rateLimited' })).toThrow(TypeError);
    expect(build('GENERATION_FAILED', { kind: 'misconfiguration', retryAfterMs: 5 })).toThrow(TypeError);
    expect(build('GENERATION_FAILED', { kind: 'transient', retryAfterMs: 5 })).not.toThrow();
    expect(build('QUOTA_REACHED', { kind: 'budget' })).not.toThrow();
    expect(build('QUOTA_REACHED', { kind: 'billing' })).toThrow(TypeError);
  });
});
