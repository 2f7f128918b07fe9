import { withCapacity } from '../../src/capacity/withCapacity';
import { permanentError, rateLimitedError, transientError, WorkerError } from '../../src/base/errors';
import type { Bill } from '../../src/capacity/bill';
import { createLogger } from '../../src/base/logger';
import type { Pacer } from '../../src/capacity/pacer';
import { IMAGE_MEMORY_BUDGET_BYTES, ImageMemory } from '../../src/capacity/imageMemory';
import type { GeneratedImage, ImageProvider, ImageRequest } from '../../src/pipeline/ports';
import { LogCapture } from '../support/helpers';

const IMAGE: GeneratedImage = { base64: 'aGk=', mimeType: 'image/png' };
const REQUEST: ImageRequest = { prompt: 'a fox', userId: 'alice' };

/** A pace that answers from a script of waits and records what it was asked. */
class FakePacer implements Pacer {
  readonly intervalMs = 200;
  readonly calls: Array<['acquire', number | undefined] | ['slowDown', number | undefined]> = [];
  waits: Array<number | null> = [];
  async acquire(deadlineInMs?: number): Promise<number | null> {
    this.calls.push(['acquire', deadlineInMs]);
    return this.waits.length ? this.waits.shift()! : 0;
  }
  async slowDown(retryAfterMs?: number): Promise<void> {
    this.calls.push(['slowDown', retryAfterMs]);
  }
}

function provider(answers: unknown[]): ImageProvider & { requests: ImageRequest[] } {
  const requests: ImageRequest[] = [];
  return {
    requests,
    async generate(request) {
      requests.push(request);
      const answer = answers.shift();
      if (answer instanceof Error) throw answer;
      return IMAGE;
    },
  };
}

const rateLimited = (retryAfterMs?: number): WorkerError => rateLimitedError('Image API 429: rate limited', { status: 429, retryAfterMs });

