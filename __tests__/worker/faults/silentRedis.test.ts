import Bull from 'bull';
import { RedisServer, startRedisServer } from '../../../src/demo/redisServer';
import { redisOptionsFromUrl } from '../../../src/redis/connections';
import { successAnswer } from '../../support/fakeXai';
import { isFinal, isImage, signToken, waitUntil } from '../../support/helpers';
import { TestSystem, useTestSystem } from '../../support/harness';
import { silenceRedis, untilSilent } from '../../support/silence';

/**
 * Redis falls silent (a long script, a failover, a slow AOF rewrite) for longer than a claim's lease while a request
 * is out. StoryBang runs one worker: the worker that could lose the claim is also the one that would take the job
 * back. It must learn which claims it still holds before any run pays or delivers: one answer, the picture.
 */
jest.setTimeout(40_000);

describe('Redis silent past the lease, mid-request, one worker', () => {
  let sys: TestSystem;
  useTestSystem('silent', (s) => (sys = s));
  let redis: RedisServer;
  let producer: Bull.Queue;
  beforeEach(async () => {
    redis = await startRedisServer();
    producer = new Bull(sys.queueName, { redis: redisOptionsFromUrl(redis.url) });
  });
  afterEach(async () => {
    await producer.close();
    await redis.stop();
  });

  it('one answer, the picture; Bull completed; at most two requests paid', async () => {
    const alice = await sys.user('alice');
    // A lease of 2 s, looked after every 500 ms: the 2.2 s of silence outlast it, whenever it was last renewed. (The
    // silence costs the test's Redis a core for its length: one page is the case.)
    await sys.startWorker({ REDIS_URL: redis.url, LOCK_DURATION_MS: '2000', STALLED_INTERVAL_MS: '500' });
    sys.xai.script([{ ...successAnswer(), delayMs: 1000 }]);
    const job = await producer.add(
      { Id: 'alice', Prompt: 'page 1', Token: signToken('alice'), Number: 1 },
      { attempts: 1, removeOnComplete: true, removeOnFail: true },
    );
    const finished = job.finished();
    await waitUntil(() => sys.xai.calls.length > 0, 10_000, 'the request out');
    const silence = silenceRedis(redis.url, 2.2);
    await untilSilent(redis.url);
    await silence;

    await expect(finished).resolves.toMatchObject({ delivered: true });
    await alice.waitFor((p) => p.Number === 1 && isFinal(p), 15_000);
    // Bull's word is given once the picture went out; a second picture or a failure would have come before it.
    expect(alice.finals()).toHaveLength(1);
    expect(isImage(alice.finals()[0])).toBe(true);
    expect(sys.xai.calls.length).toBeLessThanOrEqual(2);
    await waitUntil(() => sys.ends().filter((l) => l.outcome === 'completed').length === 1, 5000, 'the end recorded');
    expect(sys.ends().filter((l) => l.outcome === 'failed')).toEqual([]);
  });
});
