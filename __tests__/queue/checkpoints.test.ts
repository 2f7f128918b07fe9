import Redis from 'ioredis';
import { Checkpoints, encodeCheckpoint, parseCheckpoint } from '../../src/queue/checkpoints';
import { FairQueue } from '../../src/queue/fairQueue';
import type { FairJob } from '../../src/queue/replies';
import { redisOptionsFromUrl } from '../../src/redis/connections';
import type { GeneratedImage } from '../../src/pipeline/ports';
import { fakeFairJob } from '../support/fakes';
import { redisUrl, uniqueQueueName, closeClient } from '../support/helpers';

const FINGERPRINT = 'user-42:1700000000000';
const IMAGE: GeneratedImage = { base64: 'iVBORw0KGgoAAAANSUhEUg==', mimeType: 'image/png', revisedPrompt: 'a fox, "revised"\nwith a newline', costUsd: 0.07 };
const TTL_S = 3600;

let redis: Redis;
let prefix: string;
let fair: FairQueue;
let checkpoints: Checkpoints;

beforeEach(() => {
  redis = new Redis(redisOptionsFromUrl(redisUrl()));
  prefix = `bull:${uniqueQueueName('checkpoints')}:`;
  fair = new FairQueue(redis, prefix, { leaseMs: 60_000, userConcurrency: 0, paced: false, promiseMs: 50, lockMs: 60_000 });
  checkpoints = new Checkpoints(redis, fair, TTL_S);
});

afterEach(async () => {
  const keys = await redis.keys(`${prefix}*`);
  if (keys.length) await redis.del(...keys);
  await closeClient(redis);
});

/** A job record as the intake leaves it (only its existence matters to a checkpoint). */
async function job(fid: string, hasCheckpoint = true): Promise<FairJob> {
  await redis.hset(`${prefix}fq:job:${fid}`, 'uid', 'user-42');
  return fakeFairJob(fid, { userId: 'user-42', hasCheckpoint });
}

describe('Checkpoints', () => {
  it('returns what was saved when the fingerprint matches, under the queue prefix, with a TTL of at most CHECKPOINT_TTL_S', async () => {
    const store = checkpoints.forJob(await job('1-17'));
    await store.save(FINGERPRINT, IMAGE);
    expect(await store.load(FINGERPRINT)).toStrictEqual(IMAGE);
    const ttl = await redis.ttl(`${prefix}checkpoint:1-17`);
    expect(ttl).toBeGreaterThan(0);
    expect(ttl).toBeLessThanOrEqual(TTL_S);
  });

  it('returns null for another fingerprint (a reused job id) and for a job never saved', async () => {
    const store = checkpoints.forJob(await job('1-17'));
    await store.save(FINGERPRINT, IMAGE);
    expect(await store.load('user-42:1700000000001')).toBeNull();
    expect(await checkpoints.forJob(await job('1-18')).load(FINGERPRINT)).toBeNull();
  });

  it('keeps nothing for a job that has ended, marks the job that has one, and spares a job without one the read', async () => {
    const ended: FairJob = { ...(await job('1-19')), fid: '1-20' };
    await checkpoints.forJob(ended).save(FINGERPRINT, IMAGE);
    expect(await redis.exists(`${prefix}checkpoint:1-20`)).toBe(0);
    await checkpoints.forJob(await job('1-19')).save(FINGERPRINT, IMAGE);
    expect(await redis.hget(`${prefix}fq:job:1-19`, 'cp')).toBe('1');
    await redis.set(`${prefix}checkpoint:1-21`, encodeCheckpoint(FINGERPRINT, IMAGE));
    expect(await checkpoints.forJob(await job('1-21', false)).load(FINGERPRINT)).toBeNull();
    expect(await checkpoints.forJob(await job('1-21', true)).load(FINGERPRINT)).toStrictEqual(IMAGE);
  });
});

describe('the checkpoint format', () => {
  // In memory: a 1.5 MB reply through ioredis leaves its parser shrinking a buffer on a timer for about 2 s, which
  // outlives this file; Redis stores the value as it is given.
  it('round-trips a 1.5 MB image', () => {
    const big: GeneratedImage = { base64: Buffer.alloc(1_500_000, 7).toString('base64'), mimeType: 'image/jpeg' };
    expect(parseCheckpoint(encodeCheckpoint(FINGERPRINT, big), FINGERPRINT)).toStrictEqual(big);
  });

  it('keeps only what the image has: no revisedPrompt or cost stays absent, a cost of zero stays zero', () => {
    expect(parseCheckpoint(encodeCheckpoint(FINGERPRINT, { base64: 'aGk=', mimeType: 'image/png' }), FINGERPRINT)).toStrictEqual({
      base64: 'aGk=',
      mimeType: 'image/png',
    });
    expect(parseCheckpoint(encodeCheckpoint(FINGERPRINT, { base64: 'aGk=', mimeType: 'image/png', costUsd: 0 }), FINGERPRINT)?.costUsd).toBe(0);
  });

  it('reads a damaged value as no checkpoint, never as an image without a type or bytes', () => {
    for (const value of [
      'no newline',
      '{"f":"x"}\naGk=',
      `{"f":"${FINGERPRINT}"}\naGk=`,
      `{"f":"${FINGERPRINT}","m":"image/png"}\n`,
      'not json\naGk=',
      'null\naGk=',
    ]) {
      expect(parseCheckpoint(Buffer.from(value), FINGERPRINT)).toBeNull();
    }
    expect(parseCheckpoint(null, FINGERPRINT)).toBeNull();
  });
});
