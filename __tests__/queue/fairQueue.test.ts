import Bull, { JobOptions } from 'bull';
import Redis from 'ioredis';
import { FairJob, FairQueue, FairQueueOptions } from '../../src/queue/fairQueue';
import { redisOptionsFromUrl } from '../../src/redis';
import { lapseLeases as lapseAll, redisUrl, uniqueQueueName } from '../support/helpers';

/**
 * The fair queue's scripts against real Redis (Bull's Lua needs cmsgpack, which ioredis-mock lacks), behind a
 * real Bull queue: producers add to Bull, the intake takes jobs in. Each test has its own queue name. Leases
 * lapse because a test writes their deadline into the past, never because it sleeps.
 */
let redis: Redis;
let bull: Bull.Queue;
let prefix: string;

beforeEach(() => {
  redis = new Redis(redisOptionsFromUrl(redisUrl()));
  const name = uniqueQueueName('fair');
  bull = new Bull(name, redisUrl());
  prefix = `bull:${name}:`;
});

afterEach(async () => {
  await bull.close();
  const keys = await redis.keys(`${prefix}*`);
  if (keys.length) await redis.del(...keys);
  redis.disconnect();
});

function fairQueue(options: Partial<FairQueueOptions> = {}): FairQueue {
  return new FairQueue(redis, prefix, { leaseMs: 60_000, userConcurrency: 0, paced: false, agingMs: 1000, ...options });
}

let page = 0;
async function add(userId: unknown, opts: JobOptions = {}, extra: Record<string, unknown> = {}): Promise<Bull.Job> {
  page += 1;
  return bull.add({ Id: userId, Prompt: `page ${page}`, Token: 't', Number: page, ...extra }, opts);
}

