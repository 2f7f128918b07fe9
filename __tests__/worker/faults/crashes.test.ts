import type Bull from 'bull';
import { successAnswer } from '../../support/fakeXai';
import { fidOf, isFinal, KEPT_LEASES, SHORT_LEASES, signToken, waitUntil } from '../../support/helpers';
import { jobEnds, TestSystem, useTestSystem } from '../../support/harness';

/**
 * Faults that need the worker as a real process. Workers that die or crowd one queue.
 */

jest.setTimeout(45_000);

describe('process faults: crashes', () => {
  let sys: TestSystem;
  useTestSystem('procfaults', (s) => (sys = s));
  /** The final notifications the relay has received (a worker's job end line can come before them). */
  const finalsAtRelay = (): Array<Record<string, unknown>> =>
    sys.relay.received.filter((p) => isFinal(p as Record<string, unknown>)) as Array<Record<string, unknown>>;

  it('kill -9 during a slow generation: a second worker delivers the job', async () => {
    sys.xai.script([{ ...successAnswer(), delayMs: 1000 }]);
    const alice = await sys.user('alice');
    const { worker: first } = await sys.spawnWorkerDrawing({ Prompt: 'doomed', Number: 1 }, SHORT_LEASES);
    await sys.killWorker(first);

    // The worker that takes over runs in this process: only the one that dies must be a process of its own.
    await sys.startWorker(KEPT_LEASES);
    expect(await alice.waitFor(isFinal, 15_000)).toMatchObject({ Status: true, Number: 1 });
    expect(alice.finals()).toHaveLength(1);
  });

  it('kill -9 of one of two workers in the middle of a burst: every page delivered, only cut-off requests asked again', async () => {
    sys.xai.setDefault({ ...successAnswer(), delayMs: 300 });
    const settings = { CONCURRENCY: '3', GROK_RATE_LIMIT: '10', GROK_RATE_WINDOW_MS: '1000' };
    // The doomed worker's leases lapse by themselves after its death; the survivor's outlast any pause.
    const doomed = sys.spawnWorker({ ...settings, ...SHORT_LEASES });
    const survivor = sys.spawnWorker({ ...settings, ...KEPT_LEASES });
    await Promise.all([doomed.ready, survivor.ready]);
    const total = 12;
    const jobs: Bull.Job[] = [];
    for (let n = 1; n <= total; n++) jobs.push(await sys.enqueue({ Id: `user${n % 3}`, Prompt: `page ${n}`, Token: signToken(`user${n % 3}`), Number: n }));
    await waitUntil(() => jobEnds(doomed).length >= 1 && jobEnds(survivor).length >= 1, 15_000, 'both working');
    doomed.child.kill('SIGKILL');
    await doomed.exited;

    // A job the killed worker had read from Bull but not yet taken in is taken in by the next sweep.
    await waitUntil(() => jobEnds(doomed).length + jobEnds(survivor).length >= total, 20_000, 'all ended').catch(async (err: Error) => {
      const ended = new Set([...jobEnds(doomed), ...jobEnds(survivor)].map((l) => l.jobId));
      const missing = await Promise.all(
        jobs
          .filter((j) => !ended.has(String(j.id)))
          .map(async (j) => `${j.id}: ${await j.getState()}, in the fair queue: ${await sys.redis.exists(`bull:${sys.queueName}:fq:job:${fidOf(j)}`)}`),
      );
      throw new Error(`${err.message}; not ended: ${missing.join('; ')}`);
    });
    const ends = [...jobEnds(doomed), ...jobEnds(survivor)];
    expect(ends.every((l) => l.outcome === 'completed')).toBe(true);
    expect(new Set(ends.map((l) => l.jobId)).size).toBe(total);
    // Logged after the delivery, but on another channel than the relay's: wait for the relay to have them all.
    await waitUntil(() => new Set(finalsAtRelay().map((p) => p.Number)).size >= total, 5000, 'every page at the relay');
    const finals = finalsAtRelay();
    expect([...new Set(finals.map((p) => p.Number))].sort((a, b) => Number(a) - Number(b))).toEqual(Array.from({ length: total }, (_, i) => i + 1));
    expect(finals.every((p) => p.Status === true)).toBe(true);
    // Run again: only what the killed worker had in flight (at most its CONCURRENCY). A page it had just handed to
    // the relay before dying can arrive twice (the front end keeps the first); a checkpointed one is never paid again.
    expect(finals.length).toBeLessThanOrEqual(total + 3);
    expect(sys.xai.calls.length).toBeGreaterThanOrEqual(total);
    expect(sys.xai.calls.length).toBeLessThanOrEqual(total + 3);
    expect(await sys.redis.zcard(`bull:${sys.queueName}:fq:claims`)).toBe(0);
  });

  it('three workers on one queue: every job generated and notified exactly once', async () => {
    sys.xai.setDefault({ ...successAnswer(), delayMs: 50 });
    // In this process: fencing between workers is in Redis, whatever process each runs in.
    const workers = await Promise.all([sys.startWorker(), sys.startWorker(), sys.startWorker()]);
    const endsOf = workers.map((w) => {
      const ends: string[] = [];
      w.events.on('job:end', (end) => ends.push(end.jobId));
      return ends;
    });
    const total = 30;
    for (let n = 1; n <= total; n++) await sys.enqueue({ Id: `user${n % 3}`, Prompt: `picture ${n}`, Token: signToken(`user${n % 3}`), Number: n });

    await waitUntil(() => endsOf.flat().length >= total, 20_000, 'all ended');
    await waitUntil(() => finalsAtRelay().length >= total, 5000, 'every picture at the relay');
    const finals = finalsAtRelay();
    expect(finals.map((p) => p.Number).sort((a, b) => Number(a) - Number(b))).toEqual(Array.from({ length: total }, (_, i) => i + 1));
    expect(finals.every((p) => p.Status === true)).toBe(true);
    expect(sys.xai.calls).toHaveLength(total);
    expect(new Set(endsOf.flat()).size).toBe(total);
    expect(endsOf.flat()).toHaveLength(total);
    expect(sys.ends().every((end) => end.outcome === 'completed')).toBe(true);
    // The work was shared, not done by one worker while the others idled.
    expect(endsOf.filter((ends) => ends.length > 0).length).toBeGreaterThanOrEqual(2);
  });
});

