import { successAnswer } from '../../support/fakeXai';
import { isFinal, redisUrl, signToken, waitUntil } from '../../support/helpers';
import { startBlackhole } from '../../support/blackhole';
import { TestSystem, useTestSystem } from '../../support/harness';

/**
 * A live worker whose subscription dies without a word (a NAT or a proxy dropping the idle connection) must not be
 * taken for dead: the fleet takes a worker's claims back a few seconds after it finds its subscription gone, and a
 * request of that worker is out at xAI.
 */
jest.setTimeout(30_000);

describe('presence: a subscription dropped without a word', () => {
  let sys: TestSystem;
  useTestSystem('presence', (s) => (sys = s));

  it('the worker makes its subscription again before the fleet takes its claim back: one request, one picture', async () => {
    const blackhole = await startBlackhole(redisUrl());
    try {
      const alice = await sys.user('alice');
      // Longer than the fleet waits (5 s) after it finds a worker without its subscription.
      sys.xai.setDefault({ ...successAnswer(), delayMs: 6000 });
      const first = await sys.startWorker({ REDIS_URL: blackhole.url });
      await sys.enqueue({ Id: 'alice', Prompt: 'page 1', Token: signToken('alice'), Number: 1 });
      await waitUntil(() => sys.xai.calls.length === 1, 10_000, 'the request out');
      expect(blackhole.drop('grok-image-worker:wake')).toBe(1);
      // Another worker looks for gone workers every 500 ms.
      await sys.startWorker({ STALLED_INTERVAL_MS: '500' });
      await alice.waitFor(isFinal, 15_000);
      await waitUntil(() => sys.ends().length === 1, 5000, 'the job end');
      expect(sys.ends()).toEqual([expect.objectContaining({ outcome: 'completed' })]);
      expect(sys.xai.calls).toHaveLength(1);
      expect(alice.finals()).toHaveLength(1);
      expect(sys.events('claim:lost')).toEqual([]);
      await first.close();
    } finally {
      blackhole.close();
    }
  });
});
