import { successAnswer } from '../../support/fakeXai';
import { fidOf, isFinal, signToken, waitUntil } from '../../support/helpers';
import { FakeNotifier } from '../../support/fakes';
import { jobEnds, TestSystem, useTestSystem, WorkerProcess } from '../../support/harness';

/**
 * Faults that need the worker as a real process. Shutdown as a platform does it: SIGTERM, a limit that runs out, a second signal.
 * Short leases make the fair queue's stalled-job recovery quick enough to watch.
 */

jest.setTimeout(45_000);

function indexOfLog(proc: WorkerProcess, predicate: (l: Record<string, unknown>) => boolean): number {
  return proc.logs.findIndex(predicate);
}

describe('process faults: shutdown', () => {
  let sys: TestSystem;
  useTestSystem('procfaults', (s) => (sys = s));

  it('SIGTERM during a slow generation: the job is delivered, exit 0, and a job added after the signal is not lost', async () => {
    // The first request is slow; the late job's, on the next worker, is answered at once.
    sys.xai.script([{ ...successAnswer(), delayMs: 1500 }]);
    const alice = await sys.user('alice');
    const { worker } = await sys.spawnWorkerDrawing({ Prompt: 'slow one', Number: 1 });

    worker.child.kill('SIGTERM');
    await worker.waitForLog((l) => l.msg === 'signal received');
    const late = await sys.enqueue({ Id: 'alice', Prompt: 'after the signal', Token: signToken('alice'), Number: 2 });

    expect(await worker.exited).toEqual({ code: 0, signal: null });
    // Emitted before the exit; the relay's hop to the browser may still be on its way.
    const first = await alice
      .waitFor((p) => p.Number === 1 && isFinal(p))
      .catch((err: Error) => {
        throw new Error(
          `${err.message}; the relay received ${JSON.stringify(sys.relay.received.map((p) => (p as Record<string, unknown>).Number))}; worker logs: ${JSON.stringify(worker.logs)}`,
        );
      });
    expect(first).toMatchObject({ Status: true });
    expect(worker.logs.find((l) => l.msg === 'shutdown complete')).toMatchObject({ finishedInFlight: true });
    // The late job was finished before exit, or left for the next worker (in Bull, or in the fair queue), never dropped.
    const lateState = await (await sys.producer.getJob(late.id!))?.getState();
    const heldByFairQueue = (await sys.redis.exists(`bull:${sys.queueName}:fq:job:${fidOf(late)}`)) === 1;
    const deliveredBeforeExit = alice.finals().some((p) => p.Number === 2);
    expect(deliveredBeforeExit ? 'delivered' : heldByFairQueue ? 'fair queue' : lateState).toMatch(/^(delivered|waiting|fair queue)$/);

    // The next worker runs in this process: only the one signalled must be a process of its own.
    await sys.startWorker();
    expect(await alice.waitFor((p) => p.Number === 2 && isFinal(p))).toMatchObject({ Status: true });
    expect(alice.finals().filter((p) => p.Number === 2)).toHaveLength(1);
  });

  it('shutdown out of time: the unfinished job is handed back at once and another worker delivers it', async () => {
    sys.xai.setDefault({ ...successAnswer(), delayMs: 4000 });
    const alice = await sys.user('alice');
    const { worker, job } = await sys.spawnWorkerDrawing({ Prompt: 'very slow', Number: 1 }, { SHUTDOWN_TIMEOUT_MS: '300' });

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
    // Default lock settings: stalled recovery would take the 60 s lease, so only the hand-back delivers it in time.
    await sys.startWorker();
    expect(await alice.waitFor(isFinal, 30_000)).toMatchObject({ Status: true, Number: 1 });
  });

  it('while shutdown waits for a running job its lease is still renewed: no other worker takes it over', async () => {
    // Over twice the lease: without renewals during the shutdown's wait it would lapse and be taken over. The
    // lease is long enough that a second without CPU on a loaded machine does not lapse it either.
    sys.xai.setDefault({ ...successAnswer(), delayMs: 3200 });
    const alice = await sys.user('alice');
    const shortLeases = { LOCK_DURATION_MS: '1500', STALLED_INTERVAL_MS: '200' };
    const { worker: stopping } = await sys.spawnWorkerDrawing({ Prompt: 'long one', Number: 1 }, shortLeases);
    // It runs in this process: only the one signalled must be a process of its own.
    await sys.startWorker(shortLeases);

    stopping.child.kill('SIGTERM');
    expect(await stopping.exited).toEqual({ code: 0, signal: null });
    expect(jobEnds(stopping)).toEqual([expect.objectContaining({ outcome: 'completed' })]);
    // The other worker reaps every 200 ms: a lease left to lapse (1.5 s) would have been taken and paid again.
    expect(sys.xai.calls).toHaveLength(1);
    expect(sys.ends()).toEqual([]);
    // Emitted before the exit; the relay's hop to the browser may still be on its way.
    await alice
      .waitFor((p) => p.Number === 1 && isFinal(p))
      .catch((err: Error) => {
        throw new Error(
          `${err.message}; the relay received ${JSON.stringify(sys.relay.received.map((p) => Object.keys(p as object)))}; worker logs: ${JSON.stringify(stopping.logs.slice(-8))}`,
        );
      });
    expect(alice.finals()).toEqual([expect.objectContaining({ Status: true, Number: 1 })]);
  });

  it('a second signal exits at once, non-zero, without waiting for the running job', async () => {
    sys.xai.setDefault({ hang: true });
    const { worker } = await sys.spawnWorkerDrawing({ Prompt: 'slow', Number: 1 });
    worker.child.kill('SIGTERM');
    await worker.waitForLog((l) => l.msg === 'signal received');
    worker.child.kill('SIGINT');
    expect(await worker.exited).toEqual({ code: 1, signal: null });
    expect(worker.logs.find((l) => l.level === 'fatal')).toMatchObject({ msg: 'second signal: exiting now', signal: 'SIGINT' });
    // Exited while the generation (which never answers) was still running: it never ended here.
    expect(jobEnds(worker)).toEqual([]);
    expect(worker.logs.some((l) => l.msg === 'shutdown complete')).toBe(false);
  });

  it('workers stopped one after another under load (pace off): nothing paid twice, answered twice or left active', async () => {
    sys.xai.setDefault({ ...successAnswer(), delayMs: 100 });
    const total = 40;
    const pages = (): number =>
      new Set(sys.relay.received.filter((p) => isFinal(p as Record<string, unknown>)).map((p) => (p as Record<string, unknown>).Number)).size;
    let worker = await sys.startWorker({ CONCURRENCY: '4' });
    for (let n = 1; n <= total; n++) await sys.enqueue({ Id: `user${n % 4}`, Prompt: `page ${n}`, Token: signToken(`user${n % 4}`), Number: n });
    // Each stop comes while runs end and claim the next job in the same round trip.
    for (let round = 1; round <= 4; round++) {
      await waitUntil(() => pages() >= round * 7, 15_000, `round ${round}`);
      const next = await sys.startWorker({ CONCURRENCY: '4' });
      await worker.close();
      worker = next;
    }
    await waitUntil(() => pages() === total, 15_000, 'every page at the relay');
    await waitUntil(async () => (await sys.producer.getJobCounts()).active === 0, 10_000, "Bull's active list empty");
    expect(sys.relay.received.filter((p) => isFinal(p as Record<string, unknown>))).toHaveLength(total);
    expect(sys.xai.calls).toHaveLength(total);
    expect(sys.ends().filter((l) => l.outcome === 'completed')).toHaveLength(total);
  });

  it('shutdown out of time while a failure is being told: the job comes back as that answer, never failed untold', async () => {
    // The notification service is away: telling the failure waits until shutdown runs out of time.
    const notifier = new FakeNotifier();
    notifier.hang = true;
    notifier.connected = false;
    const worker = await sys.startWorker({ SHUTDOWN_TIMEOUT_MS: '300' }, { notifier });
    const job = await sys.enqueue({ Id: 'alice', Prompt: 'a fox', Token: 'not-a-jwt', Number: 1 }, { removeOnFail: false });
    await waitUntil(() => notifier.notifyCalls.length === 1, 10_000, 'the failure being told');
    await worker.close();
    expect(await (await sys.producer.getJob(job.id!))!.getState()).toBe('active');
    expect(sys.ends()).toEqual([expect.objectContaining({ outcome: 'handed_back' })]);

    // The next worker tells it, once the service is there.
    const alice = await sys.user('alice');
    await sys.startWorker();
    expect(await alice.waitFor(isFinal)).toMatchObject({ Status: false, Number: 1 });
    await waitUntil(async () => (await (await sys.producer.getJob(job.id!))!.getState()) === 'failed', 5000, 'failed in Bull once told');
  });
});
