import { isImage, signToken, waitUntil } from '../../support/helpers';
import { TestSystem, UserClient, useTestSystem } from '../../support/harness';

/**
 * The fair queue's own keys are lost while it holds jobs (an operator's DEL, a failover that kept only some writes):
 * Bull still holds every job for it, and nothing may be stranded or answered twice.
 */
jest.setTimeout(30_000);

describe('the fair queue loses its keys with jobs held', () => {
  let sys: TestSystem;
  useTestSystem('lostkeys', (s) => (sys = s));

  it('every user is answered once, with the picture, within a few sweeps', async () => {
    // Two jobs run (their requests held at the API), eight wait their turn.
    const release = sys.xai.stall();
    const users: UserClient[] = [];
    for (let n = 0; n < 10; n++) users.push(await sys.user(`user${n}`));
    await sys.startWorker({ CONCURRENCY: '2', LOCK_DURATION_MS: '2000', STALLED_INTERVAL_MS: '500' });
    for (let n = 0; n < 10; n++) await sys.enqueue({ Id: `user${n}`, Prompt: 'a lighthouse', Token: signToken(`user${n}`), Number: 1 });
    await waitUntil(() => sys.xai.calls.length === 2, 10_000, 'two requests out');
    await waitUntil(async () => (await sys.redis.keys(`bull:${sys.queueName}:fq:job:*`)).length === 10, 10_000, 'all taken in');

    await sys.redis.del(...(await sys.redis.keys(`bull:${sys.queueName}:fq:*`)));
    release();

    await waitUntil(() => users.every((u) => u.finals().length > 0), 20_000, 'every user answered');
    // Bull holds nothing more: every job ended, none is left to answer again.
    await waitUntil(async () => (await sys.producer.getJobCounts()).active === 0, 10_000, "Bull's active list empty");
    for (const user of users) {
      expect(user.finals()).toHaveLength(1);
      expect(isImage(user.finals()[0])).toBe(true);
    }
    expect(sys.ends().filter((l) => l.outcome === 'completed')).toHaveLength(10);
  });
});
