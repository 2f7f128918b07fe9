import { randomBytes } from 'node:crypto';
import type { Job } from 'bull';
import Redis from 'ioredis';
import { FairJob, FairQueue, FairQueueOptions } from '../src/fairQueue';
import { RedisPacer } from '../src/pacer';
import { redisOptionsFromUrl } from '../src/redis';
import { redisUrl } from './support/harness';

/** The fair queue's scripts against real Redis (ioredis-mock has no Lua), each test under its own prefix. */
let redis: Redis;
let base: string;

beforeEach(() => {
  redis = new Redis(redisOptionsFromUrl(redisUrl()));
  base = `test_fair_${randomBytes(4).toString('hex')}:`;
});

afterEach(async () => {
  const keys = await redis.keys(`${base}*`);
  if (keys.length) await redis.del(...keys);
  redis.disconnect();
});

let nextId = 1;
function bullJob(userId: unknown, opts: Record<string, unknown> = {}, extra: Record<string, unknown> = {}): Job {
  const id = String(nextId++);
  return { id, data: { Id: userId, Prompt: `p${id}`, Token: 't', Number: Number(id), ...extra }, timestamp: 1_700_000_000_000 + Number(id), opts } as unknown as Job;
}

function queue(options: Partial<FairQueueOptions> = {}): FairQueue {
  return new FairQueue(redis, base, { leaseMs: 60_000, userConcurrency: 0, doneTtlS: 3600, paced: false, ...options });
}

async function claimAll(fair: FairQueue): Promise<FairJob[]> {
  const claimed: FairJob[] = [];
  for (;;) {
    const claim = await fair.claim();
    if (!claim.job) return claimed;
    claimed.push(claim.job);
  }
}

const users = (jobs: FairJob[]): string[] => jobs.map((j) => j.userId);

