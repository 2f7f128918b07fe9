import { isFinal, signToken, waitUntil } from '../support/helpers';
import { TestSystem, useTestSystem } from '../support/harness';

/** The lines operators grep and chart: their names and fields are an interface. */
describe('operational log lines', () => {
  let sys: TestSystem;
  useTestSystem('loglines', (s) => (sys = s));

  it('logs start, ready, one line per job end, queue stats and shutdown with stable fields', async () => {
    const alice = await sys.user('alice');
    const worker = await sys.startWorker({ STATS_INTERVAL_MS: '100', LOG_LEVEL: 'info', CONCURRENCY: '3' });
    await sys.enqueue({ Id: 'alice', Prompt: 'one two three four five', Token: signToken('alice'), Number: 1 });
    await alice.waitFor(isFinal);
    await waitUntil(() => sys.logs.lines.some((l) => l.msg === 'queue stats'), 15_000, 'stats line');
    await worker.close();

    const byMsg = (msg: string): Record<string, unknown> | undefined => sys.logs.lines.find((l) => l.msg === msg);
    expect(byMsg('starting')).toMatchObject({
      level: 'info',
      settings: expect.objectContaining({ queueName: sys.queueName, concurrency: 3, grok: expect.objectContaining({ apiKeySet: true }) }),
    });
    expect(JSON.stringify(byMsg('starting'))).not.toMatch(/xai-test-key-SECRET|test-secret-0123456789abcdef/);
    expect(byMsg('ready')).toMatchObject({ level: 'info', queue: sys.queueName, concurrency: 3 });
    expect(byMsg('queue stats')).toMatchObject({
      queue: sys.queueName,
      counts: {
        waiting: expect.any(Number),
        active: expect.any(Number),
        delayed: expect.any(Number),
        failed: expect.any(Number),
        completed: expect.any(Number),
      },
    });
    expect(sys.logs.jobEnds()).toEqual([
      expect.objectContaining({
        level: 'info',
        msg: 'job end',
        jobId: expect.any(String),
        userId: 'alice',
        outcome: 'completed',
        code: null,
        attempt: 1,
        durationMs: expect.any(Number),
        steps: { token: expect.any(Number), generate: expect.any(Number), notify: expect.any(Number) },
        promptChars: 23,
        imageBytes: expect.any(Number),
        fromCheckpoint: false,
        costUsd: 0.02,
        time: expect.stringMatching(/^\d{4}-\d\d-\d\dT/),
      }),
    ]);
    expect(byMsg('shutdown complete')).toMatchObject({ level: 'info', durationMs: expect.any(Number), finishedInFlight: true });
    const order = ['starting', 'ready', 'job end', 'shutdown complete'].map((m) => sys.logs.lines.findIndex((l) => l.msg === m));
    expect(order).toEqual([...order].sort((a, b) => a - b));
  });
});