describe('process faults: a crash of the only worker, restarted at once', () => {
  let sys: TestSystem;
  useTestSystem('restart', (s) => (sys = s));

  it("kill -9 with every request out: the dead worker's jobs run again within seconds, not after their lease", async () => {
    sys.xai.setDefault({ ...successAnswer(), delayMs: 1500 });
    const total = 12;
    // The default lease (60 s): only the dead worker's lost subscription can bring its jobs back this soon. The pace
    // off, every request is out at once.
    const settings = { STALLED_INTERVAL_MS: '500', GROK_RATE_LIMIT: '0' };
    const doomed = sys.spawnWorker(settings);
    await doomed.ready;
    for (let n = 1; n <= total; n++) await sys.enqueue({ Id: `user${n % 3}`, Prompt: `page ${n}`, Token: signToken(`user${n % 3}`), Number: n });
    await waitUntil(() => sys.xai.calls.length === total, 10_000, 'every request out');
    doomed.child.kill('SIGKILL');
    await doomed.exited;

    sys.xai.setDefault(successAnswer());
    await sys.startWorker(settings);
    await waitUntil(() => new Set(finalsAtRelay().map((p) => p.Number)).size === total, 20_000, 'every page at the relay');
    await waitUntil(async () => (await sys.producer.getJobCounts()).active === 0, 10_000, "Bull's active list empty");
    const finals = finalsAtRelay();
    expect(finals).toHaveLength(total);
    expect(finals.every((p) => p.Status === true)).toBe(true);
    // The requests cut off by the crash were paid, and are paid again: xAI keeps no idempotency key.
    expect(sys.xai.calls).toHaveLength(2 * total);
    expect(sys.events('claim:lost')).toEqual([]);
  });

  /** The final notifications the relay has received. */
  const finalsAtRelay = (): Array<Record<string, unknown>> =>
    sys.relay.received.filter((p) => isFinal(p as Record<string, unknown>)) as Array<Record<string, unknown>>;
});
