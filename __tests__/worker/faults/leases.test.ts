import { freeFixedPort } from '../../../src/demo/redisServer';
import { successAnswer } from '../../support/fakeXai';
import { USER_MESSAGES } from '../../../src/base/errors';
import { fidOf, isFinal, isImage, KEPT_LEASES, SHORT_LEASES, signToken, waitUntil } from '../../support/helpers';
import { jobEnds, TestSystem, useTestSystem } from '../../support/harness';

/**
 * Faults that need the worker as a real process. A worker that freezes past its lease, a job whose worker keeps dying: the leases and their fencing.
 */

jest.setTimeout(45_000);

describe('process faults: leases', () => {
  let sys: TestSystem;
  useTestSystem('procfaults', (s) => (sys = s));

  it('a worker frozen past its lease mid-request (SIGSTOP) and resumed: one picture, paid at most twice, caps exact', async () => {
    // The frozen worker's request is slow; the other worker's answers come at once.
    sys.xai.script([{ ...successAnswer(), delayMs: 2000 }]);
    const alice = await sys.user('alice');
    // Its lease lapses by itself here: the frozen worker is alive, and must find out it lost it.
    const settings = { LOCK_DURATION_MS: '1000', STALLED_INTERVAL_MS: '300', USER_CONCURRENCY: '1' };
    const { worker: frozen } = await sys.spawnWorkerDrawing({ Prompt: 'frozen', Number: 1 }, settings);
    frozen.child.kill('SIGSTOP');

    // Another worker reaps the lapsed lease and runs the job itself.
    // It runs in this process (only the frozen one must be a process of its own), with a lease it keeps.
    await sys.startWorker({ ...settings, ...KEPT_LEASES });
    await waitUntil(() => sys.xai.calls.length === 2, 10_000, 'the job taken over');
    frozen.child.kill('SIGCONT');
    await frozen.waitForLog((l) => l.msg === 'job end', 10_000);
    expect(jobEnds(frozen)).toEqual([expect.objectContaining({ outcome: 'claim_lost' })]);
    await waitUntil(() => sys.ends().length > 0, 10_000, 'the other worker ended the job');
    expect(sys.ends()).toEqual([expect.objectContaining({ outcome: 'completed' })]);

    // The user's next page runs normally: the cap was released exactly once.
    await sys.enqueue({ Id: 'alice', Prompt: 'next', Token: signToken('alice'), Number: 2 });
    await alice.waitFor((p) => p.Number === 2 && isFinal(p), 10_000);
    expect(alice.finals().filter((p) => p.Number === 1)).toHaveLength(1);
    expect(sys.xai.calls.length).toBeLessThanOrEqual(3);
    await waitUntil(async () => (await sys.redis.hlen(`bull:${sys.queueName}:fq:running`)) === 0, 5000, 'no running count left');
  });

  it('a job that stalls more than MAX_STALLED_COUNT times fails, and its user is still told', async () => {
    sys.xai.setDefault({ hang: true });
    const alice = await sys.user('alice');
    const settings = { ...SHORT_LEASES, MAX_STALLED_COUNT: '0' };
    const { worker: first } = await sys.spawnWorkerDrawing({ Prompt: 'kills its worker', Number: 9 }, settings);
    await sys.killWorker(first);

    // The worker that takes over runs in this process: only the one that dies must be a process of its own.
    await sys.startWorker({ ...settings, ...KEPT_LEASES });
    expect(await alice.waitFor(isFinal, 15_000)).toMatchObject({ Status: false, Message: USER_MESSAGES.GENERATION_FAILED, Number: 9 });
    await waitUntil(() => sys.ends().length > 0, 10_000, 'the second worker ended the job');
    expect(sys.ends()[0]).toMatchObject({
      userId: 'alice',
      outcome: 'failed',
      code: 'GENERATION_FAILED',
    });
    expect(sys.xai.calls).toHaveLength(1);
    // One owner ended it: told once, and nothing of the job is left in the fair queue.
    expect(alice.finals()).toHaveLength(1);
    await waitUntil(async () => (await sys.keys()).every((k) => !/:fq:job:|:checkpoint:|:fq:q:/.test(k)), 5000, 'nothing of the job left');
  });

  it('a job that stalls out with its picture already paid delivers that picture, once, and pays nothing more', async () => {
    // The notification service is away: the picture is paid and kept while its delivery waits; then the worker dies.
    const port = await freeFixedPort();
    await sys.relay.close();
    const settings = { ...SHORT_LEASES, MAX_STALLED_COUNT: '0', PORT_MESSAGES_USERS: `http://127.0.0.1:${port}` };
    const first = sys.spawnWorker(settings);
    await first.ready;
    const job = await sys.enqueue({ Id: 'alice', Prompt: 'paid for', Token: signToken('alice'), Number: 7 });
    await waitUntil(async () => (await sys.redis.exists(`bull:${sys.queueName}:checkpoint:${fidOf(job)}`)) === 1, 10_000, 'the picture kept');
    await sys.killWorker(first);

    await sys.restartRelay(port);
    const alice = await sys.user('alice');
    await sys.startWorker({ ...settings, ...KEPT_LEASES });
    expect(isImage(await alice.waitFor(isFinal, 15_000))).toBe(true);
    await waitUntil(() => sys.ends().length > 0, 10_000, 'the job ended');
    expect(sys.ends()).toEqual([expect.objectContaining({ outcome: 'completed', fromCheckpoint: true })]);
    expect(sys.xai.calls).toHaveLength(1);
    expect(alice.finals()).toHaveLength(1);
  });
});
