import Bull from 'bull';
import Redis, { RedisOptions } from 'ioredis';
import { InvalidJobError } from '../src/pipeline/steps/jobData';
import { DEFAULT_QUEUE_PREFIX, loadConfig } from '../src/config';
import {
  createImageQueue,
  DEFAULT_QUEUE_NAME,
  DEFAULT_REDIS_URL,
  enqueueImageJob,
  ImageJobData,
  ImageQueueOptions,
  PRODUCER_DEFAULTS,
  PRODUCER_PREFIX,
} from '../src/producer';
import { redisOptionsFromUrl } from '../src/redis/connections';
import { redisUrl, signToken, uniqueQueueName } from './support/helpers';

describe('enqueueImageJob against real Redis', () => {
  let queueName: string;
  let queue: Bull.Queue;
  let redis: Redis;

  beforeEach(() => {
    queueName = uniqueQueueName('producer');
    queue = createImageQueue(redisUrl(), queueName);
    redis = new Redis(redisOptionsFromUrl(redisUrl()));
  });

  afterEach(async () => {
    await queue.obliterate({ force: true }).catch(() => undefined);
    await queue.close();
    const leftovers = await redis.keys(`bull:${queueName}:*`);
    if (leftovers.length) await redis.del(...leftovers);
    redis.disconnect();
  });

  // One token for the whole file: a token signed again in another second has another `iat`, so data built twice
  // would not compare equal.
  const TOKEN = signToken('alice');
  const valid = (): ImageJobData => ({ Id: 'alice', Prompt: 'A lighthouse at dawn', Token: TOKEN, Number: 2 });

  it('adds the job with the front end options, where the worker looks for it', async () => {
    const job = await enqueueImageJob(queue, valid());

    expect(job.opts).toMatchObject({ attempts: 1, removeOnComplete: true, removeOnFail: true });
    // Read back through a queue built the way the worker builds its own.
    const workerSide = new Bull(queueName, { prefix: DEFAULT_QUEUE_PREFIX, redis: redisOptionsFromUrl(redisUrl()) });
    try {
      const stored = await workerSide.getJob(job.id);
      expect(stored?.data).toEqual(valid());
      expect(stored?.opts).toMatchObject(PRODUCER_DEFAULTS);
      expect(await workerSide.getWaitingCount()).toBe(1);
    } finally {
      await workerSide.close();
    }
    expect(PRODUCER_PREFIX).toBe(DEFAULT_QUEUE_PREFIX);
  });

  it('lays the caller options over the defaults', async () => {
    const job = await enqueueImageJob(queue, valid(), { attempts: 3, backoff: 5000, removeOnFail: false });

    const stored = await queue.getJob(job.id);
    expect(stored?.opts).toMatchObject({ attempts: 3, backoff: { type: 'fixed', delay: 5000 }, removeOnComplete: true, removeOnFail: false });
  });

  it('keeps Number as given, and leaves it out when not given', async () => {
    const { Number: _number, ...withoutNumber } = valid();
    const first = await enqueueImageJob(queue, withoutNumber);
    const second = await enqueueImageJob(queue, { ...withoutNumber, Number: 'slot-3' });

    expect((await queue.getJob(first.id))?.data).not.toHaveProperty('Number');
    expect((await queue.getJob(second.id))?.data.Number).toBe('slot-3');
  });

  it.each([
    ['a missing Token', { Id: 'alice', Prompt: 'A fox' }, /Token must be a string/],
    ['a blank Prompt', { Id: 'alice', Prompt: ' \n\t ', Token: 't' }, /Prompt must not be blank/],
    ['a blank Id', { Id: '  ', Prompt: 'A fox', Token: 't' }, /Id must be a non-empty string/],
    ['an Id over 128 characters', { Id: 'x'.repeat(129), Prompt: 'A fox', Token: 't' }, /Id must be .* at most 128/],
    ['an object as Number', { Id: 'alice', Prompt: 'A fox', Token: 't', Number: { slot: 1 } }, /Number must be a string, number, boolean or null/],
    ['data that is not an object', null, /Job data must be an object/],
  ])('refuses %s before anything is written to Redis', async (_label, data, message) => {
    const attempt = enqueueImageJob(queue, data as unknown as ImageJobData);

    await expect(attempt).rejects.toThrow(InvalidJobError);
    await expect(attempt).rejects.toMatchObject({ code: 'INVALID_JOB', message: expect.stringMatching(message) });
    expect(await queue.getJobCounts()).toMatchObject({ waiting: 0, delayed: 0 });
    // Not even the job id counter: the queue was never touched.
    expect(await redis.keys(`bull:${queueName}:*`)).toEqual([]);
  });
});

describe('createImageQueue', () => {
  /**
   * Nothing listens on port 1: only the connection options are looked at. Without reconnecting, the refused
   * connection ends by itself, and the queue closes without waiting on it.
   */
  async function inspect(url: string, opts: ImageQueueOptions = {}): Promise<RedisOptions> {
    const noRetry = () => null;
    const queue = createImageQueue(url, 'options_check', { ...opts, redis: { retryStrategy: noRetry } });
    const ended = new Promise((resolve) => queue.client.once('end', resolve));
    try {
      expect(queue.client.options.retryStrategy).toBe(noRetry);
      expect(queue.toKey('wait')).toBe('bull:options_check:wait');
      return queue.client.options;
    } finally {
      await ended;
      await queue.close();
    }
  }

  it('turns TLS on for rediss:// and passes the certificate setting through', async () => {
    const options = await inspect('rediss://user:p%40ss@localhost:1/3', { tlsRejectUnauthorized: false });

    expect(options.tls).toEqual({ rejectUnauthorized: false, servername: 'localhost' });
    expect(options).toMatchObject({ host: 'localhost', port: 1, db: 3, username: 'user', password: 'p@ss' });
  });

  it('verifies certificates by default, and uses plain TCP for redis://', async () => {
    expect((await inspect('rediss://localhost:1')).tls).toEqual({ rejectUnauthorized: true, servername: 'localhost' });
    expect((await inspect('redis://localhost:1')).tls).toBeUndefined();
  });
});

describe('the producer and the worker agree', () => {
  it("defaults to the worker's own Redis and queue", () => {
    const worker = loadConfig({ IMAGE_PROVIDER: 'local', JWT_SECRET: 's', PORT_MESSAGES_USERS: '4001' });
    expect(DEFAULT_REDIS_URL).toBe(worker.redisUrl);
    expect(DEFAULT_QUEUE_NAME).toBe(worker.queueName);
  });

  it('sends the front end options: one attempt, finished jobs removed', () => {
    expect(PRODUCER_DEFAULTS).toEqual({ attempts: 1, removeOnComplete: true, removeOnFail: true });
  });
});
