import type Bull from 'bull';
import { main as enqueue } from '../../src/cli/enqueue';
import { main as queueStats } from '../../src/cli/queueStats';
import { startRelay, Relay } from '../../src/demo/notificationService';
import { createImageQueue, PRODUCER_DEFAULTS } from '../../src/producer';
import { FakeXai, startFakeXai, successAnswer } from '../support/fakeXai';
import { isFinal, isImage, JWT_SECRET, signToken, uniqueQueueName, waitUntil } from '../support/helpers';
import { spawnWorker, UserClient, WorkerProcess } from '../support/harness';
import { RedisCluster, startRedisCluster } from '../support/redisCluster';

/**
 * The worker on a local three-node Redis Cluster, as cluster-only hosting gives it: REDIS_CLUSTER_NODES and a
 * hash-tagged QUEUE_PREFIX, producers using the same prefix. Every script routes by its declared keys and
 * touches only keys in their slot; a script that did not would fail here with "non local key".
 */
jest.setTimeout(45_000);

let cluster: RedisCluster;
let xai: FakeXai;
let relay: Relay;
let queueName: string;
let producer: Bull.Queue;
const workers: WorkerProcess[] = [];
const users: UserClient[] = [];

beforeAll(async () => {
  cluster = await startRedisCluster();
});

afterAll(async () => {
  await cluster?.stop();
});

beforeEach(async () => {
  xai = await startFakeXai();
  relay = await startRelay();
  queueName = uniqueQueueName('cluster');
  producer = createImageQueue(undefined, queueName, { clusterNodes: cluster.urls, prefix: '{bull}' });
});

afterEach(async () => {
  for (const u of users.splice(0)) u.close();
  for (const w of workers.splice(0)) {
    if (w.child.exitCode === null && w.child.signalCode === null) {
      w.child.kill('SIGKILL');
      await w.exited;
    }
  }
  await producer.close();
  await relay.close();
  await xai.close();
});

function worker(env: Record<string, string> = {}): WorkerProcess {
  const w = spawnWorker({
    REDIS_CLUSTER_NODES: cluster.urls.join(','),
    QUEUE_PREFIX: '{bull}',
    QUEUE_NAME: queueName,
    GROK_API: xai.url,
    GROK_API_KEY: 'xai-test-key',
    JWT_SECRET,
    PORT_MESSAGES_USERS: relay.url,
    GROK_RATE_LIMIT: '0',
    STATS_INTERVAL_MS: '0',
    LOG_LEVEL: 'info',
    ...env,
  });
  workers.push(w);
  return w;
}

async function user(id: string): Promise<UserClient> {
  const u = await UserClient.connect(relay, id);
  users.push(u);
  return u;
}

const ask = (id: string, n: number): Promise<Bull.Job> => producer.add({ Id: id, Prompt: `page ${n}`, Token: signToken(id), Number: n }, PRODUCER_DEFAULTS);

describe('on a Redis Cluster', () => {
  it('delivers a picture, keeps Bull truthful and serves a light user before a heavy burst', async () => {
    xai.setDefault({ ...successAnswer(), delayMs: 50 });
    const heavy = await user('heavy');
    const light = await user('light');
    const w = worker({ CONCURRENCY: '1' });
    await w.ready;
    const kept = await producer.add({ Id: 'light', Prompt: 'first', Token: signToken('light'), Number: 0 }, { removeOnComplete: false });
    expect(await kept.finished()).toMatchObject({ delivered: true });
    expect(isImage(await light.waitFor((p) => p.Number === 0))).toBe(true);

    // Heavy's first page is drawn until every page is in line, however slowly they were added.
    const release = xai.stall();
    for (let n = 1; n <= 10; n++) await ask('heavy', n);
    await producer.add({ Id: 'light', Prompt: 'light page', Token: signToken('light'), Number: 1 }, PRODUCER_DEFAULTS);
    // Taken in oldest first: once light's line exists, heavy's whole burst is in line too.
    await waitUntil(async () => (await producer.client.exists(`{bull}:${queueName}:fq:q:light`)) === 1, 10_000, "light's page in line");
    release();
    await light.waitFor((p) => p.Number === 1 && isFinal(p), 20_000);
    // After the first picture and heavy's page being drawn, light's goes next.
    expect(xai.calls.map((c) => (c.body as { prompt: string }).prompt).indexOf('light page')).toBe(2);
    await waitUntil(() => heavy.finals().length === 10, 20_000, 'the burst delivered');
    // Each job ends in Bull just after its picture is sent.
    await waitUntil(async () => (await producer.getJobCounts()).active === 0, 5000, 'every job ended in Bull');
    expect(await producer.getJobCounts()).toMatchObject({ waiting: 0, active: 0, completed: 1 });
  });

  it("the operator's commands work on the cluster: enqueue adds a job, queue:stats counts it", async () => {
    // REDIS_URL leads nowhere: only the cluster's nodes can serve them.
    const env = { REDIS_CLUSTER_NODES: cluster.urls.join(','), REDIS_URL: 'redis://127.0.0.1:1', QUEUE_PREFIX: '{bull}', QUEUE_NAME: queueName, JWT_SECRET };
    const out: string[] = [];
    const io = { stdout: { write: (s: string) => out.push(s) }, stderr: { write: (s: string) => out.push(s) } };
    expect(await enqueue(['--id', 'alice', '--prompt', 'A comet', '--number', '1'], env, io)).toBe(0);
    expect(await producer.getWaitingCount()).toBe(1);
    out.length = 0;
    expect(await queueStats(['--json'], env, io)).toBe(0);
    // No worker runs: the job waits in Bull.
    expect(JSON.parse(out.join(''))).toMatchObject({ counts: { waiting: 1, active: 0 }, fair: { waiting: 0, running: 0 } });
  });

  it('kill -9 during a slow generation: a second worker delivers the job', async () => {
    xai.setDefault({ ...successAnswer(), delayMs: 3000 });
    const alice = await user('alice');
    const recovery = { LOCK_DURATION_MS: '1000', STALLED_INTERVAL_MS: '300' };
    const first = worker(recovery);
    await first.ready;
    await ask('alice', 1);
    await waitUntil(() => xai.calls.length === 1, 10_000, 'generation started');
    first.child.kill('SIGKILL');
    await first.exited;
    xai.setDefault(successAnswer());
    // The first's lease lapses 1 s after its death; the second keeps its own through any pause of the machine.
    const second = worker({ ...recovery, LOCK_DURATION_MS: '15000' });
    await second.ready;
    expect(isImage(await alice.waitFor((p) => p.Number === 1 && isFinal(p), 15_000))).toBe(true);
    expect(alice.finals()).toHaveLength(1);
  });
});
