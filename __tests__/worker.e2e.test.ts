import { successAnswer, TINY_PNG_BASE64 } from './support/fakeXai';
import { isFinal, signToken, TestSystem, useTestSystem, waitUntil } from './support/harness';

/** The whole pipeline against real Redis, a local xAI-contract server and a real socket.io relay. */
describe('worker end to end', () => {
  let sys: TestSystem;
  useTestSystem('e2e', (s) => (sys = s));

  it('delivers the image of a front-end job to its user room only, with Number echoed, and leaves nothing in Redis', async () => {
    const alice = await sys.user('alice');
    const bob = await sys.user('bob');
    await sys.startWorker({ PROMPT_PREFIX: 'House style: ' });
    const job = await sys.enqueue({ Id: 'alice', Prompt: 'a lighthouse\nat dawn', Token: signToken('alice'), Number: 7 });

    const done = await alice.waitFor(isFinal);
    expect(done).toEqual({
      Id: 'alice_Grok_Image_Generator',
      Number: 7,
      jobId: String(job.id),
      status: 'completed',
      success: true,
      data: { image: TINY_PNG_BASE64, mimeType: 'image/png' },
      error: null,
      code: null,
    });
    expect(alice.received[0]).toMatchObject({ status: 'processing', Number: 7, data: null });
    expect(sys.xai.calls).toHaveLength(1);
    expect(sys.xai.calls[0].headers.authorization).toBe('Bearer xai-test-key-SECRET');
    expect(sys.xai.calls[0].body).toEqual({
      model: 'grok-imagine-image',
      prompt: 'House style: a lighthouse at dawn',
      n: 1,
      response_format: 'b64_json',
    });
    // What stays: Bull's id counter and stalled-check mark, and the job's short-lived end mark (it has a TTL).
    await waitUntil(async () => (await sys.keys()).every((k) => /:(id|stalled-check|f:done:\d+|f:pace)$/.test(k)));
    expect(bob.received).toEqual([]);
    const end = sys.logs.jobEnds()[0];
    expect(end).toMatchObject({ jobId: String(job.id), userId: 'alice', outcome: 'completed', code: null, attempt: 1, imageBytes: expect.any(Number) });
    expect(end.steps).toEqual({ token: expect.any(Number), generate: expect.any(Number), notify: expect.any(Number) });
  });

  it('ends an expired session with SESSION_EXPIRED and never calls the image API', async () => {
    const alice = await sys.user('alice');
    await sys.startWorker();
    await sys.enqueue({ Id: 'alice', Prompt: 'a cat', Token: signToken('alice', { expiresInS: -60 }), Number: 1 });

    const failed = await alice.waitFor(isFinal);
    expect(failed).toMatchObject({ status: 'failed', success: false, data: null, code: 'SESSION_EXPIRED', error: 'Session expired. Please log in again.', Number: 1 });
    expect(alice.received.filter((p) => p.status === 'processing')).toEqual([]);
    expect(sys.xai.calls).toHaveLength(0);
  });

  it("refuses another user's token: nothing reaches either room but the refusal, and no image is paid for", async () => {
    const alice = await sys.user('alice');
    const bob = await sys.user('bob');
    await sys.startWorker();
    await sys.enqueue({ Id: 'alice', Prompt: 'steal this', Token: signToken('bob'), Number: 1 });

    expect(await alice.waitFor(isFinal)).toMatchObject({ status: 'failed', code: 'INVALID_TOKEN', data: null });
    expect(bob.received).toEqual([]);
    expect(sys.xai.calls).toHaveLength(0);
  });

  it('tells the user about invalid job data when the Id is usable', async () => {
    const alice = await sys.user('alice');
    await sys.startWorker();
    await sys.enqueue({ Id: 'alice', Prompt: '   ', Token: signToken('alice'), Number: 'slot-2' });

    expect(await alice.waitFor(isFinal)).toMatchObject({ status: 'failed', code: 'INVALID_JOB', Number: 'slot-2', error: 'Job field Prompt must not be blank' });
    expect(sys.xai.calls).toHaveLength(0);
  });

  it('speaks the legacy format the existing front end reads', async () => {
    const alice = await sys.user('alice');
    await sys.startWorker({ NOTIFY_FORMAT: 'legacy' });
    sys.xai.script([{ status: 200, json: { data: [{ b64_json: TINY_PNG_BASE64 }] } }]);
    await sys.enqueue({ Id: 'alice', Prompt: 'a cat', Token: signToken('alice'), Number: 3 });
    await sys.enqueue({ Id: 'alice', Prompt: 'a dog', Token: signToken('alice', { expiresInS: -60 }), Number: 4 });

    await alice.waitFor((p) => p.Number === 3);
    await alice.waitFor((p) => p.Number === 4);
    const byNumber = Object.fromEntries(alice.received.map((p) => [p.Number as number, p]));
    expect(byNumber[3]).toEqual({ Id: 'alice_Grok_Image_Generator', Status: true, Message: `data:image/jpeg;base64,${TINY_PNG_BASE64}`, Number: 3 });
    expect(byNumber[4]).toEqual({ Id: 'alice_Grok_Image_Generator', Status: false, Message: 'Session expired. Please log in again.', Number: 4 });
    expect(alice.received).toHaveLength(2);
  });

  it('shares GROK_RATE_LIMIT across workers: two workers, one job per window', async () => {
    const alice = await sys.user('alice');
    const limit = { GROK_RATE_LIMIT: '1', GROK_RATE_WINDOW_MS: '400' };
    await sys.startWorker(limit);
    await sys.startWorker(limit);
    const started = Date.now();
    await Promise.all([1, 2, 3].map((n) => sys.enqueue({ Id: 'alice', Prompt: `cat ${n}`, Token: signToken('alice'), Number: n })));
    await waitUntil(async () => alice.finals().length === 3, 10000);
    // Unlimited, two workers would finish three instant jobs in a few ms; the limiter spaces them 400 ms apart.
    expect(Date.now() - started).toBeGreaterThanOrEqual(750);
    expect(sys.xai.calls).toHaveLength(3);
  });

  it('processes jobs concurrently up to CONCURRENCY', async () => {
    const alice = await sys.user('alice');
    sys.xai.setDefault({ ...successAnswer(), delayMs: 400 });
    await sys.startWorker({ CONCURRENCY: '4' });
    const started = Date.now();
    await Promise.all([1, 2, 3, 4].map((n) => sys.enqueue({ Id: 'alice', Prompt: `cat ${n}`, Token: signToken('alice'), Number: n })));
    await waitUntil(async () => alice.finals().length === 4, 10000);
    // Four 400 ms generations one after another would take 1.6 s.
    expect(Date.now() - started).toBeLessThan(1500);
    expect(alice.finals().map((p) => p.Number).sort()).toEqual([1, 2, 3, 4]);
  });
});

