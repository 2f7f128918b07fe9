import Bull from 'bull';
import { redisOptionsFromUrl } from '../../../src/redis/connections';
import { redisUrl, signToken, waitUntil } from '../../support/helpers';
import { TestSystem, useTestSystem, WorkerProcess } from '../../support/harness';

/**
 * Going back: the new worker is stopped while it holds jobs, and the old worker (a plain Bull worker) takes over.
 * Every job the fair queue held must come back to Bull's own processing: its lock lapses once no new worker keeps
 * it, and Bull's stalled check returns the job to Bull's wait list.
 */
jest.setTimeout(45_000);

describe('rolling back to a plain Bull worker', () => {
  let sys: TestSystem;
  useTestSystem('rollback', (s) => (sys = s));
  let plain: Bull.Queue | undefined;
  afterEach(async () => {
    await plain?.close();
    plain = undefined;
  });

  /** Six pages held by a new worker: one running (its request never answered), five waiting their turn. */
  async function heldByNewWorker(): Promise<{ worker: WorkerProcess; ids: string[] }> {
    sys.xai.setDefault({ hang: true });
    // Sweeps every half second, so Bull's locks of held jobs last 1.5 s (3 sweeps) instead of 65 s.
    const worker = sys.spawnWorker({ CONCURRENCY: '1', STALLED_INTERVAL_MS: '500', SHUTDOWN_TIMEOUT_MS: '200' });
    await worker.ready;
    const ids: string[] = [];
    for (let n = 1; n <= 6; n++) ids.push(String((await sys.enqueue({ Id: 'alice', Prompt: `page ${n}`, Token: signToken('alice'), Number: n })).id));
    await waitUntil(() => sys.xai.calls.length === 1, 10_000, 'one request out');
    await waitUntil(async () => (await sys.producer.getJobCounts()).active === 6, 10_000, 'all six held');
    return { worker, ids };
  }

  /** The old worker: Bull's own processing, with its stalled check as often as the new worker swept. */
  async function plainBullWorker(): Promise<string[]> {
    const done: string[] = [];
    plain = new Bull(sys.queueName, { redis: redisOptionsFromUrl(redisUrl()), settings: { stalledInterval: 500 } });
    void plain.process(3, async (job) => void done.push(String(job.id)));
    return done;
  }

  it.each([
    ['SIGTERM', 'SIGTERM'],
    ['kill -9', 'SIGKILL'],
  ] as const)('after %s, a plain Bull worker runs every job the new worker held', async (_label, signal) => {
    const { worker, ids } = await heldByNewWorker();
    worker.child.kill(signal);
    await worker.exited;
    const done = await plainBullWorker();
    await waitUntil(() => ids.every((id) => done.includes(id)), 30_000, 'every held job run by the plain worker');
    expect([...done].sort()).toEqual([...ids].sort());
  });
});
