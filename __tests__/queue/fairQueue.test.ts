import Bull, { JobOptions } from 'bull';
import Redis from 'ioredis';
import { Claim, FairQueue, FairQueueOptions } from '../../src/queue/fairQueue';
import { redisOptionsFromUrl } from '../../src/redis/connections';
import { lapseLeases as lapseAll, redisUrl, uniqueQueueName } from '../support/helpers';

/**
 * The fair queue's scripts against real Redis (Bull's Lua needs cmsgpack, which ioredis-mock lacks), behind a
 * real Bull queue: producers add to Bull, the intake takes jobs in. Each test has its own queue name. Claims lapse
 * because a test writes their deadline into the past, never because it sleeps.
 */
let redis: Redis;
let bull: Bull.Queue;
let prefix: string;
let tokens = 0;

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
  return new FairQueue(redis, prefix, { leaseMs: 60_000, userConcurrency: 0, paced: false, promiseMs: 50, lockMs: 60_000, agingMs: 1000, ...options });
}

/** A token as a worker makes them: `<worker>.<n>`. */
function token(worker = 'w0'): string {
  tokens += 1;
  return `${worker}.${tokens}`;
}

let page = 0;
async function add(userId: unknown, opts: JobOptions = {}, extra: Record<string, unknown> = {}): Promise<Bull.Job> {
  page += 1;
  return bull.add({ Id: userId, Prompt: `page ${page}`, Token: 't', Number: page, ...extra }, opts);
}

/** Takes in everything Bull holds, as the intake's loop does. */
async function takeIn(fair: FairQueue): Promise<void> {
  while ((await fair.intake(null, 100)).read >= 100);
}

async function claim(fair: FairQueue, worker = 'w0'): Promise<Claim | undefined> {
  const t = token(worker);
  const reply = await fair.claim(t);
  return reply.job ? { token: t, job: reply.job } : undefined;
}

async function claimAll(fair: FairQueue): Promise<Claim[]> {
  const claimed: Claim[] = [];
  for (let c = await claim(fair); c; c = await claim(fair)) claimed.push(c);
  return claimed;
}

const users = (claims: Claim[]): string[] => claims.map((c) => c.job.userId);
const completed = { how: 'completed', returnValue: null } as const;

/** Makes every claim lapse now, as if its worker had frozen past LOCK_DURATION_MS. */
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
    expect((await claim(fair))?.job.userId).toBe('heavy');
    await add('light');
    await takeIn(fair);
    expect((await claim(fair))?.job.userId).toBe('light');
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
    expect((await claim(fair))?.job.userId).toBe('heavy');
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
    const claimed = (await claimAll(fair)).find((c) => c.job.userId === 'alice')!;
    expect(claimed.job).toMatchObject({
      fid: `${job.timestamp}-${job.id}`,
      id: String(job.id),
      userId: 'alice',
      data: job.data,
      createdAt: job.timestamp,
      attempts: 3,
      attemptsMade: 0,
      backoff: { type: 'fixed', delay: 50 },
      lane: 'line',
      hasCheckpoint: false,
      stalledOut: false,
    });
  });

  it('data without an Id that can name a line goes to the answers: a worker fails it there, whatever the pace', async () => {
    const fair = fairQueue({ paced: true });
    await redis.hset(`${prefix}fq:pace`, 'tat', Date.now() + 3_600_000);
    await bull.add('not an object');
    await add(42);
    expect(await fair.intake(null, 100)).toMatchObject({ lined: 0, answers: 2 });
    const claimed = await claimAll(fair);
    expect(claimed.map((c) => [c.job.userId, c.job.lane])).toEqual([
      ['', 'answers'],
      ['', 'answers'],
    ]);
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
    await uncapped.end(a.job.userId === 'alice' ? a : b, completed);
    expect(await redis.hget(`${prefix}fq:running`, 'alice')).toBeNull();
    expect((await claim(capped))?.job.userId).toBe('alice');
  });
});

describe("Bull's order within a user's line", () => {
  it('jobs taken in together keep the order Bull gives them', async () => {
    // Bull pushes lifo jobs to the end it reads from (newest first), and a prioritized job added after them to that
    // end too; plain jobs come last, oldest first. (order.e2e.test.ts compares with a plain Bull worker.)
    const together = fairQueue();
    const lifo = [];
    for (let i = 0; i < 4; i++) lifo.push(await add('alice', { lifo: true }));
    const plain = await add('alice');
    const low = await add('alice', { priority: 5 });
    const high = await add('alice', { priority: 1 });
    await takeIn(together);
    const expected = [high, low, ...lifo.reverse(), plain].map((j) => String(j.id));
    expect((await claimAll(together)).map((c) => c.job.id)).toEqual(expected);
  });

  it('a lifo job taken in later goes before lifo jobs still waiting, a plain one after the plain ones', async () => {
    const fair = fairQueue();
    const early = await add('alice', { lifo: true });
    const plainEarly = await add('alice');
    await takeIn(fair);
    const late = await add('alice', { lifo: true });
    const plainLate = await add('alice');
    await takeIn(fair);
    expect((await claimAll(fair)).map((c) => c.job.id)).toEqual([late, early, plainEarly, plainLate].map((j) => String(j.id)));
  });
});

