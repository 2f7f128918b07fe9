import { USER_MESSAGES } from '../../../src/base/errors';
import { isFinal, signToken, waitUntil } from '../../support/helpers';
import { TestSystem, useTestSystem } from '../../support/harness';

/**
 * While the fleet waits out a rate limit (a 429 with Retry-After), work that needs no image request is still
 * answered: bad data and bad tokens never wait for the pace.
 */
jest.setTimeout(30_000);

describe('answers that need no image request, while the fleet waits for the pace', () => {
  let sys: TestSystem;
  useTestSystem('pace', (s) => (sys = s));

  it("a blank prompt and another user's token are answered during a 20 s Retry-After", async () => {
    sys.xai.script([{ status: 429, json: { error: 'Too many requests' }, headers: { 'Retry-After': '20' } }]);
    const alice = await sys.user('alice');
    const bob = await sys.user('bob');
    const carol = await sys.user('carol');
    // The pace on, as deployed; shutdown does not wait out the pause.
    await sys.startWorker({ GROK_RATE_LIMIT: '5', SHUTDOWN_TIMEOUT_MS: '300' });
    await sys.enqueue({ Id: 'alice', Prompt: 'a lighthouse', Token: signToken('alice'), Number: 1 });
    await waitUntil(
      () => sys.events('job:end').length === 0 && sys.logs.lines.some((l) => l.msg === 'image API rate limit reached: waiting'),
      10_000,
      'the 429',
    );

    await sys.enqueue({ Id: 'carol', Prompt: '   ', Token: signToken('carol'), Number: 2 });
    await sys.enqueue({ Id: 'bob', Prompt: 'a fox', Token: signToken('alice'), Number: 3 });
    expect(await carol.waitFor(isFinal, 10_000)).toEqual({ Status: false, Message: USER_MESSAGES.INVALID_JOB, Number: 2 });
    expect(await bob.waitFor(isFinal, 10_000)).toEqual({ Status: false, Message: USER_MESSAGES.INVALID_TOKEN, Number: 3 });

    // Both while the fleet still waits: the pace's next slot is ahead of Redis' clock, and alice's page not asked again.
    const [[seconds, micros], tat] = await Promise.all([sys.redis.time(), sys.redis.hget(`bull:${sys.queueName}:fq:pace`, 'tat')]);
    expect(Number(tat)).toBeGreaterThan(Number(seconds) * 1000 + Number(micros) / 1000);
    expect(sys.xai.calls).toHaveLength(1);
    expect(alice.finals()).toEqual([]);
    expect(sys.events('job:claimed').filter((c) => c.lane === 'answers')).toHaveLength(2);
  });
});
