import { USER_MESSAGES } from '../../src/base/errors';
import { isImage, signToken, waitUntil } from '../support/helpers';
import { TestSystem, useTestSystem } from '../support/harness';

/** The bill an operator sets: a user's daily cap and the fleet's daily budget, across several workers. */
describe('a bill the operator controls', () => {
  let sys: TestSystem;
  useTestSystem('bill', (s) => (sys = s));

  const paidFor = (userId: string): number => sys.xai.calls.filter((c) => (c.body as { prompt: string }).prompt.startsWith(userId)).length;

  it('USER_DAILY_IMAGES across 3 workers: QUOTA_REACHED beyond it, no API call beyond it, other users unaffected', async () => {
    for (let i = 0; i < 3; i++) await sys.startWorker({ USER_DAILY_IMAGES: '2' });
    const alice = await sys.user('alice');
    const bob = await sys.user('bob');
    for (let n = 1; n <= 5; n++) await sys.enqueue({ Id: 'alice', Prompt: `alice page ${n}`, Token: signToken('alice'), Number: n });
    for (let n = 1; n <= 2; n++) await sys.enqueue({ Id: 'bob', Prompt: `bob page ${n}`, Token: signToken('bob'), Number: n });
    await waitUntil(() => alice.finals().length === 5 && bob.finals().length === 2, 15_000, 'every page answered');
    expect(alice.finals().filter(isImage)).toHaveLength(2);
    expect(alice.finals().filter((p) => p.Status === false)).toEqual(Array(3).fill(expect.objectContaining({ Message: USER_MESSAGES.QUOTA_REACHED })));
    expect(bob.finals().every(isImage)).toBe(true);
    expect(paidFor('alice')).toBe(2);
    expect(paidFor('bob')).toBe(2);
  });

  it('DAILY_BUDGET_USD stops the fleet within one picture, and the alert is logged once', async () => {
    // Each picture costs $0.02 (the stand-in's usage); $0.05 buys two, and a third would pass it.
    for (let i = 0; i < 2; i++) await sys.startWorker({ DAILY_BUDGET_USD: '0.05', STATS_INTERVAL_MS: '200' });
    const users = await Promise.all(['u1', 'u2', 'u3', 'u4', 'u5'].map((id) => sys.user(id)));
    for (const id of ['u1', 'u2', 'u3', 'u4', 'u5']) await sys.enqueue({ Id: id, Prompt: `${id} picture`, Token: signToken(id), Number: 1 });
    await waitUntil(() => users.every((u) => u.finals().length === 1), 15_000, 'every user answered');
    expect(users.filter((u) => isImage(u.finals()[0]))).toHaveLength(2);
    expect(users.flatMap((u) => u.finals()).filter((p) => p.Message === USER_MESSAGES.QUOTA_REACHED)).toHaveLength(3);
    expect(sys.xai.calls).toHaveLength(2);
    await waitUntil(() => sys.ends().length === 5, 5000, 'every job ended');
    expect(sys.ends().filter((l) => l.alert === 'budget')).toEqual([expect.objectContaining({ level: 'error', code: 'QUOTA_REACHED' })]);
    // The stats line says today's spend.
    const spent = (l: Record<string, unknown>): unknown => (l.bill as { spentUsd?: number } | undefined)?.spentUsd;
    await waitUntil(() => sys.logs.lines.some((l) => l.msg === 'queue stats' && spent(l) === 0.04), 5000, 'the spend in the stats line');
  });
});
