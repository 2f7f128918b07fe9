import Bull from 'bull';
import { redisOptionsFromUrl } from '../../src/redis/connections';
import { redisUrl, signToken, uniqueQueueName, waitUntil } from '../support/helpers';
import { TestSystem, useTestSystem } from '../support/harness';

/** Jobs queued before a worker starts run in the order Bull itself would run them: lifo newest first, priority. */
describe("Bull's order", () => {
  let sys: TestSystem;
  useTestSystem('order', (s) => (sys = s));

  /** lifo and priority jobs of one user, as a producer might mix them. */
  const adds: Array<[string, Bull.JobOptions]> = [
    ['plain 1', {}],
    ['lifo 1', { lifo: true }],
    ['lifo 2', { lifo: true }],
    ['priority 3', { priority: 3 }],
    ['plain 2', {}],
    ['lifo 3', { lifo: true }],
    ['priority 1', { priority: 1 }],
    ['lifo 4', { lifo: true }],
  ];

  async function bullsOrder(): Promise<string[]> {
    const queue = new Bull(uniqueQueueName('bull-order'), { redis: redisOptionsFromUrl(redisUrl()) });
    try {
      for (const [prompt, opts] of adds) await queue.add({ Prompt: prompt }, opts);
      const order: string[] = [];
      void queue.process(1, async (job) => void order.push(job.data.Prompt));
      await waitUntil(() => order.length === adds.length, 10_000, 'Bull ran every job');
      return order;
    } finally {
      await queue.obliterate({ force: true }).catch(() => undefined);
      await queue.close();
    }
  }

  it('lifo and priority jobs queued before the worker starts run as a plain Bull worker runs them', async () => {
    const expected = await bullsOrder();
    for (const [prompt, opts] of adds) await sys.enqueue({ Id: 'alice', Prompt: prompt, Token: signToken('alice'), Number: prompt }, opts);
    await sys.startWorker({ CONCURRENCY: '1' });
    await waitUntil(() => sys.xai.calls.length === adds.length, 10_000, 'every job asked for');
    expect(sys.xai.calls.map((c) => (c.body as { prompt: string }).prompt)).toEqual(expected);
  });
});
