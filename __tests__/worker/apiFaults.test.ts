import { USER_MESSAGES } from '../../src/base/errors';
import { fidOf, isFinal, signToken, waitUntil } from '../support/helpers';
import { TestSystem, useTestSystem } from '../support/harness';
import type { ImageProvider } from '../../src/pipeline/ports';

/** Image API faults, injected by the local xAI-contract server, seen through the whole worker. */
describe('image API faults', () => {
  let sys: TestSystem;
  useTestSystem('apifaults', (s) => (sys = s));

  async function runOne(env: Record<string, string> = {}, jobOpts = {}): Promise<Record<string, unknown>> {
    const alice = await sys.user('alice');
    await sys.startWorker(env);
    await sys.enqueue({ Id: 'alice', Prompt: 'a cat', Token: signToken('alice'), Number: 1 }, jobOpts);
    const final = await alice.waitFor(isFinal);
    // The job-end line follows the delivery.
    await waitUntil(() => sys.ends().length > 0, 5000, 'job end');
    return final;
  }

  it('retries 429 twice and then delivers: exactly 3 calls', async () => {
    const busy = { status: 429, json: { code: 'Too many requests', error: 'Rate limit exceeded' }, headers: { 'Retry-After': '0' } };
    sys.xai.script([busy, busy]);
    expect(await runOne()).toMatchObject({ Status: true });
    expect(sys.xai.calls).toHaveLength(3);
  });

  it('never retries a moderation refusal: exactly 1 call, CONTENT_REJECTED', async () => {
    sys.xai.script([{ status: 400, json: { code: 'Client specified an invalid argument', error: 'Generated image rejected by content moderation.' } }]);
    expect(await runOne()).toEqual({ Status: false, Message: USER_MESSAGES.CONTENT_REJECTED, Number: 1 });
    expect(sys.xai.calls).toHaveLength(1);
  });

  it('gives up on a lasting 503 after 1 + GROK_MAX_RETRIES calls with GENERATION_FAILED', async () => {
    sys.xai.setDefault({ status: 503, json: { error: { message: 'Service unavailable', type: 'server_error' } } });
    expect(await runOne({ GROK_MAX_RETRIES: '2' })).toMatchObject({ Status: false, Message: USER_MESSAGES.GENERATION_FAILED });
    expect(sys.xai.calls).toHaveLength(3);
    expect(sys.ends()[0]).toMatchObject({ outcome: 'failed', code: 'GENERATION_FAILED' });
  });

  it('times out an image API that never answers, then fails the job', async () => {
    sys.xai.setDefault({ hang: true });
    // Long enough for each request to reach the stand-in on a loaded machine before the worker gives up on it.
    const failed = await runOne({ GROK_TIMEOUT_MS: '1000', GROK_MAX_RETRIES: '1' });
    expect(failed).toMatchObject({ Status: false, Message: USER_MESSAGES.GENERATION_FAILED });
    expect(sys.ends()[0]).toMatchObject({ code: 'GENERATION_FAILED', error: { message: expect.stringMatching(/did not answer within 1000 ms/) } });
    expect(sys.xai.calls).toHaveLength(2);
    // The server never answered: the worker hung up on both requests itself. How long it waits is held by
    // abort.test.ts on fake timers; a stopwatch here would only add a threshold a busy machine can cross.
    await waitUntil(() => sys.xai.inFlight === 0, 5000, 'both hanging requests closed by the worker');
  });

  it('runs a transient failure again while the producer allows attempts (after its backoff), then notifies once', async () => {
    sys.xai.setDefault({ status: 503, json: { error: 'down' } });
    const alice = await sys.user('alice');
    await sys.startWorker({ GROK_MAX_RETRIES: '0' });
    await sys.enqueue({ Id: 'alice', Prompt: 'a cat', Token: signToken('alice'), Number: 1 }, { attempts: 2, backoff: 50 });
    expect(await alice.waitFor(isFinal)).toMatchObject({ Status: false, Message: USER_MESSAGES.GENERATION_FAILED });
    expect(sys.xai.calls).toHaveLength(2);
    expect(alice.finals()).toHaveLength(1);
    // The job-end line follows the delivery.
    await waitUntil(() => sys.ends().length === 2, 5000, 'second job end');
    expect(sys.ends().map((l) => [l.outcome, l.attempt])).toEqual([
      ['retry', 1],
      ['failed', 2],
    ]);
  });

  it('does not let Bull retry a permanent failure even when attempts remain', async () => {
    sys.xai.setDefault({ status: 401, json: { error: 'Incorrect API key provided' } });
    const alice = await sys.user('alice');
    await sys.startWorker();
    const job = await sys.enqueue({ Id: 'alice', Prompt: 'a cat', Token: signToken('alice'), Number: 1 }, { attempts: 3, backoff: 10 });
    expect(await alice.waitFor(isFinal)).toMatchObject({ Status: false, Message: USER_MESSAGES.GENERATION_FAILED });
    // The job's end is recorded before its job-end line: ended for good, nothing waiting for another attempt.
    await waitUntil(() => sys.ends().length === 1, 15_000, 'job ended');
    expect(await sys.redis.exists(`bull:${sys.queueName}:fq:job:${fidOf(job)}`)).toBe(0);
    expect(await sys.redis.zcard(`bull:${sys.queueName}:fq:retries`)).toBe(0);
    expect(sys.xai.calls).toHaveLength(1);
    expect(sys.ends()).toEqual([expect.objectContaining({ level: 'error', outcome: 'failed' })]);
  });

  it('survives a bug in a step: the job fails, the worker keeps serving', async () => {
    let calls = 0;
    const buggy: ImageProvider = {
      async generate() {
        calls += 1;
        if (calls === 1) throw new TypeError("Cannot read properties of undefined (reading 'data')");
        return { base64: 'aGk=', mimeType: 'image/png' };
      },
    };
    const alice = await sys.user('alice');
    await sys.startWorker({}, { provider: buggy });
    await sys.enqueue({ Id: 'alice', Prompt: 'first', Token: signToken('alice'), Number: 1 });
    expect(await alice.waitFor((p) => p.Number === 1 && isFinal(p))).toMatchObject({ Status: false, Message: USER_MESSAGES.GENERATION_FAILED });
    await sys.enqueue({ Id: 'alice', Prompt: 'second', Token: signToken('alice'), Number: 2 });
    expect(await alice.waitFor((p) => p.Number === 2 && isFinal(p))).toMatchObject({ Status: true });
    expect(calls).toBe(2);
    expect(sys.logs.lines.find((l) => l.msg === 'unexpected error in the pipeline')).toMatchObject({ level: 'error', jobId: expect.any(String) });
  });
});