describe('one round trip between jobs', () => {
  it('ending a job can claim the next one, fairly, in the same call', async () => {
    const fair = fairQueue();
    await add('alice');
    await add('bob');
    await takeIn(fair);
    const first = (await claim(fair))!;
    const nextToken = token();
    const { ended, next } = await fair.end(first, completed, true, { token: nextToken, answers: true });
    expect(ended).toBe(true);
    expect(next?.job?.userId).toBe(first.job.userId === 'alice' ? 'bob' : 'alice');
    expect((await fair.end({ token: nextToken, job: next!.job! }, completed, true, { token: token(), answers: true })).next).toEqual({ retryInMs: null });
  });
});

describe('the pace', () => {
  it('a job that never asks the image API gives its promised slot back at once', async () => {
    // A promise far longer than the calls: a slow machine cannot see it run out between them.
    const fair = fairQueue({ paced: true, promiseMs: 60_000 });
    await add('alice');
    await add('bob');
    await takeIn(fair);
    const first = (await claim(fair))!;
    // Claimed for the next free slot: others wait for it to take the slot...
    expect((await fair.claim(token())).retryInMs).toBeGreaterThan(0);
    // ...unless it ends without asking (a bad token, bad data): then the slot is free again.
    await fair.end(first, { how: 'failed', code: 'SESSION_EXPIRED', shared: false }, false);
    expect((await claim(fair))?.job.userId).toBe('bob');
  });

  it('work that needs no image request is claimed while the fleet waits for the pace', async () => {
    const fair = fairQueue({ paced: true });
    await add('alice');
    const bad = await add('bob');
    await takeIn(fair);
    // A 429 told the fleet to wait a minute.
    await redis.hset(`${prefix}fq:pace`, 'tat', Date.now() + 60_000);
    expect((await fair.claim(token())).retryInMs).toBeGreaterThan(50_000);
    // Vetting found bob's token refused: his job needs no request, and is claimed now.
    expect(await fair.expedite([`${bad.timestamp}-${bad.id}`])).toBe(1);
    const claimed = (await claim(fair))!;
    expect(claimed.job).toMatchObject({ id: String(bad.id), lane: 'answers' });
    expect((await fair.claim(token())).retryInMs).toBeGreaterThan(50_000);
  });
});

