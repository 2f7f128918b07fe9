import Bull from 'bull';
import { freeFixedPort, startRedisServer, RedisServer } from '../src/demo/redisServer';
import { successAnswer } from './support/fakeXai';
import { USER_MESSAGES } from '../src/errors';
import { fidOf, isFinal, signToken, TestSystem, WorkerProcess, useTestSystem, waitUntil } from './support/harness';
import { redisOptionsFromUrl } from '../src/redis';

/**
 * Faults that need the worker as a real process: signals, kill -9, the notification service and Redis
 * going away. Short leases make the fair queue's stalled-job recovery quick enough to watch.
 */
const FAST_RECOVERY = { LOCK_DURATION_MS: '2000', STALLED_INTERVAL_MS: '500' };

jest.setTimeout(45_000);


function jobEnds(proc: WorkerProcess): Array<Record<string, unknown>> {
  return proc.logs.filter((l) => l.msg === 'job end');
}

function indexOfLog(proc: WorkerProcess, predicate: (l: Record<string, unknown>) => boolean): number {
  return proc.logs.findIndex(predicate);
}

describe('process faults', () => {
  let sys: TestSystem;
  useTestSystem('procfaults', (s) => (sys = s));

  it('SIGTERM during a slow generation: the job is delivered, exit 0, and a job added after the signal is not lost', async () => {
    sys.xai.setDefault({ ...successAnswer(), delayMs: 1500 });
    const alice = await sys.user('alice');
    const worker = sys.spawnWorker();
    await worker.ready;
    await sys.enqueue({ Id: 'alice', Prompt: 'slow one', Token: signToken('alice'), Number: 1 });
    await waitUntil(() => sys.xai.calls.length === 1, 5000, 'generation started');

    worker.child.kill('SIGTERM');
    await worker.waitForLog((l) => l.msg === 'signal received');
    const late = await sys.enqueue({ Id: 'alice', Prompt: 'after the signal', Token: signToken('alice'), Number: 2 });

    expect(await worker.exited).toEqual({ code: 0, signal: null });
    // Emitted before the exit; the relay's hop to the browser may still be on its way.
    expect(await alice.waitFor((p) => p.Number === 1 && isFinal(p))).toMatchObject({ Status: true });
    expect(worker.logs.find((l) => l.msg === 'shutdown complete')).toMatchObject({ finishedInFlight: true });
    // The late job was finished before exit, or left for the next worker (in Bull, or in the fair queue), never dropped.
    const lateState = await (await sys.producer.getJob(late.id!))?.getState();
    const heldByFairQueue = (await sys.redis.exists(`bull:${sys.queueName}:fq:job:${fidOf(late)}`)) === 1;
    const deliveredBeforeExit = alice.finals().some((p) => p.Number === 2);
    expect(deliveredBeforeExit ? 'delivered' : heldByFairQueue ? 'fair queue' : lateState).toMatch(/^(delivered|waiting|fair queue)$/);

    const next = sys.spawnWorker();
    await next.ready;
    expect(await alice.waitFor((p) => p.Number === 2 && isFinal(p))).toMatchObject({ Status: true });
    expect(alice.finals().filter((p) => p.Number === 2)).toHaveLength(1);
  });

  it('shutdown out of time: the unfinished job is handed back at once and another worker delivers it', async () => {
    sys.xai.setDefault({ ...successAnswer(), delayMs: 4000 });
    const alice = await sys.user('alice');
    const worker = sys.spawnWorker({ SHUTDOWN_TIMEOUT_MS: '300' });
    await worker.ready;
    const job = await sys.enqueue({ Id: 'alice', Prompt: 'very slow', Token: signToken('alice'), Number: 1 });
    await waitUntil(() => sys.xai.calls.length === 1, 5000, 'generation started');

    worker.child.kill('SIGTERM');
    expect(await worker.exited).toEqual({ code: 0, signal: null });
    expect(jobEnds(worker)).toEqual([expect.objectContaining({ outcome: 'handed_back' })]);
    // The hand-back was awaited: recorded before the connections closed, first in its user's line, not running.
    expect(indexOfLog(worker, (l) => l.msg === 'job end')).toBeLessThan(indexOfLog(worker, (l) => l.msg === 'shutdown complete'));
    const fair = `bull:${sys.queueName}:fq:`;
    expect(jobEnds(worker)[0].jobId).toBe(String(job.id));
    expect(await sys.redis.zrange(`${fair}q:alice`, 0, -1)).toEqual([fidOf(job)]);
    expect(await sys.redis.zcard(`${fair}active`)).toBe(0);

    sys.xai.setDefault(successAnswer());
    // Default lock settings: only the hand-back, not stalled recovery, can make this quick.
    const next = sys.spawnWorker();
    await next.ready;
    expect(await alice.waitFor(isFinal, 8000)).toMatchObject({ Status: true, Number: 1 });
  });

  it('while shutdown waits for a running job its lease is still renewed: no other worker takes it over', async () => {
    sys.xai.setDefault({ ...successAnswer(), delayMs: 3000 });
    const alice = await sys.user('alice');
    const shortLeases = { LOCK_DURATION_MS: '1000', STALLED_INTERVAL_MS: '200' };
    const stopping = sys.spawnWorker(shortLeases);
    await stopping.ready;
    await sys.enqueue({ Id: 'alice', Prompt: 'long one', Token: signToken('alice'), Number: 1 });
    await waitUntil(() => sys.xai.calls.length === 1, 5000, 'generation started');
    const other = sys.spawnWorker(shortLeases);
    await other.ready;

    stopping.child.kill('SIGTERM');
    expect(await stopping.exited).toEqual({ code: 0, signal: null });
    expect(jobEnds(stopping)).toEqual([expect.objectContaining({ outcome: 'completed' })]);
    // The other worker reaps every 200 ms: a lease left to lapse (1 s) would have been taken and paid again.
    expect(sys.xai.calls).toHaveLength(1);
    expect(jobEnds(other)).toEqual([]);
    expect(alice.finals()).toEqual([expect.objectContaining({ Status: true, Number: 1 })]);
  });

  it('a second signal exits at once, non-zero, without waiting for the running job', async () => {
    sys.xai.setDefault({ ...successAnswer(), delayMs: 5000 });
    const worker = sys.spawnWorker();
    await worker.ready;
    await sys.enqueue({ Id: 'alice', Prompt: 'slow', Token: signToken('alice'), Number: 1 });
    await waitUntil(() => sys.xai.calls.length === 1, 5000, 'generation started');
    worker.child.kill('SIGTERM');
    await worker.waitForLog((l) => l.msg === 'signal received');
    worker.child.kill('SIGINT');
    expect(await worker.exited).toEqual({ code: 1, signal: null });
    expect(worker.logs.find((l) => l.level === 'fatal')).toMatchObject({ msg: 'second signal: exiting now', signal: 'SIGINT' });
    // Exited while the 5 s generation was still running: it never ended here.
    expect(jobEnds(worker)).toEqual([]);
    expect(worker.logs.some((l) => l.msg === 'shutdown complete')).toBe(false);
  });

  it('kill -9 during a slow generation: a second worker delivers the job', async () => {
    sys.xai.setDefault({ ...successAnswer(), delayMs: 1000 });
    const alice = await sys.user('alice');
    const first = sys.spawnWorker(FAST_RECOVERY);
    await first.ready;
    await sys.enqueue({ Id: 'alice', Prompt: 'doomed', Token: signToken('alice'), Number: 1 });
    await waitUntil(() => sys.xai.calls.length === 1, 5000, 'generation started');
    first.child.kill('SIGKILL');
    await first.exited;

    const second = sys.spawnWorker(FAST_RECOVERY);
    await second.ready;
    expect(await alice.waitFor(isFinal, 15_000)).toMatchObject({ Status: true, Number: 1 });
    expect(alice.finals()).toHaveLength(1);
  });

  it('kill -9 of one of two workers in the middle of a burst: every page delivered, only cut-off requests asked again', async () => {
    sys.xai.setDefault({ ...successAnswer(), delayMs: 300 });
    const settings = { ...FAST_RECOVERY, CONCURRENCY: '3', GROK_RATE_LIMIT: '10', GROK_RATE_WINDOW_MS: '1000' };
    const doomed = sys.spawnWorker(settings);
    const survivor = sys.spawnWorker(settings);
    await Promise.all([doomed.ready, survivor.ready]);
    const total = 12;
    for (let n = 1; n <= total; n++) await sys.enqueue({ Id: `user${n % 3}`, Prompt: `page ${n}`, Token: signToken(`user${n % 3}`), Number: n });
    await waitUntil(() => jobEnds(doomed).length >= 1 && jobEnds(survivor).length >= 1, 15_000, 'both working');
    doomed.child.kill('SIGKILL');
    await doomed.exited;

    await waitUntil(() => jobEnds(doomed).length + jobEnds(survivor).length >= total, 30_000, 'all ended');
    const ends = [...jobEnds(doomed), ...jobEnds(survivor)];
    expect(ends.every((l) => l.outcome === 'completed')).toBe(true);
    expect(new Set(ends.map((l) => l.jobId)).size).toBe(total);
    const finals = sys.relay.received.filter((p) => isFinal(p as Record<string, unknown>)) as Array<Record<string, unknown>>;
    expect([...new Set(finals.map((p) => p.Number))].sort((a, b) => Number(a) - Number(b))).toEqual(Array.from({ length: total }, (_, i) => i + 1));
    expect(finals.every((p) => p.Status === true)).toBe(true);
    // Run again: only what the killed worker had in flight (at most its CONCURRENCY). A page it had just handed to
    // the relay before dying can arrive twice (the front end keeps the first); a checkpointed one is never paid again.
    expect(finals.length).toBeLessThanOrEqual(total + 3);
    expect(sys.xai.calls.length).toBeGreaterThanOrEqual(total);
    expect(sys.xai.calls.length).toBeLessThanOrEqual(total + 3);
    expect(await sys.redis.zcard(`bull:${sys.queueName}:f:active`)).toBe(0);
  });

  it('a worker frozen past its lease mid-request (SIGSTOP) and resumed: one picture, paid at most twice, caps exact', async () => {
    sys.xai.setDefault({ ...successAnswer(), delayMs: 2000 });
    const alice = await sys.user('alice');
    const settings = { LOCK_DURATION_MS: '1000', STALLED_INTERVAL_MS: '300', USER_CONCURRENCY: '1' };
    const frozen = sys.spawnWorker(settings);
    await frozen.ready;
    await sys.enqueue({ Id: 'alice', Prompt: 'frozen', Token: signToken('alice'), Number: 1 });
    await waitUntil(() => sys.xai.calls.length === 1, 5000, 'generation started');
    frozen.child.kill('SIGSTOP');

    // Another worker reaps the lapsed lease and runs the job itself.
    const other = sys.spawnWorker(settings);
    await other.ready;
    await waitUntil(() => sys.xai.calls.length === 2, 10_000, 'the job taken over');
    frozen.child.kill('SIGCONT');
    await frozen.waitForLog((l) => l.msg === 'job end', 10_000);
    expect(jobEnds(frozen)).toEqual([expect.objectContaining({ outcome: 'lease_lost' })]);
    await other.waitForLog((l) => l.msg === 'job end', 10_000);
    expect(jobEnds(other)).toEqual([expect.objectContaining({ outcome: 'completed' })]);

    // The user's next page runs normally: the cap was released exactly once.
    await sys.enqueue({ Id: 'alice', Prompt: 'next', Token: signToken('alice'), Number: 2 });
    await alice.waitFor((p) => p.Number === 2 && isFinal(p), 10_000);
    expect(alice.finals().filter((p) => p.Number === 1)).toHaveLength(1);
    expect(sys.xai.calls.length).toBeLessThanOrEqual(3);
    await waitUntil(async () => (await sys.redis.hlen(`bull:${sys.queueName}:fq:inflight`)) === 0, 5000, 'no running count left');
  });

  it('a job that stalls more than MAX_STALLED_COUNT times fails, and its user is still told', async () => {
    sys.xai.setDefault({ ...successAnswer(), delayMs: 5000 });
    const alice = await sys.user('alice');
    const settings = { ...FAST_RECOVERY, MAX_STALLED_COUNT: '0' };
    const first = sys.spawnWorker(settings);
    await first.ready;
    await sys.enqueue({ Id: 'alice', Prompt: 'kills its worker', Token: signToken('alice'), Number: 9 });
    await waitUntil(() => sys.xai.calls.length === 1, 5000, 'generation started');
    first.child.kill('SIGKILL');
    await first.exited;

    const second = sys.spawnWorker(settings);
    await second.ready;
    expect(await alice.waitFor(isFinal, 15_000)).toMatchObject({ Status: false, Message: USER_MESSAGES.GENERATION_FAILED, Number: 9 });
    expect(await second.waitForLog((l) => l.msg === 'job end')).toMatchObject({
      userId: 'alice',
      outcome: 'failed',
      code: 'GENERATION_FAILED',
    });
    expect(sys.xai.calls).toHaveLength(1);
    // One owner ended it: told once, and nothing of the job is left but the short-lived end mark.
    expect(alice.finals()).toHaveLength(1);
    expect(await sys.keys()).not.toContainEqual(expect.stringMatching(/:f:job:|:checkpoint:/));
  });

  it('notification service down while the image is made, worker killed, both restarted: delivered, generated once', async () => {
    const port = await freeFixedPort();
    await sys.relay.close();
    const first = sys.spawnWorker({ ...FAST_RECOVERY, PORT_MESSAGES_USERS: `http://127.0.0.1:${port}` });
    await first.ready;
    const job = await sys.enqueue({ Id: 'alice', Prompt: 'keep me', Token: signToken('alice'), Number: 1 });
    const checkpointKey = `bull:${sys.queueName}:checkpoint:${fidOf(job)}`;
    await waitUntil(async () => (await sys.redis.exists(checkpointKey)) === 1, 10_000, 'checkpoint saved');
    first.child.kill('SIGKILL');
    await first.exited;

    await sys.restartRelay(port);
    const alice = await sys.user('alice');
    const second = sys.spawnWorker({ ...FAST_RECOVERY, PORT_MESSAGES_USERS: `http://127.0.0.1:${port}` });
    await second.ready;
    expect(await alice.waitFor(isFinal, 15_000)).toMatchObject({ Status: true, Number: 1 });
    expect(sys.xai.calls).toHaveLength(1);
    await second.waitForLog((l) => l.msg === 'job end');
    expect(jobEnds(second)[0]).toMatchObject({ outcome: 'completed', fromCheckpoint: true });
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
    await waitUntil(() => sys.relay.received.some((p) => isFinal(p as Record<string, unknown>) && (p as Record<string, unknown>).Number === 2), 10_000, 'barrier');
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

  it('three worker processes on one queue: every job generated and notified exactly once', async () => {
    sys.xai.setDefault({ ...successAnswer(), delayMs: 50 });
    const workers = [sys.spawnWorker(), sys.spawnWorker(), sys.spawnWorker()];
    await Promise.all(workers.map((w) => w.ready));
    const total = 30;
    for (let n = 1; n <= total; n++) await sys.enqueue({ Id: `user${n % 3}`, Prompt: `picture ${n}`, Token: signToken(`user${n % 3}`), Number: n });

    await waitUntil(() => workers.flatMap(jobEnds).length >= total, 20_000, 'all ended');
    const finals = sys.relay.received.filter((p) => isFinal(p as Record<string, unknown>)) as Array<Record<string, unknown>>;
    expect(finals.map((p) => p.Number).sort((a, b) => Number(a) - Number(b))).toEqual(Array.from({ length: total }, (_, i) => i + 1));
    expect(finals.every((p) => p.Status === true)).toBe(true);
    expect(sys.xai.calls).toHaveLength(total);
    const ends = workers.flatMap(jobEnds);
    expect(new Set(ends.map((l) => l.jobId)).size).toBe(total);
    expect(ends).toHaveLength(total);
    // The work was shared, not done by one worker while the others idled.
    expect(workers.filter((w) => jobEnds(w).length > 0).length).toBeGreaterThanOrEqual(2);
  });
});