describe('FairQueue', () => {
  it('serves users round robin: a burst does not hold a later single job back', async () => {
    const fair = queue();
    for (let i = 0; i < 4; i++) await fair.intake(bullJob('heavy'));
    await fair.intake(bullJob('light'));
    await fair.intake(bullJob('other'));
    expect(users(await claimAll(fair))).toEqual(['heavy', 'light', 'other', 'heavy', 'heavy', 'heavy']);
  });

  it('keeps each user\'s own jobs in the order they came, with their data, creation time and Bull options', async () => {
    const fair = queue();
    const first = bullJob('alice', { attempts: 3, backoff: { type: 'fixed', delay: 50 } });
    const second = bullJob('alice');
    await fair.intake(first);
    await fair.intake(second);
    const [a, b] = await claimAll(fair);
    expect(a).toEqual({
      id: String(first.id),
      userId: 'alice',
      data: first.data,
      createdAt: first.timestamp,
      attempts: 3,
      attemptsMade: 0,
      backoff: { type: 'fixed', delay: 50 },
      mayHaveCheckpoint: false,
    });
    expect(b).toMatchObject({ id: String(second.id), attempts: 1, backoff: null });
  });

  it('takes a job in once: Bull handing it in again (after a crash) is a no-op, also after it ended', async () => {
    const fair = queue();
    const job = bullJob('alice');
    expect(await fair.intake(job)).toBe(true);
    expect(await fair.intake(job)).toBe(false);
    const [claimed] = await claimAll(fair);
    expect(await fair.done(claimed)).toBe(true);
    expect(await fair.intake(job)).toBe(false);
    expect(await claimAll(fair)).toEqual([]);
    expect(await redis.ttl(`${base}f:done:${job.id}`)).toBeGreaterThan(0);
  });

  it('gives data without a usable Id to the runner all the same (it fails there with INVALID_JOB)', async () => {
    const fair = queue();
    await fair.intake({ id: 'x1', data: 'not an object', timestamp: 1, opts: {} } as unknown as Job);
    await fair.intake({ id: 'x2', data: { Id: '' }, timestamp: 1, opts: {} } as unknown as Job);
    const claimed = await claimAll(fair);
    expect(claimed.map((j) => [j.userId, j.data])).toEqual([
      ['', 'not an object'],
      ['', { Id: '' }],
    ]);
  });

  it('USER_CONCURRENCY caps one user across the fleet while others still get served', async () => {
    const fair = queue({ userConcurrency: 1 });
    await fair.intake(bullJob('heavy'));
    await fair.intake(bullJob('heavy'));
    await fair.intake(bullJob('light'));
    const first = await claimAll(fair);
    expect(users(first)).toEqual(['heavy', 'light']);
    // Another worker on the same Redis sees the same cap.
    expect(await claimAll(queue({ userConcurrency: 1 }))).toEqual([]);
    await fair.done(first[0]);
    expect(users(await claimAll(fair))).toEqual(['heavy']);
  });

  it('a retry waits for its backoff, then runs as the next attempt', async () => {
    const fair = queue();
    await fair.intake(bullJob('alice', { attempts: 2 }));
    const [job] = await claimAll(fair);
    await fair.retryLater(job, 150);
    expect(await fair.promote()).toBe(0);
    expect(await fair.claim()).toEqual({ retryInMs: null });
    await new Promise((r) => setTimeout(r, 170));
    expect(await fair.promote()).toBe(1);
    const again = await fair.claim();
    expect(again.job).toMatchObject({ id: job.id, attemptsMade: 1, mayHaveCheckpoint: true });
  });

  it('the reaper also brings in a due retry (its worker may have died before promoting it)', async () => {
    const fair = queue();
    await fair.intake(bullJob('alice', { attempts: 2 }));
    const [job] = await claimAll(fair);
    await fair.retryLater(job, 0);
    expect(await fair.reap(1)).toEqual([]);
    expect((await fair.claim()).job).toMatchObject({ id: job.id, attemptsMade: 1 });
  });

  it('a job handed back at shutdown is first in its user\'s line (the user keeps their place in the round)', async () => {
    const fair = queue();
    await fair.intake(bullJob('alice'));
    await fair.intake(bullJob('alice'));
    await fair.intake(bullJob('bob'));
    const [a1] = [(await fair.claim()).job!];
    await fair.handBack(a1);
    expect(await redis.zcard(`${base}f:active`)).toBe(0);
    const order = await claimAll(fair);
    expect(order.map((j) => [j.userId, j.id, j.mayHaveCheckpoint])).toEqual([
      ['bob', expect.any(String), false],
      ['alice', a1.id, true],
      ['alice', expect.any(String), false],
    ]);
  });

  it('reaps a job whose worker died: back first in line, and ended (for its user to be told) past MAX_STALLED_COUNT', async () => {
    const fair = queue({ leaseMs: 50 });
    const job = bullJob('alice');
    await fair.intake(job);
    await fair.intake(bullJob('alice'));
    await fair.claim();
    await new Promise((r) => setTimeout(r, 80));
    expect(await fair.reap(1)).toEqual([]);
    const again = (await fair.claim()).job!;
    expect(again).toMatchObject({ id: String(job.id), mayHaveCheckpoint: true });
    await new Promise((r) => setTimeout(r, 80));
    const ended = await fair.reap(1);
    expect(ended).toEqual([expect.objectContaining({ id: String(job.id), userId: 'alice', data: job.data })]);
    expect(await redis.exists(`${base}f:job:${job.id}`)).toBe(0);
  });

  it('keeps the running count per user only while a cap needs it, and releases it however a job ends', async () => {
    const fair = queue({ userConcurrency: 2, leaseMs: 50 });
    for (let i = 0; i < 3; i++) await fair.intake(bullJob('alice'));
    const [a, b] = await claimAll(fair);
    expect(await redis.hget(`${base}f:inflight`, 'alice')).toBe('2');
    await fair.done(a);
    await fair.handBack(b);
    await claimAll(fair);
    await new Promise((r) => setTimeout(r, 80));
    await fair.reap(5);
    expect(await redis.hget(`${base}f:inflight`, 'alice')).toBeNull();
    const uncapped = queue();
    await uncapped.intake(bullJob('bob'));
    await claimAll(uncapped);
    expect(await redis.exists(`${base}f:inflight`)).toBe(0);
  });

  it('renewing keeps a running job from being reaped', async () => {
    const fair = queue({ leaseMs: 100 });
    await fair.intake(bullJob('alice'));
    const job = (await fair.claim()).job!;
    for (let i = 0; i < 3; i++) {
      await new Promise((r) => setTimeout(r, 50));
      await fair.renew([job.id]);
    }
    expect(await fair.reap(0)).toEqual([]);
    expect(await redis.zscore(`${base}f:active`, job.id)).not.toBeNull();
  });

  it('ending a job removes its record and its checkpoint, and keeps the counts right', async () => {
    const fair = queue();
    await fair.intake(bullJob('alice'));
    await fair.intake(bullJob('bob'));
    expect(await fair.counts()).toEqual({ usersWaiting: 2, ready: 2, running: 0, delayed: 0 });
    const job = (await fair.claim()).job!;
    await redis.set(`${base}checkpoint:${job.id}`, 'image');
    expect(await fair.counts()).toEqual({ usersWaiting: 1, ready: 1, running: 1, delayed: 0 });
    await fair.done(job);
    expect(await redis.exists(`${base}checkpoint:${job.id}`, `${base}f:job:${job.id}`)).toBe(0);
    expect(await fair.counts()).toEqual({ usersWaiting: 1, ready: 1, running: 0, delayed: 0 });
  });

  it('with a pace, claims only when the image API has a slot soon', async () => {
    const pacer = new RedisPacer(redis, base, 100);
    const fair = queue({ paced: true });
    await fair.intake(bullJob('alice'));
    await fair.intake(bullJob('alice'));
    expect(await pacer.acquire()).toBe(0);
    expect(await pacer.acquire()).toBeGreaterThan(0); // two slots taken: the next is 200 ms away
    const claim = await fair.claim();
    expect(claim.job).toBeUndefined();
    expect(claim.retryInMs).toBeGreaterThan(0);
    await new Promise((r) => setTimeout(r, claim.retryInMs! + 10));
    expect((await fair.claim()).job).toBeDefined();
  });
});