describe('withCapacity', () => {
  const logs = new LogCapture();
  const logger = createLogger('info', logs);
  const slept: number[] = [];
  const sleep = async (ms: number): Promise<void> => void slept.push(ms);
  beforeEach(() => {
    slept.length = 0;
  });

  it('waits for its slot in the shared pace before each request, and says once that it has one', async () => {
    const pacer = new FakePacer();
    pacer.waits = [120];
    const inner = provider([IMAGE]);
    let slots = 0;
    const paced = withCapacity(inner, { pacer, logger, sleep }, 'job-1', { onSlot: () => slots++ });
    const request = { ...REQUEST, deadlineAt: Date.now() + 10_000 };
    expect(await paced.generate(request, new AbortController().signal)).toBe(IMAGE);
    expect(slept).toEqual([120]);
    expect(slots).toBe(1);
    expect(inner.requests).toEqual([request]);
  });

  it('a request out counts in the image memory as the picture it will bring, until it is answered or fails', async () => {
    const images = new ImageMemory(IMAGE_MEMORY_BUDGET_BYTES);
    const seen: number[] = [];
    const inner: ImageProvider = {
      async generate() {
        seen.push(images.expected);
        if (seen.length === 1) throw new Error('connection reset');
        return IMAGE;
      },
    };
    const paced = withCapacity(inner, { pacer: null, images, logger, sleep }, 'job-1');
    await expect(paced.generate(REQUEST, new AbortController().signal)).rejects.toThrow('connection reset');
    expect(images.expected).toBe(0);
    expect(await paced.generate(REQUEST, new AbortController().signal)).toBe(IMAGE);
    expect(seen).toEqual([512 * 1024, 512 * 1024]);
    expect(images.expected).toBe(0);
  });

  it('a rate-limit 429 is a wait: it slows the fleet and asks again without failing, however often it comes', async () => {
    const pacer = new FakePacer();
    const inner = provider([rateLimited(1000), rateLimited(), rateLimited(500), IMAGE]);
    const paced = withCapacity(inner, { pacer, logger, sleep }, 'job-1');
    expect(await paced.generate(REQUEST, new AbortController().signal)).toBe(IMAGE);
    expect(inner.requests).toHaveLength(4);
    expect(pacer.calls.filter(([kind]) => kind === 'slowDown')).toEqual([
      ['slowDown', 1000],
      ['slowDown', undefined],
      ['slowDown', 500],
    ]);
    expect(pacer.calls.filter(([kind]) => kind === 'acquire')).toHaveLength(4);
  });

  it('passes every other failure through as it was (the pipeline decides about retries)', async () => {
    const failure = transientError('Image API 503', { status: 503 });
    const paced = withCapacity(provider([failure]), { pacer: new FakePacer(), logger, sleep }, 'job-1');
    await expect(paced.generate(REQUEST, new AbortController().signal)).rejects.toBe(failure);
  });

  it('ends the wait with GENERATION_FAILED once no slot comes before GENERATION_DEADLINE_MS', async () => {
    const pacer = new FakePacer();
    pacer.waits = [null];
    const inner = provider([IMAGE]);
    const paced = withCapacity(inner, { pacer, logger, sleep }, 'job-1');
    const err = await paced.generate({ ...REQUEST, deadlineAt: Date.now() + 5000 }, new AbortController().signal).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'GENERATION_FAILED', transient: false });
    expect((err as Error).message).toMatch(/GENERATION_DEADLINE_MS/);
    expect(inner.requests).toHaveLength(0);
    // The deadline went to the pace, so it reserves nothing it cannot use.
    expect(pacer.calls[0]).toEqual(['acquire', expect.any(Number)]);
    expect(pacer.calls[0][1]).toBeLessThanOrEqual(5000);
  });

  it("waits against the request's deadline: a later request of the same job (same deadline) has less time left", async () => {
    const pacer = new FakePacer();
    let now = 1_000_000;
    const realNow = Date.now;
    Date.now = () => now;
    try {
      const paced = withCapacity(provider([IMAGE, IMAGE]), { pacer, logger, sleep }, 'job-1');
      const request = { ...REQUEST, deadlineAt: now + 5000 };
      await paced.generate(request, new AbortController().signal);
      now += 3000;
      await paced.generate(request, new AbortController().signal);
    } finally {
      Date.now = realNow;
    }
    expect(pacer.calls.map(([, ms]) => ms)).toEqual([5000, 2000]);
  });

  it('without a pace (GROK_RATE_LIMIT=0) a 429 still waits, for Retry-After, and asks again', async () => {
    const inner = provider([rateLimited(700), IMAGE]);
    let slots = 0;
    const paced = withCapacity(inner, { pacer: null, logger, sleep }, 'job-1', { onSlot: () => slots++ });
    expect(await paced.generate(REQUEST, new AbortController().signal)).toBe(IMAGE);
    expect(slept).toEqual([700]);
    expect(inner.requests).toHaveLength(2);
    expect(slots).toBe(2);
  });

  it('gives a purchase back only when nothing was bought: never sent, or an error status; a 200 without a picture and a request cut off count', async () => {
    const ends: string[] = [];
    const bill = {
      buy: async () => ({
        settle: async (costUsd?: number) => void ends.push(`settled ${costUsd ?? 'at list price'}`),
        giveBack: async () => void ends.push('given back'),
      }),
    } as unknown as Bill;
    const failures = [
      permanentError('GENERATION_FAILED', 'Image API 400: bad argument', { status: 400 }),
      permanentError('CONTENT_REJECTED', 'Image API withheld the image (content moderation)', { status: 200 }),
      transientError('Image API did not answer within 60000 ms'),
    ];
    for (const failure of failures) {
      const paced = withCapacity(provider([failure]), { pacer: null, logger, sleep, bill: { bill, priceUsd: 0.02 } }, 'job-bill');
      await expect(paced.generate(REQUEST, new AbortController().signal)).rejects.toBe(failure);
    }
    expect(ends).toEqual(['given back', 'settled at list price', 'settled at list price']);
  });
});
