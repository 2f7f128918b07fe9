import { permanentError, rateLimitedError, transientError } from '../../src/base/errors';
import { MAX_RETRY_AFTER_MS, backoffDelayMs, isTransientStatus, parseRetryAfter, retryDelayMs, withRetries } from '../../src/base/retryPolicy';

describe('isTransientStatus', () => {
  it.each([408, 429, 500, 501, 502, 503, 504, 599])('%i is worth retrying', (status) => {
    expect(isTransientStatus(status)).toBe(true);
  });

  it.each([200, 301, 400, 401, 403, 404, 409, 413, 422, 600])('%i is not', (status) => {
    expect(isTransientStatus(status)).toBe(false);
  });
});

describe('parseRetryAfter', () => {
  const now = Date.parse('2024-05-01T12:00:00Z');

  it('reads delay-seconds', () => {
    expect(parseRetryAfter('7', now)).toBe(7000);
    expect(parseRetryAfter(' 0 ', now)).toBe(0);
    expect(parseRetryAfter('1.5', now)).toBe(1500);
  });

  it('reads an HTTP date relative to now', () => {
    expect(parseRetryAfter('Wed, 01 May 2024 12:00:10 GMT', now)).toBe(10_000);
  });

  it('never goes negative for a date in the past', () => {
    expect(parseRetryAfter('Wed, 01 May 2024 11:00:00 GMT', now)).toBe(0);
  });

  it('caps long waits', () => {
    expect(parseRetryAfter('3600', now)).toBe(MAX_RETRY_AFTER_MS);
    expect(parseRetryAfter('Thu, 02 May 2024 12:00:00 GMT', now)).toBe(60_000);
  });

  it.each([undefined, null, '', '   ', 'soon', '-5', '1e3', 'Mon, 99 Foo 2024'])('ignores %p', (header) => {
    expect(parseRetryAfter(header, now)).toBeUndefined();
  });
});

describe('backoffDelayMs', () => {
  const low = { random: () => 0 };
  const high = { random: () => 0.999999 };

  it('starts at about a second and doubles', () => {
    expect([1, 2, 3, 4].map((a) => backoffDelayMs(a, high))).toEqual([1000, 2000, 4000, 8000]);
  });

  it('keeps at least half of the step as jitter floor', () => {
    expect([1, 2, 3].map((a) => backoffDelayMs(a, low))).toEqual([500, 1000, 2000]);
  });

  it('stays within [step/2, step] for any random value', () => {
    for (let attempt = 1; attempt <= 10; attempt++) {
      const step = Math.min(30_000, 1000 * 2 ** (attempt - 1));
      for (const r of [0, 0.1, 0.5, 0.9, 0.999]) {
        const d = backoffDelayMs(attempt, { random: () => r });
        expect(d).toBeGreaterThanOrEqual(step / 2);
        expect(d).toBeLessThanOrEqual(step);
      }
    }
  });

  it('caps at 30 s, even for huge attempt numbers', () => {
    expect(backoffDelayMs(6, high)).toBe(30_000);
    expect(backoffDelayMs(5000, high)).toBe(30_000);
  });

  it('honours baseMs and maxMs', () => {
    expect(backoffDelayMs(3, { baseMs: 100, maxMs: 250, random: () => 0.999999 })).toBe(250);
    expect(backoffDelayMs(2, { baseMs: 100, random: () => 0 })).toBe(100);
  });

  it('treats nonsense attempt numbers as the first attempt', () => {
    expect(backoffDelayMs(0, high)).toBe(1000);
    expect(backoffDelayMs(Number.NaN, high)).toBe(1000);
  });
});

describe('retryDelayMs', () => {
  it('uses the backoff when the error has no Retry-After', () => {
    expect(retryDelayMs(3, transientError('x'), { random: () => 0 })).toBe(2000);
    expect(retryDelayMs(1, new Error('boom'), { random: () => 0 })).toBe(500);
  });

  it('uses Retry-After instead of the backoff, shorter or longer', () => {
    expect(retryDelayMs(5, transientError('x', { retryAfterMs: 1200 }), { random: () => 0 })).toBe(1200);
    expect(retryDelayMs(1, transientError('x', { retryAfterMs: 45_000 }))).toBe(45_000);
  });

  it('caps Retry-After at 60 s', () => {
    expect(retryDelayMs(1, transientError('x', { retryAfterMs: 600_000 }))).toBe(60_000);
  });

  it("honours a rate limit's Retry-After the same way", () => {
    expect(retryDelayMs(4, rateLimitedError('429', { retryAfterMs: 3000 }), { random: () => 0 })).toBe(3000);
    expect(retryDelayMs(2, rateLimitedError('429'), { random: () => 0 })).toBe(1000);
  });

  it('reads Retry-After from a WorkerError only: anything else that looks like one gets the backoff', () => {
    expect(retryDelayMs(1, { retryAfterMs: 5 }, { random: () => 0 })).toBe(500);
    expect(retryDelayMs(1, Object.assign(new Error('x'), { retryAfterMs: 5 }), { random: () => 0 })).toBe(500);
  });
});