describe('claims and fencing', () => {
  it('a lapsed claim is taken back: the job goes back where it was and the stale holder can no longer touch it', async () => {
    const fair = fairQueue({ userConcurrency: 1 });
    await add('alice');
    await add('alice');
    await takeIn(fair);
    const stale = (await claim(fair))!;
    await lapseLeases();
    expect(await fair.reap({ maxStalls: 1, presence: 'off', graceMs: 5000, worker: 'w1' })).toEqual({ requeued: 1, stalledOut: 0, promoted: 0, suspects: 0 });
    const fresh = (await claim(fair))!;
    expect(fresh.job.fid).toBe(stale.job.fid);
    expect(fresh.token).not.toBe(stale.token);
    // Nothing the stale holder does changes what the new holder owns.
    expect((await fair.renew([stale])).lost).toEqual([stale.token]);
    expect(await fair.holdBack(stale, 'GENERATION_FAILED')).toEqual({ tell: false, lost: true });
    expect((await fair.end(stale, { how: 'back' })).ended).toBe(false);
    expect((await fair.end(stale, { how: 'retry', delayMs: 0 })).ended).toBe(false);
    expect((await fair.end(stale, completed)).ended).toBe(false);
    expect(await redis.zrange(`${prefix}fq:claims`, 0, -1)).toEqual([`${fresh.token}|${fresh.job.fid}`]);
    // The cap stays exact: alice's second job waits until the new holder ends.
    expect(await claim(fair)).toBeUndefined();
    expect((await fair.end(fresh, completed)).ended).toBe(true);
    expect((await claim(fair))?.job.userId).toBe('alice');
  });

  it('a claim rolled back by a failover is never handed out again: the next claim has a new token', async () => {
    // A failover that lost the last writes: the claim script's writes are rolled back (DUMP before, RESTORE after).
    const fair = fairQueue();
    await add('alice');
    await takeIn(fair);
    const fid = (await redis.keys(`${prefix}fq:job:*`))[0].slice(`${prefix}fq:job:`.length);
    const keys = [`${prefix}fq:job:${fid}`, `${prefix}fq:q:alice`, `${prefix}fq:users`];
    const before = await Promise.all(keys.map((k) => redis.dumpBuffer(k)));
    const lost = (await claim(fair, 'wa'))!;
    await redis.del(...keys, `${prefix}fq:claims`);
    for (const [i, k] of keys.entries()) await redis.restore(k, 0, before[i]!);
    const next = (await claim(fair, 'wb'))!;
    expect(next.job.fid).toBe(lost.job.fid);
    expect(next.token).not.toBe(lost.token);
    // The holder of the rolled-back claim can do nothing: it renews nothing, ends nothing, tells nothing.
    expect((await fair.renew([lost])).lost).toEqual([lost.token]);
    expect(await fair.holdBack(lost, 'GENERATION_FAILED')).toEqual({ tell: false, lost: true });
    expect((await fair.end(lost, completed)).ended).toBe(false);
    expect((await fair.end(next, completed)).ended).toBe(true);
  });

  it('every claim of a worker that is gone is taken back after the grace, without waiting for its lease', async () => {
    const fair = fairQueue();
    await add('alice');
    await add('bob');
    await takeIn(fair);
    // Worker "gone" holds both; it has no subscription to its channel, so it looks gone.
    await claim(fair, 'gone');
    await claim(fair, 'gone');
    const reap = (): ReturnType<FairQueue['reap']> => fair.reap({ maxStalls: 1, presence: 'channel', graceMs: 60_000, worker: 'here' });
    expect(await reap()).toMatchObject({ requeued: 0, suspects: 1 });
    // The grace is over (its start is written back rather than waited for).
    await redis.hset(`${prefix}fq:suspects`, 'gone', 0);
    expect(await reap()).toMatchObject({ requeued: 2, suspects: 0 });
    expect(await redis.zcard(`${prefix}fq:claims`)).toBe(0);
  });

  it('a worker still subscribed to its channel keeps its claims, however long', async () => {
    const fair = fairQueue();
    await add('alice');
    await takeIn(fair);
    const subscriber = new Redis(redisOptionsFromUrl(redisUrl()));
    try {
      await subscriber.subscribe(fair.keys.workerChannel('alive'));
      await claim(fair, 'alive');
      await redis.hset(`${prefix}fq:suspects`, 'alive', 0);
      expect(await fair.reap({ maxStalls: 1, presence: 'channel', graceMs: 0, worker: 'here' })).toMatchObject({ requeued: 0, suspects: 0 });
      expect(await redis.zcard(`${prefix}fq:claims`)).toBe(1);
      expect(await redis.hlen(`${prefix}fq:suspects`)).toBe(0);
    } finally {
      subscriber.disconnect();
    }
  });

  it('renewing keeps a running job from being taken back and reports nothing lost', async () => {
    const fair = fairQueue({ leaseMs: 60_000 });
    await add('alice');
    await takeIn(fair);
    const claimed = (await claim(fair))!;
    expect((await fair.renew([claimed])).lost).toEqual([]);
    expect(await fair.reap({ maxStalls: 1, presence: 'off', graceMs: 0, worker: 'w0' })).toMatchObject({ requeued: 0, stalledOut: 0 });
  });

  it('past MAX_STALLED_COUNT a lapsed job comes back as a GENERATION_FAILED answer, claimed whatever the pace', async () => {
    const fair = fairQueue({ paced: true });
    await add('alice');
    await add('alice');
    await takeIn(fair);
    const claimed = (await claim(fair))!;
    await lapseLeases();
    await redis.hset(`${prefix}fq:pace`, 'tat', Date.now() + 60_000);
    expect(await fair.reap({ maxStalls: 0, presence: 'off', graceMs: 0, worker: 'w1' })).toMatchObject({ requeued: 0, stalledOut: 1 });
    expect((await claim(fair))?.job).toMatchObject({ fid: claimed.job.fid, answer: 'GENERATION_FAILED', stalledOut: true, lane: 'answers' });
  });

  it('a job taken back with a paid picture kept goes to the answers, to be delivered without the pace', async () => {
    const fair = fairQueue({ paced: true });
    await add('alice');
    await takeIn(fair);
    const claimed = (await claim(fair))!;
    expect(await fair.keepCheckpoint(claimed.job.fid, Buffer.from('picture'), 60)).toBe(true);
    await lapseLeases();
    await redis.hset(`${prefix}fq:pace`, 'tat', Date.now() + 60_000);
    expect(await fair.reap({ maxStalls: 5, presence: 'off', graceMs: 0, worker: 'w1' })).toMatchObject({ requeued: 1 });
    expect((await claim(fair))?.job).toMatchObject({ fid: claimed.job.fid, hasCheckpoint: true, lane: 'answers' });
  });

  it('a job handed back goes where it was in its line', async () => {
    const fair = fairQueue();
    const first = await add('alice');
    await add('alice');
    await takeIn(fair);
    const claimed = (await claim(fair))!;
    expect(claimed.job.id).toBe(String(first.id));
    expect((await fair.end(claimed, { how: 'back' })).ended).toBe(true);
    expect((await claim(fair))?.job.id).toBe(String(first.id));
  });

  it('a checkpoint is kept only while its job has not ended, and the end removes it', async () => {
    const fair = fairQueue();
    await add('alice');
    await takeIn(fair);
    const claimed = (await claim(fair))!;
    expect(await fair.keepCheckpoint(claimed.job.fid, Buffer.from('image'), 60)).toBe(true);
    await fair.end(claimed, completed);
    expect(await redis.exists(`${prefix}checkpoint:${claimed.job.fid}`)).toBe(0);
    expect(await fair.keepCheckpoint(claimed.job.fid, Buffer.from('image'), 60)).toBe(false);
    expect(await redis.exists(`${prefix}checkpoint:${claimed.job.fid}`)).toBe(0);
  });
});

