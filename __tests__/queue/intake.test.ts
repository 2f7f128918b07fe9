import Bull from 'bull';
import Redis from 'ioredis';
import { FairQueue } from '../../src/queue/fairQueue';
import { BullIntake } from '../../src/queue/intake';
import { createLogger } from '../../src/base/logger';
import { redisOptionsFromUrl } from '../../src/redis/connections';
import { fidOf, redisUrl, uniqueQueueName, waitUntil, closeClient } from '../support/helpers';

/**
 * The intake against real Redis and a real Bull queue: a blocking read on Bull's wait list, and a stop that
 * neither waits the read out nor cuts it off with a job in hand.
 */
let redis: Redis;
let blocking: Redis;
let bull: Bull.Queue;
let fair: FairQueue;
let prefix: string;

beforeEach(async () => {
  redis = new Redis(redisOptionsFromUrl(redisUrl()));
  blocking = blockingClient(`intake-test-${Math.random()}`);
  const name = uniqueQueueName('intake');
  bull = new Bull(name, redisUrl());
  // Closed before its ready check has answered, a connection is closed twice (ioredis), which leaves a timer behind.
  await bull.isReady();
  prefix = `bull:${name}:`;
  fair = new FairQueue(redis, prefix, { leaseMs: 60_000, userConcurrency: 0, paced: false, promiseMs: 50, lockMs: 60_000 });
});

afterEach(async () => {
  await bull.close();
  await closeClient(blocking);
  const keys = await redis.keys(`${prefix}*`);
  if (keys.length) await redis.del(...keys);
  await closeClient(redis);
});

const silent = createLogger('silent');

/** A connection for the intake's blocking read, as the worker makes it (redis/connections.ts): no ready check. */
function blockingClient(name: string): Redis {
  return new Redis({ ...redisOptionsFromUrl(redisUrl()), connectionName: name, maxRetriesPerRequest: null, enableReadyCheck: false });
}

/** Whether the intake's connection is blocked in its read now (asked on another connection). */
async function blockedInRead(): Promise<boolean> {
  const name = blocking.options.connectionName!;
  const line = ((await redis.client('LIST')) as string).split('\n').find((l) => l.includes(` name=${name} `));
  return line !== undefined && / cmd=brpoplpush /.test(line);
}

it('stopping unblocks the read under way instead of waiting out its timeout', async () => {
  // A read that would block for a minute: this test's 10 s timeout fails it unless the stop cuts the read short.
  const intake = new BullIntake(fair, bull, blocking, redis, silent, undefined, 60);
  intake.start();
  await waitUntil(blockedInRead, 5000, 'the intake blocked in its read');
  await expect(intake.stop(60_000)).resolves.toBeUndefined();
}, 10_000);

it('a job added as the intake stops is taken in or left in Bull, never held by a read cut off', async () => {
  for (let round = 0; round < 10; round += 1) {
    const intake = new BullIntake(fair, bull, blocking, redis, silent);
    intake.start();
    if (round % 2 === 0) await waitUntil(blockedInRead, 5000, 'the intake blocked in its read');
    const job = await bull.add({ Id: 'alice', Prompt: `page ${round}`, Token: 't', Number: round });
    await intake.stop(10_000);

    const taken = (await redis.exists(fair.keys.job(fidOf(job)))) === 1;
    const inWait = (await redis.lrange(fair.keys.bullWait, 0, -1)).includes(String(job.id));
    const inActive = (await redis.lrange(fair.keys.bullActive, 0, -1)).includes(String(job.id));
    expect({ round, taken, inWait }).toEqual({ round, taken: !inWait, inWait });
    // In Bull's active list only once taken in (locked by the fair queue), never as a read's loose end.
    expect(inActive).toBe(taken);

    blocking = blockingClient(`intake-test-${round}`);
  }
});