describe('withRetries', () => {
  function fakeSleep() {
    const waits: number[] = [];
    return { waits, sleep: async (ms: number) => void waits.push(ms) };
  }
  const delayFor = (attempt: number) => attempt * 10;

  it('returns the first success without waiting', async () => {
    const { waits, sleep } = fakeSleep();
    const fn = jest.fn(async () => 'ok');
    await expect(withRetries(fn, { maxRetries: 3, sleep, delayFor })).resolves.toBe('ok');
    expect(fn).toHaveBeenCalledTimes(1);
    expect(waits).toEqual([]);
  });

  it('retries transient failures and passes the attempt number', async () => {
    const { waits, sleep } = fakeSleep();
    const seen: number[] = [];
    const result = await withRetries(
      async (attempt) => {
        seen.push(attempt);
        if (attempt < 3) throw transientError('busy');
        return attempt;
      },
      { maxRetries: 3, sleep, delayFor },
    );
    expect(result).toBe(3);
    expect(seen).toEqual([1, 2, 3]);
    expect(waits).toEqual([10, 20]);
  });

  it('makes at most 1 + maxRetries calls and rethrows the last error', async () => {
    const { waits, sleep } = fakeSleep();
    let n = 0;
    const fn = jest.fn(async () => {
      throw transientError(`failure ${++n}`);
    });
    await expect(withRetries(fn, { maxRetries: 2, sleep, delayFor })).rejects.toThrow('failure 3');
    expect(fn).toHaveBeenCalledTimes(3);
    expect(waits).toEqual([10, 20]);
  });

  it('does not retry with maxRetries 0', async () => {
    const { sleep } = fakeSleep();
    const fn = jest.fn(async () => {
      throw transientError('busy');
    });
    await expect(withRetries(fn, { maxRetries: 0, sleep })).rejects.toThrow('busy');
    expect(fn).toHaveBeenCalledTimes(1);
  });

  it('does not retry permanent errors', async () => {
    const { sleep } = fakeSleep();
    const err = permanentError('CONTENT_REJECTED', 'no');
    const fn = jest.fn(async () => {
      throw err;
    });
    await expect(withRetries(fn, { maxRetries: 5, sleep })).rejects.toBe(err);
    expect(fn).toHaveBeenCalledTimes(1);
  });

  it('does not retry plain errors: the edges wrap real network failures, so anything else is a bug', async () => {
    const { sleep } = fakeSleep();
    const bug = new TypeError("Cannot read properties of undefined (reading 'data')");
    const fn = jest.fn().mockRejectedValueOnce(bug).mockResolvedValueOnce('ok');
    await expect(withRetries(fn, { maxRetries: 1, sleep, delayFor })).rejects.toBe(bug);
    expect(fn).toHaveBeenCalledTimes(1);
  });

  it('uses retryDelayMs by default, so Retry-After reaches the sleep', async () => {
    const { waits, sleep } = fakeSleep();
    const fn = jest
      .fn()
      .mockRejectedValueOnce(transientError('429', { retryAfterMs: 4321 }))
      .mockResolvedValueOnce('ok');
    await withRetries(fn, { maxRetries: 1, sleep });
    expect(waits).toEqual([4321]);
  });

  it('reports each retry before waiting', async () => {
    const { sleep } = fakeSleep();
    const first = transientError('one');
    const onRetry = jest.fn();
    const fn = jest.fn().mockRejectedValueOnce(first).mockResolvedValueOnce('ok');
    await withRetries(fn, { maxRetries: 2, sleep, delayFor, onRetry });
    expect(onRetry).toHaveBeenCalledTimes(1);
    expect(onRetry).toHaveBeenCalledWith({ attempt: 1, delayMs: 10, error: first });
  });

  it('does not retry an abort', async () => {
    const { sleep } = fakeSleep();
    const abort = Object.assign(new Error('aborted'), { name: 'AbortError' });
    const fn = jest.fn(async () => {
      throw abort;
    });
    await expect(withRetries(fn, { maxRetries: 3, sleep })).rejects.toBe(abort);
    expect(fn).toHaveBeenCalledTimes(1);
  });

  it('rethrows at once when the signal is already aborted after a failure', async () => {
    const { sleep } = fakeSleep();
    const controller = new AbortController();
    const err = transientError('busy');
    const fn = jest.fn(async () => {
      controller.abort();
      throw err;
    });
    await expect(withRetries(fn, { maxRetries: 3, sleep, signal: controller.signal })).rejects.toBe(err);
    expect(fn).toHaveBeenCalledTimes(1);
  });

  it('stops waiting as soon as the signal aborts (real sleep)', async () => {
    const controller = new AbortController();
    const fn = jest.fn(async () => {
      throw transientError('busy');
    });
    const run = withRetries(fn, { maxRetries: 3, signal: controller.signal, delayFor: () => 60_000 });
    const nextTurn = (): Promise<string> => new Promise((resolve) => setImmediate(() => resolve('still waiting')));
    const outcome = (): Promise<unknown> => Promise.race([run.catch((err: unknown) => err), nextTurn()]);
    expect(await outcome()).toBe('still waiting');
    expect(fn).toHaveBeenCalledTimes(1);
    controller.abort();
    // Settled before the next turn of the event loop: the abort ended the wait itself, no timer did.
    expect(await outcome()).toMatchObject({ name: 'AbortError' });
    expect(fn).toHaveBeenCalledTimes(1);
  });
});
