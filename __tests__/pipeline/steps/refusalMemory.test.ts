import Redis from 'ioredis';
import RedisMock from 'ioredis-mock';
import { createLogger } from '../../../src/base/logger';
import { GrokImageProvider } from '../../../src/pipeline/steps/grokProvider';
import { failureEvent, runJob } from '../../../src/pipeline/runJob';
import { redisOptionsFromUrl } from '../../../src/redis/connections';
import { RedisRefusalMemory } from '../../../src/pipeline/steps/refusalMemory';
import type { JobEvent, Notifier } from '../../../src/pipeline/ports';
import { FakeXai, startFakeXai } from '../../support/fakeXai';
import { redisUrl, uniqueQueueName, closeClient } from '../../support/helpers';

const USER = 'alice@example.com';
const PROMPT = 'Style: a very specific forbidden picture';
const TTL_S = 600;

let redis: Redis;
let keyBase: string;

beforeEach(() => {
  redis = new Redis(redisOptionsFromUrl(redisUrl()));
  keyBase = `bull:${uniqueQueueName('refusals')}:`;
});

afterEach(async () => {
  const keys = await redis.keys(`${keyBase}*`);
  if (keys.length) await redis.del(...keys);
  await closeClient(redis);
});

describe('RedisRefusalMemory (plain Redis commands: ioredis-mock)', () => {
  let mock: Redis;
  beforeEach(async () => {
    mock = new RedisMock() as unknown as Redis;
    // ioredis-mock instances share one in-memory keyspace: start each test from an empty one.
    await mock.flushall();
  });
  afterEach(() => mock.disconnect());

  it('knows a remembered refusal for that user and prompt only', async () => {
    const memory = new RedisRefusalMemory(mock, keyBase, TTL_S);
    expect(await memory.has(USER, PROMPT)).toBe(false);
    await memory.remember(USER, PROMPT);
    expect(await memory.has(USER, PROMPT)).toBe(true);
    expect(await memory.has('bob', PROMPT)).toBe(false);
    expect(await memory.has(USER, `${PROMPT}.`)).toBe(false);
  });

  it('does not confuse where the user ends and the prompt begins', async () => {
    const memory = new RedisRefusalMemory(mock, keyBase, TTL_S);
    await memory.remember('ab', 'c');
    expect(await memory.has('a', 'bc')).toBe(false);
  });

  it('stores one key under the queue prefix, with the TTL, holding neither the Id nor the prompt', async () => {
    const memory = new RedisRefusalMemory(mock, keyBase, TTL_S);
    await memory.remember(USER, PROMPT);
    const keys = await mock.keys(`${keyBase}*`);
    expect(keys).toEqual([expect.stringMatching(new RegExp(`^${keyBase}refused:[0-9a-f]{64}$`))]);
    const ttl = await mock.ttl(keys[0]);
    expect(ttl).toBeGreaterThan(0);
    expect(ttl).toBeLessThanOrEqual(TTL_S);
    const stored = `${keys[0]} ${await mock.get(keys[0])}`;
    expect(stored).not.toContain('alice');
    expect(stored).not.toContain('forbidden');
  });

  it('keeps queues apart', async () => {
    await new RedisRefusalMemory(mock, keyBase, TTL_S).remember(USER, PROMPT);
    expect(await new RedisRefusalMemory(mock, `${keyBase}other:`, TTL_S).has(USER, PROMPT)).toBe(false);
  });

  it('rejects when Redis is away (the pipeline carries on without it)', async () => {
    const away = new Redis({ ...redisOptionsFromUrl('redis://127.0.0.1:1'), lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
    away.on('error', () => undefined);
    const memory = new RedisRefusalMemory(away, keyBase, TTL_S);
    await expect(memory.has(USER, PROMPT)).rejects.toThrow();
    await expect(memory.remember(USER, PROMPT)).rejects.toThrow();
    await closeClient(away);
  });
});

describe("the front end's re-ask loop on a moderated prompt", () => {
  let xai: FakeXai;
  beforeEach(async () => {
    xai = await startFakeXai({
      default: { status: 400, json: { code: 'Client specified an invalid argument', error: 'Generated image rejected by content moderation.' } },
    });
  });
  afterEach(async () => {
    await xai.close();
  });

  it('reaches the image API once; every later ask is refused from memory with the same sentence', async () => {
    const events: JobEvent[] = [];
    const notifier: Notifier = {
      notify: async (event) => void events.push(event),
      tryNotify: () => false,
      tryDeliver: () => false,
      close: async () => undefined,
    };
    const deps = {
      verifier: { verify: async () => undefined },
      provider: new GrokImageProvider({ apiUrl: xai.url, apiKey: 'k-123456', model: 'grok-imagine-image', timeoutMs: 5000 }),
      notifier,
      checkpoints: { load: async () => null, save: async () => undefined },
      refusals: new RedisRefusalMemory(redis, keyBase, TTL_S),
      logger: createLogger('silent'),
      settings: { promptPrefix: 'Style: ', promptMaxLength: 1000, maxRetries: 3, notifyProgress: false },
    };
    const results = [];
    for (let ask = 1; ask <= 5; ask++) {
      const data = { Id: USER, Token: 't', Prompt: 'a very specific forbidden picture', Number: 2 };
      results.push(await runJob({ jobId: String(ask), data, attempt: 1, maxAttempts: 1, createdAt: ask }, deps, new AbortController().signal));
    }
    expect(xai.calls).toHaveLength(1);
    expect(results.map((r) => [r.delivered ? null : r.error.code, r.report.refusalRemembered ?? false])).toEqual([
      ['CONTENT_REJECTED', false],
      ['CONTENT_REJECTED', true],
      ['CONTENT_REJECTED', true],
      ['CONTENT_REJECTED', true],
      ['CONTENT_REJECTED', true],
    ]);
    // Each is told the same sentence (the pipeline reports the failure; telling it is the queue's).
    const told = results.map((r) => (r.delivered ? null : failureEvent(r.report.userId!, r.owner!, r.error.code).error));
    expect(new Set(told.map((e) => JSON.stringify(e)))).toEqual(new Set([JSON.stringify(told[0])]));
    expect(events).toEqual([]);
  });
});
