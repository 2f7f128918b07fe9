import { randomBytes } from 'node:crypto';
import type { Redis } from 'ioredis';
import RedisMock from 'ioredis-mock';
import { RedisCheckpointStore } from '../src/checkpointStore';
import type { GeneratedImage } from '../src/types';

const BASE = 'bull:Grok_Image_Generator:';
const PREFIX = `${BASE}checkpoint:`;
const OWNER = { userId: 'user-42', number: 3 };
const TTL_S = 3600;
const FINGERPRINT = 'user-42:1700000000000';
const IMAGE: GeneratedImage = { base64: 'iVBORw0KGgoAAAANSUhEUg==', mimeType: 'image/png', revisedPrompt: 'a fox, "revised"\nwith a newline', costUsd: 0.07 };

let redis: Redis;
let store: RedisCheckpointStore;

beforeEach(async () => {
  redis = new RedisMock() as unknown as Redis;
  // ioredis-mock instances share one in-memory keyspace: start each test from an empty one.
  await redis.flushall();
  store = new RedisCheckpointStore(redis, BASE, TTL_S);
});

afterEach(() => {
  redis.disconnect();
});

describe('RedisCheckpointStore', () => {
  it('returns what was saved when the fingerprint matches', async () => {
    await store.save('17', FINGERPRINT, IMAGE);
    expect(await store.load('17', FINGERPRINT)).toEqual(IMAGE);
  });

  it('keeps only what the image has: no revisedPrompt or cost stays absent', async () => {
    await store.save('18', FINGERPRINT, { base64: 'AAAA', mimeType: 'image/jpeg' });
    // toStrictEqual: a key present with the value undefined counts as a difference.
    expect(await store.load('18', FINGERPRINT)).toStrictEqual({ base64: 'AAAA', mimeType: 'image/jpeg' });
  });

  it('keeps a cost of zero', async () => {
    await store.save('19', FINGERPRINT, { ...IMAGE, costUsd: 0 });
    expect((await store.load('19', FINGERPRINT))!.costUsd).toBe(0);
  });

  it('returns null for another fingerprint (a reused job id) and for a job never saved', async () => {
    await store.save('17', FINGERPRINT, IMAGE);
    expect(await store.load('17', 'someone-else:1700000000000')).toBeNull();
    expect(await store.load('17', 'user-42:1700000000001')).toBeNull();
    expect(await store.load('99', FINGERPRINT)).toBeNull();
  });

  it('keeps one checkpoint per job: a later save replaces the earlier one', async () => {
    await store.save('17', 'old-user:1', { ...IMAGE, base64: 'b2xk' });
    await store.save('17', FINGERPRINT, IMAGE);
    expect(await store.load('17', 'old-user:1')).toBeNull();
    expect(await store.load('17', FINGERPRINT)).toEqual(IMAGE);
  });

  it('stores under the queue prefix, one key per job, with a TTL of at most ttlS', async () => {
    await store.save('17', FINGERPRINT, IMAGE);
    expect(store.key('17')).toBe(`${PREFIX}17`);
    expect(await redis.keys('*')).toEqual([`${PREFIX}17`]);
    const ttl = await redis.ttl(`${PREFIX}17`);
    expect(ttl).toBeGreaterThan(0);
    expect(ttl).toBeLessThanOrEqual(TTL_S);
  });

  it("forget deletes the job's checkpoint, and forgetting again is harmless", async () => {
    await store.save('17', FINGERPRINT, IMAGE);
    await store.save('18', FINGERPRINT, IMAGE);
    await store.forget('17');
    expect(await redis.keys('*')).toEqual([`${PREFIX}18`]);
    await expect(store.forget('17')).resolves.toBeUndefined();
    expect(await store.load('18', FINGERPRINT)).toEqual(IMAGE);
  });

  it.each([
    ['no header line', 'iVBORw0KGgo='],
    ['a header that is not JSON', '{"f":"user-42:17\niVBORw0KGgo='],
    ['an empty value', ''],
    ['a JSON null header', 'null\niVBORw0KGgo='],
    ['a JSON number header', '42\niVBORw0KGgo='],
    ['a header without a mime type', `${JSON.stringify({ f: FINGERPRINT })}\niVBORw0KGgo=`],
    ['a header without an image after it', `${JSON.stringify({ f: FINGERPRINT, m: 'image/png' })}\n`],
  ])('a corrupt value (%s) reads as no checkpoint', async (_label, value) => {
    await redis.set(`${PREFIX}17`, value);
    await expect(store.load('17', FINGERPRINT)).resolves.toBeNull();
  });

  it('round-trips a 1.5 MB image', async () => {
    const base64 = randomBytes(1_125_000).toString('base64');
    expect(base64.length).toBe(1_500_000);
    const big: GeneratedImage = { base64, mimeType: 'image/png', costUsd: 0.07 };
    await store.save('big', FINGERPRINT, big);
    const loaded = await store.load('big', FINGERPRINT);
    expect(loaded!.base64.length).toBe(base64.length);
    expect(loaded!.base64 === base64).toBe(true);
    expect(loaded!.mimeType).toBe('image/png');
  });
});