/** Takes in everything Bull holds, as the intake's loop does. */
async function takeIn(fair: FairQueue): Promise<void> {
  for (;;) {
    const { taken, joined } = await fair.intake(null, 100);
    if (taken + joined < 100) return;
  }
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

/** Makes every lease lapse now, as if its worker had frozen past LOCK_DURATION_MS. */
const lapseLeases = (): Promise<void> => lapseAll(redis, prefix);

describe('who goes next', () => {
  it('the user with the fewest jobs waiting goes first, so stories complete one after another', async () => {
    const fair = fairQueue();
    for (let i = 0; i < 3; i++) await add('first-story');
    for (let i = 0; i < 3; i++) await add('second-story');
    await add('single');
    await takeIn(fair);
    expect(users(await claimAll(fair))).toEqual(['single', 'first-story', 'first-story', 'first-story', 'second-story', 'second-story', 'second-story']);
  });

  it("a light user passes a heavy user's burst", async () => {
    const fair = fairQueue();
    for (let i = 0; i < 200; i++) await add('heavy');
    await takeIn(fair);
    const first = await fair.claim();
    expect(first.job?.userId).toBe('heavy');
    await add('light');
    await takeIn(fair);
    expect((await fair.claim()).job?.userId).toBe('light');
  });

  it('aging: a user with many jobs who has waited long enough goes before newcomers', async () => {
    const fair = fairQueue();
    for (let i = 0; i < 5; i++) await add('heavy');
    await takeIn(fair);
    // The heavy user started waiting 5 agings ago: 5 jobs x 1000 ms + (now - 5000) beats a newcomer's 1 x 1000 + now.
    const score = Number(await redis.zscore(`${prefix}fq:users`, 'heavy'));
    await redis.zadd(`${prefix}fq:users`, score - 5000, 'heavy');
    await add('newcomer');
    await takeIn(fair);
    expect((await fair.claim()).job?.userId).toBe('heavy');
  });

  it("honours Bull's priority and lifo within a user's line", async () => {
    const fair = fairQueue();
    const plain = await add('alice');
    const low = await add('alice', { priority: 5 });
    const high = await add('alice', { priority: 1 });
    const newest = await add('alice', { lifo: true });
    await takeIn(fair);
    expect((await claimAll(fair)).map((j) => j.id)).toEqual([high.id, low.id, newest.id, plain.id].map(String));
  });

  it('hands over the data, creation time and Bull options, and refuses none of them in silence', async () => {
    const fair = fairQueue();
    const job = await add('alice', { attempts: 3, backoff: { type: 'fixed', delay: 50 }, timeout: 1000 });
    const custom = await add('bob', { backoff: { type: 'jitter' } });
    const reply = await fair.intake(null, 100);
    expect(reply.unapplied).toEqual([
      { id: String(job.id), option: 'timeout' },
      { id: String(custom.id), option: 'backoff' },
    ]);
    const [claimed] = (await claimAll(fair)).filter((j) => j.userId === 'alice');
    expect(claimed).toMatchObject({
      fid: `${job.timestamp}-${job.id}`,
      id: String(job.id),
      token: '1',
      userId: 'alice',
      data: job.data,
      createdAt: job.timestamp,
      attempts: 3,
      attemptsMade: 0,
      backoff: { type: 'fixed', delay: 50 },
      mayHaveCheckpoint: false,
      stalledOut: false,
    });
  });

  it('gives data without a usable Id to a worker all the same (it fails there with INVALID_JOB)', async () => {
    const fair = fairQueue();
    await bull.add('not an object');
    await add(42);
    await takeIn(fair);
    expect(users(await claimAll(fair))).toEqual(['', '']);
  });

  it('USER_CONCURRENCY caps one user across the fleet, and the running count goes back by what the claim recorded', async () => {
    const capped = fairQueue({ userConcurrency: 1 });
    for (let i = 0; i < 2; i++) await add('alice');
    await add('bob');
    await takeIn(capped);
    const [a, b] = await claimAll(capped);
    expect(users([a, b]).sort()).toEqual(['alice', 'bob']);
    // A worker deployed without the cap ends the job: the count still goes back.
    const uncapped = fairQueue({ userConcurrency: 0 });
    await uncapped.end(a.userId === 'alice' ? a : b, { how: 'completed', returnValue: null });
    expect(await redis.hget(`${prefix}fq:inflight`, 'alice')).toBeNull();
    expect((await capped.claim()).job?.userId).toBe('alice');
  });
});

describe('one round trip between jobs', () => {
  it('ending a job can claim the next one, fairly, in the same call', async () => {
    const fair = fairQueue();
    await add('alice');
    await add('bob');
    await takeIn(fair);
    const first = (await fair.claim()).job!;
    const { held, next } = await fair.end(first, { how: 'completed', returnValue: null }, true, true);
    expect(held).toBe(true);
    expect(next?.job?.userId).toBe(first.userId === 'alice' ? 'bob' : 'alice');
    expect((await fair.end(next!.job!, { how: 'completed', returnValue: null }, true, true)).next).toEqual({ retryInMs: null });
  });
});

describe('the pace', () => {
  it('a job that never asks the image API gives its slot back at once', async () => {
    // A hold far longer than the calls: a slow machine cannot see it run out between them.
    const fair = fairQueue({ paced: true, claimHoldMs: 60_000 });
    await add('alice');
    await add('bob');
    await takeIn(fair);
    const first = (await fair.claim()).job!;
    // Claimed for the next free slot: others wait for it to take the slot...
    expect((await fair.claim()).retryInMs).toBeGreaterThan(0);
    // ...unless it ends without asking (a bad token, bad data): then the slot is free again.
    await fair.end(first, { how: 'failed', code: 'SESSION_EXPIRED' }, false);
    expect((await fair.claim()).job?.userId).toBe('bob');
  });
});

describe('leases and fencing', () => {
  it('a lapsed lease is reaped: the job goes back first in line and the stale holder can no longer touch it', async () => {
    const fair = fairQueue({ userConcurrency: 1 });
    await add('alice');
    await add('alice');
    await takeIn(fair);
    const stale = (await fair.claim()).job!;
    await lapseLeases();
    expect(await fair.reap(1)).toEqual({ requeued: 1, stalledOut: 0, promoted: 0 });
    const fresh = (await fair.claim()).job!;
    expect(fresh.fid).toBe(stale.fid);
    expect(fresh.token).not.toBe(stale.token);
    expect(fresh.mayHaveCheckpoint).toBe(true);
    // Nothing the stale holder does changes what the new holder owns.
    expect(await fair.renew([stale])).toEqual([stale.fid]);
    expect(await fair.hold(stale, 'GENERATION_FAILED')).toBe(-1);
    expect((await fair.end(stale, { how: 'back' })).held).toBe(false);
    expect((await fair.end(stale, { how: 'retry', delayMs: 0 })).held).toBe(false);
    expect((await fair.end(stale, { how: 'completed', returnValue: null })).held).toBe(false);
    expect(await redis.zrange(`${prefix}fq:active`, 0, -1)).toEqual([`${fresh.token}|${fresh.fid}`]);
    // The cap stays exact: alice's second job waits until the new holder ends.
    expect((await fair.claim()).job).toBeUndefined();
    expect((await fair.end(fresh, { how: 'completed', returnValue: null })).held).toBe(true);
    expect((await fair.claim()).job?.userId).toBe('alice');
  });

  it('renewing keeps a running job from being reaped and reports nothing lost', async () => {
    const fair = fairQueue({ leaseMs: 60_000 });
    await add('alice');
    await takeIn(fair);
    const job = (await fair.claim()).job!;
    expect(await fair.renew([job])).toEqual([]);
    expect(await fair.confirm(job)).toBe(true);
    expect(await fair.reap(1)).toEqual({ requeued: 0, stalledOut: 0, promoted: 0 });
  });

  it('past MAX_STALLED_COUNT a lapsed job comes back as a GENERATION_FAILED answer, first in line', async () => {
    const fair = fairQueue();
    await add('alice');
    await add('alice');
    await takeIn(fair);
    const job = (await fair.claim()).job!;
    await lapseLeases();
    expect(await fair.reap(0)).toEqual({ requeued: 0, stalledOut: 1, promoted: 0 });
    const answer = (await fair.claim()).job!;
    expect(answer).toMatchObject({ fid: job.fid, answer: 'GENERATION_FAILED', stalledOut: true });
  });

  it('a job handed back goes where it was in its line', async () => {
    const fair = fairQueue();
    const first = await add('alice');
    await add('alice');
    await takeIn(fair);
    const job = (await fair.claim()).job!;
    expect(job.id).toBe(String(first.id));
    expect((await fair.end(job, { how: 'back' })).held).toBe(true);
    expect((await fair.claim()).job?.id).toBe(String(first.id));
  });

  it('a checkpoint is kept only while its job has not ended, and the end removes it', async () => {
    const fair = fairQueue();
    await add('alice');
    await takeIn(fair);
    const job = (await fair.claim()).job!;
    expect(await fair.keepCheckpoint(job.fid, Buffer.from('image'), 60)).toBe(true);
    await fair.end(job, { how: 'completed', returnValue: null });
    expect(await redis.exists(`${prefix}checkpoint:${job.fid}`)).toBe(0);
    expect(await fair.keepCheckpoint(job.fid, Buffer.from('image'), 60)).toBe(false);
    expect(await redis.exists(`${prefix}checkpoint:${job.fid}`)).toBe(0);
  });
});

describe('what Bull says', () => {
  it('a job stays active in Bull until it ends; then completed with its return value, and finished() resolves', async () => {
    const fair = fairQueue();
    const job = await add('alice', { removeOnComplete: false });
    await takeIn(fair);
    expect(await bull.getJobCounts()).toMatchObject({ waiting: 0, active: 1, completed: 0 });
    const finished = job.finished();
    const claimed = (await fair.claim()).job!;
    await fair.end(claimed, { how: 'completed', returnValue: { delivered: true } });
    await expect(finished).resolves.toEqual({ delivered: true });
    expect(await bull.getJobCounts()).toMatchObject({ waiting: 0, active: 0, completed: 1, failed: 0 });
    expect((await bull.getJob(job.id))?.returnvalue).toEqual({ delivered: true });
  });

  it('a failure told to the user fails the job in Bull with its code; removeOnFail removes it', async () => {
    const fair = fairQueue();
    const kept = await add('alice');
    const removed = await add('bob', { removeOnFail: true });
    await takeIn(fair);
    const finished = kept.finished();
    for (const job of await claimAll(fair)) await fair.end(job, { how: 'failed', code: 'SESSION_EXPIRED' });
    await expect(finished).rejects.toThrow('SESSION_EXPIRED');
    expect((await bull.getJob(kept.id))?.failedReason).toBe('SESSION_EXPIRED');
    expect(await bull.getJob(removed.id)).toBeNull();
    expect(await bull.getJobCounts()).toMatchObject({ active: 0, failed: 1 });
  });

  it('a producer retry counts as an attempt in Bull and waits in the fair queue until due', async () => {
    const fair = fairQueue();
    const job = await add('alice', { attempts: 2 });
    await takeIn(fair);
    const claimed = (await fair.claim()).job!;
    await fair.end(claimed, { how: 'retry', delayMs: 60_000 });
    expect((await fair.claim()).job).toBeUndefined();
    expect(await fair.promote()).toBe(0);
    await redis.zadd(`${prefix}fq:delayed`, 0, claimed.fid);
    expect(await fair.promote()).toBe(1);
    expect((await fair.claim()).job).toMatchObject({ fid: claimed.fid, attemptsMade: 1, mayHaveCheckpoint: true });
    expect((await bull.getJob(job.id))?.attemptsMade).toBe(1);
  });

  it('a re-added jobId after the first ended is a new job, and is run', async () => {
    const fair = fairQueue();
    await add('alice', { jobId: 'page-1', removeOnComplete: true });
    await takeIn(fair);
    const first = (await fair.claim()).job!;
    await fair.end(first, { how: 'completed', returnValue: null });
    await add('alice', { jobId: 'page-1', removeOnComplete: true });
    await takeIn(fair);
    const second = (await fair.claim()).job!;
    expect(second.id).toBe('page-1');
    expect(second.token).toBe('1');
  });

  it('a blocking read that already moved a job is taken in once, even if the script is sent twice', async () => {
    const fair = fairQueue();
    const job = await add('alice');
    const id = await redis.brpoplpush(`${prefix}wait`, `${prefix}active`, 1);
    expect(id).toBe(String(job.id));
    await fair.intake(id, 10);
    await fair.intake(id, 10);
    expect((await claimAll(fair)).length).toBe(1);
  });
});

describe('one request, one picture; a loop is answered slower', () => {
  it('an ask for the same user, page and prompt as one waiting joins it: one run, both finished in Bull', async () => {
    const fair = fairQueue();
    const first = await bull.add({ Id: 'alice', Prompt: 'a fox', Token: 't', Number: 1 }, { removeOnComplete: false });
    const again = await bull.add({ Id: 'alice', Prompt: 'a fox', Token: 't2', Number: 1 }, { removeOnComplete: false });
    const other = await bull.add({ Id: 'alice', Prompt: 'a fox', Token: 't', Number: 2 });
    expect(await fair.intake(null, 100)).toMatchObject({ taken: 2, joined: 1 });
    const claimed = await claimAll(fair);
    expect(claimed.map((j) => j.id)).toEqual([String(first.id), String(other.id)]);
    const joinedDone = again.finished();
    expect(await fair.end(claimed[0], { how: 'completed', returnValue: { delivered: true } })).toEqual({ held: true, joined: [String(again.id)] });
    await expect(joinedDone).resolves.toEqual({ delivered: true });
    expect((await fair.counts()).joined).toBe(0);
    // Once the first has ended, the same ask is a new job.
    await bull.add({ Id: 'alice', Prompt: 'a fox', Token: 't3', Number: 1 });
    expect(await fair.intake(null, 100)).toMatchObject({ taken: 1, joined: 0 });
  });

  it('a failure told for a page a moment ago is held back, 2 s then doubling, and comes back as an answer', async () => {
    const fair = fairQueue();
    await bull.add({ Id: 'alice', Prompt: ' ', Token: 't', Number: 3 });
    await takeIn(fair);
    const first = (await fair.claim()).job!;
    expect(await fair.hold(first, 'INVALID_JOB')).toBe(0);
    await fair.end(first, { how: 'failed', code: 'INVALID_JOB' });

    await bull.add({ Id: 'alice', Prompt: ' ', Token: 't', Number: 3 });
    await takeIn(fair);
    const repeat = (await fair.claim()).job!;
    expect(await fair.hold(repeat, 'INVALID_JOB')).toBe(2000);
    expect((await fair.counts()).heldBack).toBe(1);
    expect((await fair.claim()).job).toBeUndefined();
    await redis.zadd(`${prefix}fq:held`, 0, repeat.fid);
    expect(await fair.promote()).toBe(1);
    const answer = (await fair.claim()).job!;
    expect(answer).toMatchObject({ fid: repeat.fid, answer: 'INVALID_JOB', stalledOut: false });
    await fair.end(answer, { how: 'failed', code: 'INVALID_JOB' });

    await bull.add({ Id: 'alice', Prompt: ' ', Token: 't', Number: 3 });
    await takeIn(fair);
    expect(await fair.hold((await fair.claim()).job!, 'INVALID_JOB')).toBe(4000);
    // Another page of the same user, or the same page of another story (another prompt), is answered at once.
    await bull.add({ Id: 'alice', Prompt: ' ', Token: 't', Number: 4 });
    await bull.add({ Id: 'alice', Prompt: 'another story', Token: 't', Number: 3 });
    await takeIn(fair);
    expect(await fair.hold((await fair.claim()).job!, 'INVALID_JOB')).toBe(0);
    expect(await fair.hold((await fair.claim()).job!, 'INVALID_JOB')).toBe(0);
  });

  it('counts are kept without walking the users', async () => {
    const fair = fairQueue();
    for (let i = 0; i < 3; i++) await add(`user${i}`);
    await add('user0', {}, { Prompt: 'page 1', Number: 1 });
    await takeIn(fair);
    await fair.claim();
    expect(await fair.counts()).toEqual({ usersWaiting: 2, waiting: 3, running: 1, retrying: 0, heldBack: 0, joined: 0, heldBackTotal: 0 });
  });
});
