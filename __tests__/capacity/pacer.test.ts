import { randomBytes } from 'node:crypto';
import Redis from 'ioredis';
import { RedisPacer } from '../../src/capacity/pacer';
import { redisOptionsFromUrl } from '../../src/redis/connections';
import { redisUrl } from '../support/helpers';

/** The shared pace's scripts against real Redis. Assertions read the reserved slots Redis keeps, not the clock. */
let redis: Redis;
let key: string;

beforeEach(() => {
  redis = new Redis(redisOptionsFromUrl(redisUrl()));
  key = `test_pace_${randomBytes(4).toString('hex')}:fq:pace`;
});

afterEach(async () => {
  await redis.del(key);
  redis.disconnect();
});

const nextSlot = async (): Promise<number> => Number(await redis.hget(key, 'tat'));

describe('RedisPacer', () => {
  it('spaces requests one interval apart across every pacer on the Redis', async () => {
    // An interval far longer than the calls take: every reservation comes before the next free slot, however
    // slow the machine, and moves it by exactly one interval.
    const a = new RedisPacer(redis, key, 10_000);
    const b = new RedisPacer(redis, key, 10_000);
    await a.acquire();
    const slots = [await nextSlot()];
    for (const pacer of [b, a, b]) {
      await pacer.acquire();
      slots.push(await nextSlot());
    }
    expect(slots.slice(1).map((slot, i) => Math.round(slot - slots[i]))).toEqual([10_000, 10_000, 10_000]);
  });

  it('reserves nothing when the slot would come after the deadline', async () => {
    // An interval far longer than the calls: the second can never find the slot within its deadline by chance.
    const pacer = new RedisPacer(redis, key, 60_000);
    expect(await pacer.acquire(50)).toBe(0);
    const slot = await nextSlot();
    expect(await pacer.acquire(50)).toBeNull();
    expect(await nextSlot()).toBe(slot);
  });

  it('a rate-limit answer pauses the fleet for Retry-After and slows it; slots going by ease it back', async () => {
    const pacer = new RedisPacer(redis, key, 100);
    // Many requests hearing the same 429 slow it once, not once each (sent together, as they come).
    await Promise.all([pacer.slowDown(5000), pacer.slowDown(0), pacer.slowDown(0)]);
    expect(Number(await redis.hget(key, 'scale'))).toBe(1.5);
    const paused = await nextSlot();
    expect(await pacer.acquire()).toBeGreaterThan(0);
    expect(Math.round((await nextSlot()) - paused)).toBe(150); // one interval x 1.5
    const scale = Number(await redis.hget(key, 'scale'));
    for (let i = 0; i < 30; i++) await pacer.acquire();
    expect(Number(await redis.hget(key, 'scale'))).toBeLessThan(scale);
  });

  it("a job's first request reserves the slot its claim was promised, at that slot's time, and ends the promise", async () => {
    const pacer = new RedisPacer(redis, key, 1000);
    const [seconds, micros] = await redis.time();
    const now = Number(seconds) * 1000 + Math.floor(Number(micros) / 1000);
    // The claim was promised the slot that came free 5 ms before it (its promise good for a minute).
    await redis.hset(key, 'tat', now - 5, 'promised', now + 60_000, 'promisedTo', 'f1', 'promisedAt', now - 5);
    // Another job's request neither takes the promise nor ends it.
    await pacer.acquire(undefined, 'f2');
    expect(await redis.hget(key, 'promisedTo')).toBe('f1');
    const taken = await nextSlot();
    await redis.hset(key, 'tat', now - 5);

    expect(await pacer.acquire(undefined, 'f1')).toBe(0);
    // Counted from the promised slot, not from when the request came: the pace does not drift by the claim's way.
    expect(await nextSlot()).toBe(now - 5 + 1000);
    expect(taken).toBeGreaterThanOrEqual(now + 1000);
    expect(await redis.hmget(key, 'promised', 'promisedTo', 'promisedAt')).toEqual([null, null, null]);
  });
});