describe('RedisPacer', () => {
  it('spaces requests one interval apart across every pacer on the Redis', async () => {
    const a = new RedisPacer(redis, base, 100);
    const b = new RedisPacer(redis, base, 100);
    const waits = [await a.acquire(), await b.acquire(), await a.acquire(), await b.acquire()] as number[];
    // Each reservation is one interval after the one before (a few ms pass between the calls).
    for (let i = 1; i < waits.length; i++) {
      expect(waits[i] - waits[i - 1]).toBeGreaterThan(80);
      expect(waits[i] - waits[i - 1]).toBeLessThanOrEqual(100);
    }
  });

  it('reserves nothing when the slot would come after the deadline', async () => {
    const pacer = new RedisPacer(redis, base, 1000);
    expect(await pacer.acquire(50)).toBe(0);
    expect(await pacer.acquire(50)).toBeNull();
    // The refused call took no slot: the next one is still one interval away, not two.
    expect(await pacer.acquire()).toBeLessThanOrEqual(1000);
  });

  it('a rate-limit answer pauses the fleet for Retry-After and slows it; slots going by ease it back', async () => {
    const pacer = new RedisPacer(redis, base, 100);
    await pacer.slowDown(500);
    const first = (await pacer.acquire())!;
    expect(first).toBeGreaterThan(400);
    const second = (await pacer.acquire())!;
    expect(second - first).toBeGreaterThan(140); // 1.5 x the interval
    // Many requests hearing the same 429 slow it once, not once each.
    await pacer.slowDown(0);
    await pacer.slowDown(0);
    const scale = Number(await redis.hget(`${base}f:pace`, 'scale'));
    expect(scale).toBeLessThan(1.5);
    for (let i = 0; i < 30; i++) await pacer.acquire();
    expect(Number(await redis.hget(`${base}f:pace`, 'scale'))).toBeLessThan(scale);
  });
});