describe('what Bull says', () => {
  it('a job stays active in Bull until it ends; then completed with its return value, and finished() resolves', async () => {
    const fair = fairQueue();
    const job = await add('alice', { removeOnComplete: false });
    await takeIn(fair);
    expect(await bull.getJobCounts()).toMatchObject({ waiting: 0, active: 1, completed: 0 });
    const finished = job.finished();
    await fair.end((await claim(fair))!, { how: 'completed', returnValue: { delivered: true } });
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
    for (const c of await claimAll(fair)) await fair.end(c, { how: 'failed', code: 'SESSION_EXPIRED', shared: false });
    await expect(finished).rejects.toThrow('SESSION_EXPIRED');
    expect((await bull.getJob(kept.id))?.failedReason).toBe('SESSION_EXPIRED');
    expect(await bull.getJob(removed.id)).toBeNull();
    expect(await bull.getJobCounts()).toMatchObject({ active: 0, failed: 1 });
  });

  it('a producer retry counts as an attempt in Bull and waits in the fair queue until due', async () => {
    const fair = fairQueue();
    const job = await add('alice', { attempts: 2 });
    await takeIn(fair);
    const claimed = (await claim(fair))!;
    await fair.end(claimed, { how: 'retry', delayMs: 60_000 });
    expect(await claim(fair)).toBeUndefined();
    expect(await fair.promote()).toBe(0);
    await redis.zadd(`${prefix}fq:retries`, 0, claimed.job.fid);
    expect(await fair.promote()).toBe(1);
    expect((await claim(fair))?.job).toMatchObject({ fid: claimed.job.fid, attemptsMade: 1 });
    expect((await bull.getJob(job.id))?.attemptsMade).toBe(1);
  });

  it('a re-added jobId after the first ended is a new job, and is run', async () => {
    const fair = fairQueue();
    await add('alice', { jobId: 'page-1', removeOnComplete: true });
    await takeIn(fair);
    await fair.end((await claim(fair))!, completed);
    await add('alice', { jobId: 'page-1', removeOnComplete: true });
    await takeIn(fair);
    expect((await claim(fair))?.job).toMatchObject({ id: 'page-1', hasCheckpoint: false });
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

  it('holds each job with a lock that lapses unless a worker keeps it', async () => {
    const fair = fairQueue({ lockMs: 30_000 });
    const job = await add('alice', { removeOnComplete: false });
    await takeIn(fair);
    const lock = `${prefix}${job.id}:lock`;
    expect(await redis.get(lock)).toBe(`fair-queue:${job.timestamp}-${job.id}`);
    expect(await redis.pttl(lock)).toBeGreaterThan(0);
  });
});

describe('nothing stranded', () => {
  it('a job Bull holds but the fair queue lost (its keys deleted) is taken in again by the sweep, once no run can hold it', async () => {
    const fair = fairQueue();
    for (let i = 0; i < 3; i++) await add(`user${i}`);
    await takeIn(fair);
    const running = (await claim(fair))!;
    // An operator's DEL of every fair-queue key but the claims.
    const fqKeys = await redis.keys(`${prefix}fq:*`);
    await redis.del(...fqKeys.filter((k) => !k.endsWith('fq:claims')));
    expect(await claim(fair)).toBeUndefined();
    // The job still running is described again at once; the two others wait half a lease: a run might hold them.
    const sweep = (): ReturnType<FairQueue['sweep']> => fair.sweep({ worker: 'w0', roundMs: 60_000, presence: 'off' });
    expect(await sweep()).toEqual({ looked: 3, taken: 1, relinked: 0 });
    expect(await claim(fair)).toBeUndefined();
    for (const fid of await redis.hkeys(`${prefix}fq:unknown`)) await redis.hset(`${prefix}fq:unknown`, fid, 0);
    expect(await sweep()).toEqual({ looked: 3, taken: 2, relinked: 0 });
    const claimed = await claimAll(fair);
    expect(claimed.map((c) => c.job.userId).sort()).toEqual(['user0', 'user1', 'user2'].filter((u) => u !== running.job.userId));
    expect((await fair.end(running, completed)).ended).toBe(true);
    // Nothing is taken in twice.
    expect(await sweep()).toMatchObject({ taken: 0 });
  });

  it('a run whose job the fair queue lost altogether still ends it in Bull, and the sweep leaves it be', async () => {
    const fair = fairQueue();
    const job = await add('alice', { removeOnComplete: false });
    await takeIn(fair);
    const running = (await claim(fair))!;
    await redis.del(...(await redis.keys(`${prefix}fq:*`)));
    const finished = job.finished();
    expect((await fair.end(running, { how: 'completed', returnValue: { delivered: true } })).ended).toBe(true);
    await expect(finished).resolves.toEqual({ delivered: true });
    expect(await fair.sweep({ worker: 'w0', roundMs: 60_000, presence: 'off' })).toEqual({ looked: 0, taken: 0, relinked: 0 });
  });

  it("a claim whose member was lost stays its holder's: renewed, ended, never run twice", async () => {
    const fair = fairQueue();
    await add('alice');
    await takeIn(fair);
    const running = (await claim(fair))!;
    await redis.del(`${prefix}fq:claims`);
    expect((await fair.renew([running])).lost).toEqual([]);
    expect(await redis.zcard(`${prefix}fq:claims`)).toBe(1);
    expect((await fair.end(running, completed)).ended).toBe(true);
  });

  it('a job in no place the fair queue knows (fq:users lost) is put back in its line', async () => {
    const fair = fairQueue();
    await add('alice');
    await add('bob');
    await takeIn(fair);
    await redis.del(`${prefix}fq:users`);
    expect(await claim(fair)).toBeUndefined();
    expect(await fair.sweep({ worker: 'w0', roundMs: 60_000, presence: 'off' })).toMatchObject({ relinked: 2 });
    expect(users(await claimAll(fair)).sort()).toEqual(['alice', 'bob']);
  });

  it('a job read from Bull by a worker that died before taking it in is taken in by the sweep', async () => {
    const fair = fairQueue();
    const job = await add('alice');
    await redis.rpoplpush(`${prefix}wait`, `${prefix}active`);
    expect(await fair.sweep({ worker: 'w0', roundMs: 60_000, presence: 'off' })).toMatchObject({ taken: 1 });
    expect((await claim(fair))?.job.id).toBe(String(job.id));
  });

  it("one worker sweeps per round, and keeps every held job's lock", async () => {
    const fair = fairQueue({ lockMs: 30_000 });
    const job = await add('alice');
    await takeIn(fair);
    const lock = `${prefix}${job.id}:lock`;
    await redis.pexpire(lock, 1000);
    expect(await fair.sweep({ worker: 'w0', roundMs: 60_000, presence: 'off' })).toMatchObject({ looked: 1 });
    expect(await redis.pttl(lock)).toBeGreaterThan(1000);
    expect(await fair.sweep({ worker: 'w1', roundMs: 60_000, presence: 'off' })).toBeNull();
  });
});

describe('repairs keep the counts and the places right', () => {
  const sweep = (fair: FairQueue): ReturnType<FairQueue['sweep']> => fair.sweep({ worker: 'w0', roundMs: 60_000, presence: 'off' });
  const graceOver = async (): Promise<void> => {
    for (const fid of await redis.hkeys(`${prefix}fq:unknown`)) await redis.hset(`${prefix}fq:unknown`, fid, 0);
  };

  it("a running job's record lost and taken in again still gives USER_CONCURRENCY's count back at its end", async () => {
    const fair = fairQueue({ userConcurrency: 1 });
    await add('alice');
    await takeIn(fair);
    const running = (await claim(fair))!;
    await redis.del(`${prefix}fq:job:${running.job.fid}`);
    await sweep(fair);
    expect((await fair.end(running, completed)).ended).toBe(true);
    expect(await redis.hget(`${prefix}fq:running`, 'alice')).toBeNull();
    await add('alice');
    await takeIn(fair);
    expect(await claim(fair)).toBeDefined();
  });

  it("a dead worker's claim whose member was lost comes back claimable, its count given back", async () => {
    const fair = fairQueue({ userConcurrency: 1 });
    await add('alice');
    await takeIn(fair);
    await claim(fair, 'dead');
    await redis.del(`${prefix}fq:claims`);
    await sweep(fair);
    await graceOver();
    await sweep(fair);
    const again = (await claim(fair))!;
    expect(again).toBeDefined();
    await fair.end(again, completed);
    expect(await redis.hget(`${prefix}fq:running`, 'alice')).toBeNull();
  });

  it('a held answer whose record was lost and taken in again is not also promoted: one run', async () => {
    const fair = fairQueue();
    await add('alice', {}, { Prompt: 'same', Number: 1 });
    await takeIn(fair);
    await fair.end((await claim(fair))!, { how: 'failed', code: 'CONTENT_REJECTED', shared: true });
    await add('alice', {}, { Prompt: 'same', Number: 1 });
    await takeIn(fair);
    const again = (await claim(fair))!;
    expect(await fair.holdBack(again, 'CONTENT_REJECTED')).toMatchObject({ tell: false });
    await redis.del(`${prefix}fq:job:${again.job.fid}`);
    await sweep(fair);
    await graceOver();
    await sweep(fair);
    expect(await claim(fair)).toBeDefined();
    await redis.zadd(`${prefix}fq:held`, 0, again.job.fid);
    await fair.promote();
    expect(await claim(fair)).toBeUndefined();
  });

  it('answers handed back or taken back stay answers: claimed whatever the pace', async () => {
    const fair = fairQueue({ paced: true });
    await redis.hset(`${prefix}fq:pace`, 'tat', Date.now() + 3_600_000);
    await bull.add('not an object');
    const bad = await add('alice', {}, { Token: 'bad' });
    await takeIn(fair);
    await fair.expedite([`${bad.timestamp}-${bad.id}`]);
    const a = (await claim(fair))!;
    const b = (await claim(fair))!;
    await fair.end(a, { how: 'back' });
    await redis.zadd(`${prefix}fq:claims`, 0, `${b.token}|${b.job.fid}`);
    await fair.reap({ maxStalls: 5, presence: 'off', graceMs: 5000, worker: 'w9' });
    expect((await claim(fair))?.job.lane).toBe('answers');
    expect((await claim(fair))?.job.lane).toBe('answers');
    expect(await redis.zrange(`${prefix}fq:users`, 0, -1)).toEqual([]);
  });

  it('a run handed back while it told a failure comes back as that answer', async () => {
    const fair = fairQueue({ paced: true });
    await add('alice');
    await takeIn(fair);
    const told = (await claim(fair))!;
    await redis.hset(`${prefix}fq:pace`, 'tat', Date.now() + 3_600_000);
    await fair.end(told, { how: 'back', answer: 'SESSION_EXPIRED' });
    expect((await claim(fair))?.job).toMatchObject({ answer: 'SESSION_EXPIRED', lane: 'answers' });
  });

  it('the jobs that joined a leader whose claims kept lapsing run on their own', async () => {
    const fair = fairQueue();
    await add('alice', {}, { Prompt: 'same', Number: 1 });
    await takeIn(fair);
    const lead = (await claim(fair))!;
    await add('alice', {}, { Prompt: 'same', Number: 1 });
    expect((await fair.intake(null, 100)).joined).toBe(1);
    await redis.zadd(`${prefix}fq:claims`, 0, `${lead.token}|${lead.job.fid}`);
    await fair.reap({ maxStalls: 0, presence: 'off', graceMs: 5000, worker: 'w9' });
    const answer = (await claim(fair))!;
    expect(answer.job.stalledOut).toBe(true);
    expect(await fair.end(answer, { how: 'failed', code: 'GENERATION_FAILED', shared: true })).toEqual({ ended: true, joined: [] });
    expect((await claim(fair))?.job.lane).toBe('line');
  });

  it('a claim of this worker it never learned of (a reply lost, the command sent again) is given back, without a stall', async () => {
    const fair = fairQueue();
    await add('alice');
    await add('bob');
    await takeIn(fair);
    const orphan = token('w1');
    await fair.claim(orphan);
    const known = (await claim(fair, 'w1'))!;
    const elsewhere = (await fair.claim(token('w2'))).job;
    expect(elsewhere).toBeUndefined();
    expect(await fair.giveBackOrphans('w1', { running: [known], pending: [] })).toBe(1);
    const again = (await claim(fair))!;
    expect(again).toBeDefined();
    expect(await redis.hget(`${prefix}fq:job:${again.job.fid}`, 'stalls')).toBeNull();
    expect((await fair.renew([known])).lost).toEqual([]);
  });
});

describe('a new epoch: jobs a plain Bull worker may have run meanwhile', () => {
  it('a job taken in before the epoch is checked when claimed; within one it is not', async () => {
    const fair = fairQueue({ lockMs: 30_000 });
    const first = await fair.learnEpoch();
    const job = await add('alice', { removeOnComplete: false });
    await takeIn(fair);
    // No worker kept the locks for their life (the mark lapsed): a new epoch.
    await redis.del(`${prefix}fq:kept`, `${prefix}${job.id}:lock`);
    await redis.hset(`${prefix}${job.id}`, 'finishedOn', Date.now());
    const restarted = fairQueue({ lockMs: 30_000 });
    expect(await restarted.learnEpoch()).toBeGreaterThan(first);
    expect(await claim(restarted)).toBeUndefined();
    expect(await redis.exists(`${prefix}fq:job:${job.timestamp}-${job.id}`)).toBe(0);
    // Within an epoch the claim trusts the lock the fleet kept.
    const other = await add('bob');
    await takeIn(restarted);
    await redis.del(`${prefix}${other.id}:lock`);
    expect((await claim(restarted))?.job.id).toBe(String(other.id));
  });

  it('the epoch never goes back: with fq:stats lost, a job a plain worker finished after a roll-back is not claimed again', async () => {
    const fair = fairQueue({ lockMs: 30_000 });
    await fair.learnEpoch();
    // An operator clears the fair queue's counters; the fleet goes on with the epoch it knows.
    await redis.del(`${prefix}fq:stats`);
    const job = await add('alice', { removeOnComplete: false });
    await takeIn(fair);
    // Roll-back: the locks lapse and a plain Bull worker completes the job. Roll-forward.
    await redis.del(`${prefix}fq:kept`, `${prefix}${job.id}:lock`);
    await redis.hset(`${prefix}${job.id}`, 'finishedOn', Date.now());
    const restarted = fairQueue({ lockMs: 30_000 });
    await restarted.learnEpoch();
    expect(await claim(restarted)).toBeUndefined();
  });

  it('a job Bull moved back to its wait list is not claimed from the fair queue: the intake takes it in, and it runs once', async () => {
    const fair = fairQueue({ lockMs: 30_000 });
    await fair.learnEpoch();
    const job = await add('alice', { removeOnComplete: false });
    await takeIn(fair);
    // Roll-back: the lock lapsed and a plain worker's stalled check moved the job back to Bull's wait list.
    await redis.del(`${prefix}fq:kept`, `${prefix}${job.id}:lock`);
    await redis.lrem(`${prefix}active`, 0, String(job.id));
    await redis.lpush(`${prefix}wait`, String(job.id));
    const restarted = fairQueue({ lockMs: 30_000 });
    await restarted.learnEpoch();
    expect(await claim(restarted)).toBeUndefined();
    expect(await redis.lrange(`${prefix}wait`, 0, -1)).toEqual([String(job.id)]);
    // The intake takes it in again, as a job of the new epoch: claimed once, and ended once.
    await takeIn(restarted);
    const again = (await claim(restarted))!;
    expect(again.job.id).toBe(String(job.id));
    expect((await restarted.end(again, { how: 'completed', returnValue: { delivered: true } })).ended).toBe(true);
    expect(await claim(restarted)).toBeUndefined();
    expect(await job.getState()).toBe('completed');
  });
});

describe('one request, one picture; a loop is answered slower', () => {
  it('an ask for the same user, page and prompt as one waiting joins it: one run, both finished in Bull', async () => {
    const fair = fairQueue();
    const first = await bull.add({ Id: 'alice', Prompt: 'a fox', Token: 't', Number: 1 }, { removeOnComplete: false });
    const again = await bull.add({ Id: 'alice', Prompt: 'a fox', Token: 't2', Number: 1 }, { removeOnComplete: false });
    const other = await bull.add({ Id: 'alice', Prompt: 'a fox', Token: 't', Number: 2 });
    expect(await fair.intake(null, 100)).toMatchObject({ lined: 2, joined: 1 });
    const claimed = await claimAll(fair);
    expect(claimed.map((c) => c.job.id)).toEqual([String(first.id), String(other.id)]);
    const joinedDone = again.finished();
    expect(await fair.end(claimed[0], { how: 'completed', returnValue: { delivered: true } })).toEqual({ ended: true, joined: [String(again.id)] });
    await expect(joinedDone).resolves.toEqual({ delivered: true });
    expect((await fair.counts()).fair.joined).toBe(0);
    // Once the first has ended, the same ask is a new job.
    await bull.add({ Id: 'alice', Prompt: 'a fox', Token: 't3', Number: 1 });
    expect(await fair.intake(null, 100)).toMatchObject({ lined: 1, joined: 0 });
  });

  it("a failure of the leader's own (its token, its data) does not pass to the jobs that joined it: they run on their own", async () => {
    const fair = fairQueue();
    const leader = await bull.add({ Id: 'alice', Prompt: 'a fox', Token: 'expired', Number: 1 });
    const fresh = await bull.add({ Id: 'alice', Prompt: 'a fox', Token: 'fresh', Number: 1 }, { removeOnComplete: false });
    expect(await fair.intake(null, 100)).toMatchObject({ lined: 1, joined: 1 });
    const claimed = (await claim(fair))!;
    expect(claimed.job.id).toBe(String(leader.id));
    expect(await fair.end(claimed, { how: 'failed', code: 'SESSION_EXPIRED', shared: false })).toEqual({ ended: true, joined: [] });
    const next = (await claim(fair))!;
    expect(next.job).toMatchObject({ id: String(fresh.id), data: { Token: 'fresh' } });
    await fair.end(next, { how: 'completed', returnValue: { delivered: true } });
    expect(await (await bull.getJob(fresh.id))?.finished()).toEqual({ delivered: true });
  });

  it('a failure of the ask (moderation) ends the jobs that joined it with it', async () => {
    const fair = fairQueue();
    await bull.add({ Id: 'alice', Prompt: 'refused', Token: 't', Number: 1 });
    const joined = await bull.add({ Id: 'alice', Prompt: 'refused', Token: 't2', Number: 1 });
    await fair.intake(null, 100);
    const failed = joined.finished();
    expect(await fair.end((await claim(fair))!, { how: 'failed', code: 'CONTENT_REJECTED', shared: true })).toEqual({
      ended: true,
      joined: [String(joined.id)],
    });
    await expect(failed).rejects.toThrow('CONTENT_REJECTED');
  });

  it('an ask does not join a job waiting out a retry or an answer held back: it runs on its own', async () => {
    const fair = fairQueue();
    await bull.add({ Id: 'alice', Prompt: 'a fox', Token: 't', Number: 1 }, { attempts: 2 });
    await fair.intake(null, 100);
    await fair.end((await claim(fair))!, { how: 'retry', delayMs: 60_000 });
    await bull.add({ Id: 'alice', Prompt: 'a fox', Token: 't2', Number: 1 });
    expect(await fair.intake(null, 100)).toMatchObject({ lined: 1, joined: 0 });
    expect((await claim(fair))?.job.data).toMatchObject({ Token: 't2' });
  });

  it('a failure told for an ask a moment ago is held back, 2 s then doubling, and comes back as an answer', async () => {
    const fair = fairQueue();
    await bull.add({ Id: 'alice', Prompt: ' ', Token: 't', Number: 3 });
    await takeIn(fair);
    const first = (await claim(fair))!;
    expect(await fair.holdBack(first, 'INVALID_JOB')).toEqual({ tell: true });
    await fair.end(first, { how: 'failed', code: 'INVALID_JOB', shared: false });

    await bull.add({ Id: 'alice', Prompt: ' ', Token: 't', Number: 3 });
    await takeIn(fair);
    const repeat = (await claim(fair))!;
    expect(await fair.holdBack(repeat, 'INVALID_JOB')).toEqual({ tell: false, heldMs: 2000 });
    expect((await fair.counts()).fair.heldBack).toBe(1);
    expect(await claim(fair)).toBeUndefined();
    await redis.zadd(`${prefix}fq:held`, 0, repeat.job.fid);
    expect(await fair.promote()).toBe(1);
    const answer = (await claim(fair))!;
    expect(answer.job).toMatchObject({ fid: repeat.job.fid, answer: 'INVALID_JOB', heldMs: 2000, stalledOut: false, lane: 'answers' });
    await fair.end(answer, { how: 'failed', code: 'INVALID_JOB', shared: false });

    await bull.add({ Id: 'alice', Prompt: ' ', Token: 't', Number: 3 });
    await takeIn(fair);
    expect(await fair.holdBack((await claim(fair))!, 'INVALID_JOB')).toEqual({ tell: false, heldMs: 4000 });
    // Another page of the same user, or the same page of another story (another prompt), is answered at once.
    await bull.add({ Id: 'alice', Prompt: ' ', Token: 't', Number: 4 });
    await bull.add({ Id: 'alice', Prompt: 'another story', Token: 't', Number: 3 });
    await takeIn(fair);
    expect(await fair.holdBack((await claim(fair))!, 'INVALID_JOB')).toEqual({ tell: true });
    expect(await fair.holdBack((await claim(fair))!, 'INVALID_JOB')).toEqual({ tell: true });
  });

  it('counts are kept without walking the users', async () => {
    const fair = fairQueue();
    for (let i = 0; i < 3; i++) await add(`user${i}`);
    await add('user0', {}, { Prompt: 'page 1', Number: 1 });
    await takeIn(fair);
    await claim(fair);
    expect(await fair.counts()).toEqual({
      bull: { waiting: 0, active: 4, completed: 0, failed: 0, delayed: 0, paused: 0 },
      fair: { usersWaiting: 2, waiting: 3, running: 1, retrying: 0, heldBack: 0, answers: 0, joined: 0, heldBackTotal: 0 },
    });
    expect((await fair.counts()).bull).toEqual(await bull.getJobCounts());
  });
});
