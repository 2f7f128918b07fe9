import Bull from 'bull';
import { freeFixedPort, startRedisServer, RedisServer } from '../../../src/demo/redisServer';
import { fidOf, isFinal, KEPT_LEASES, SHORT_LEASES, signToken, waitUntil } from '../../support/helpers';
import { TestSystem, useTestSystem } from '../../support/harness';
import { redisOptionsFromUrl } from '../../../src/redis/connections';

/**
 * Faults that need the worker as a real process. The notification service and Redis going away and coming back.
 */

jest.setTimeout(45_000);

describe('process faults: outages', () => {
  let sys: TestSystem;
  useTestSystem('procfaults', (s) => (sys = s));

  it('notification service down while the image is made, worker killed, both restarted: delivered, generated once', async () => {
    const port = await freeFixedPort();
    await sys.relay.close();
    const first = sys.spawnWorker({ ...SHORT_LEASES, PORT_MESSAGES_USERS: `http://127.0.0.1:${port}` });
    await first.ready;
    const job = await sys.enqueue({ Id: 'alice', Prompt: 'keep me', Token: signToken('alice'), Number: 1 });
    const checkpointKey = `bull:${sys.queueName}:checkpoint:${fidOf(job)}`;
    await waitUntil(async () => (await sys.redis.exists(checkpointKey)) === 1, 10_000, 'checkpoint saved');
    await sys.killWorker(first);

    await sys.restartRelay(port);
    const alice = await sys.user('alice');
    // The restarted worker runs in this process: only the one killed must be a process of its own.
    await sys.startWorker({ ...KEPT_LEASES, PORT_MESSAGES_USERS: `http://127.0.0.1:${port}` });
    expect(await alice.waitFor(isFinal, 15_000)).toMatchObject({ Status: true, Number: 1 });
    expect(sys.xai.calls).toHaveLength(1);
    await waitUntil(() => sys.ends().length > 0, 10_000, 'the restarted worker ended the job');
    expect(sys.ends()[0]).toMatchObject({ outcome: 'completed', fromCheckpoint: true });
    // Removed with the job's end, which is recorded before the job-end line.
    expect(await sys.redis.exists(checkpointKey)).toBe(0);
  });

  it('notification service down at start and up later: delivered exactly once', async () => {
    const port = await freeFixedPort();
    await sys.relay.close();
    const worker = sys.spawnWorker({ PORT_MESSAGES_USERS: `http://127.0.0.1:${port}` });
    await worker.ready;
    const job = await sys.enqueue({ Id: 'alice', Prompt: 'patience', Token: signToken('alice'), Number: 1 });
    // The image is made and kept while delivery waits for the service.
    await waitUntil(async () => (await sys.redis.exists(`bull:${sys.queueName}:checkpoint:${fidOf(job)}`)) === 1, 10_000, 'waiting delivery');

    await sys.restartRelay(port);
    await worker.waitForLog((l) => l.msg === 'job end', 15_000);
    // A later job's delivery on the same connection: any second copy of the first would have arrived before it.
    await sys.enqueue({ Id: 'alice', Prompt: 'barrier', Token: signToken('alice'), Number: 2 });
    await waitUntil(
      () => sys.relay.received.some((p) => isFinal(p as Record<string, unknown>) && (p as Record<string, unknown>).Number === 2),
      10_000,
      'barrier',
    );
    const finals = sys.relay.received.filter((p) => isFinal(p as Record<string, unknown>) && (p as Record<string, unknown>).Number === 1);
    expect(finals).toEqual([expect.objectContaining({ Id: 'alice_Grok_Image_Generator', Status: true, Number: 1 })]);
    expect(sys.xai.calls).toHaveLength(2);
  });

  describe('with a Redis of its own', () => {
    let redis: RedisServer;
    afterEach(async () => {
      await redis?.stop();
    });

    it('Redis restarted under a running worker: it reconnects and processes new jobs', async () => {
      redis = await startRedisServer(await freeFixedPort());
      const alice = await sys.user('alice');
      const worker = sys.spawnWorker({ REDIS_URL: redis.url });
      await worker.ready;
      const producer = new Bull(sys.queueName, { redis: redisOptionsFromUrl(redis.url) });
      producer.on('error', () => undefined);
      try {
        const add = (n: number): Promise<Bull.Job> =>
          producer.add({ Id: 'alice', Prompt: `job ${n}`, Token: signToken('alice'), Number: n }, { attempts: 1, removeOnComplete: true, removeOnFail: true });
        await add(1);
        await alice.waitFor((p) => p.Number === 1 && isFinal(p));

        const { port } = redis;
        await redis.stop();
        await new Promise((r) => setTimeout(r, 1000));
        redis = await startRedisServer(port);
        await add(2);
        expect(await alice.waitFor((p) => p.Number === 2 && isFinal(p), 20_000)).toMatchObject({ Status: true });
        expect(worker.child.exitCode).toBeNull();
        // Reconnecting is logged, not spun on: a handful of lines, not one per retry.
        expect(worker.logs.filter((l) => l.level === 'warn' || l.level === 'error').length).toBeLessThan(15);
      } finally {
        await producer.close();
      }
    });
  });
});
