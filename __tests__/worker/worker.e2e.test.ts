import { USER_MESSAGES } from '../../src/base/errors';
import { hashUserId } from '../../src/pipeline/steps/grokProvider';
import { successAnswer, TINY_PNG_BASE64 } from '../support/fakeXai';
import { isFinal, isImage, signToken, waitUntil } from '../support/helpers';
import { TestSystem, useTestSystem } from '../support/harness';

const MODERATED = { status: 400, json: { code: 'Client specified an invalid argument', error: 'Generated image rejected by content moderation.' } };

/**
 * The whole pipeline against real Redis, a local xAI-contract server and a notification service that
 * behaves like StoryBang's (only `{Message, Status, Number}` of `Profile` reach the room), with the
 * worker's default settings: what a StoryBang browser sees.
 */
describe('worker end to end, as a StoryBang browser sees it', () => {
  let sys: TestSystem;
  useTestSystem('e2e', (s) => (sys = s));

  it('delivers the image as a data URL to its user room only, with Number echoed, and leaves nothing in Redis', async () => {
    const alice = await sys.user('alice');
    const bob = await sys.user('bob');
    await sys.startWorker({ PROMPT_PREFIX: 'House style: ' });
    const job = await sys.enqueue({ Id: 'alice', Prompt: 'a lighthouse\nat dawn', Token: signToken('alice'), Number: 7 });

    const done = await alice.waitFor(isFinal);
    expect(done).toEqual({ Message: `data:image/png;base64,${TINY_PNG_BASE64}`, Status: true, Number: 7 });
    expect(isImage(done)).toBe(true);
    // Legacy has no progress events: the one message is the image.
    expect(alice.received).toHaveLength(1);
    expect(sys.xai.calls).toHaveLength(1);
    expect(sys.xai.calls[0].headers.authorization).toBe('Bearer xai-test-key-SECRET');
    expect(sys.xai.calls[0].body).toEqual({
      model: 'grok-imagine-image',
      prompt: 'House style: a lighthouse at dawn',
      n: 1,
      response_format: 'b64_json',
      user: hashUserId('alice'),
    });
    // What stays: Bull's id counter, the fair queue's pace and counters, and the marks of this round's sweep (the
    // fleet keeps Bull's locks: they expire with the lock duration).
    await waitUntil(
      async () => (await sys.keys()).every((k) => /:(id|fq:pace|fq:stats|fq:swept|fq:kept)$/.test(k)),
      15000,
      `only counters left: ${(await sys.keys()).join(' ')}`,
    );
    expect(bob.received).toEqual([]);
    await waitUntil(() => sys.ends().length === 1, 5000, 'the job-end line');
    const end = sys.ends()[0];
    expect(end).toMatchObject({ jobId: String(job.id), userId: 'alice', outcome: 'completed', code: null, attempt: 1, imageBytes: expect.any(Number) });
    expect(end.steps).toEqual({ token: expect.any(Number), generate: expect.any(Number), notify: expect.any(Number) });
    // What the worker told its listeners about the job, in order: the log line above is written from the last one.
    const told = sys.emitted.filter((e) => (e.payload as { jobId?: string }).jobId === String(job.id)).map((e) => e.name);
    expect(told).toEqual(['job:claimed', 'job:started', 'job:delivered', 'job:end']);
  });

  it('labels an image by its bytes when the API names no type', async () => {
    const alice = await sys.user('alice');
    await sys.startWorker();
    sys.xai.script([{ status: 200, json: { data: [{ b64_json: TINY_PNG_BASE64 }] } }]);
    await sys.enqueue({ Id: 'alice', Prompt: 'a cat', Token: signToken('alice'), Number: 3 });
    expect(await alice.waitFor(isFinal)).toEqual({ Message: `data:image/png;base64,${TINY_PNG_BASE64}`, Status: true, Number: 3 });
  });

  it('ends an expired session with the original sentence and never calls the image API', async () => {
    const alice = await sys.user('alice');
    await sys.startWorker();
    await sys.enqueue({ Id: 'alice', Prompt: 'a cat', Token: signToken('alice', { expiresInS: -60 }), Number: 1 });

    expect(await alice.waitFor(isFinal)).toEqual({ Message: 'Session expired. Please log in again.', Status: false, Number: 1 });
    expect(sys.xai.calls).toHaveLength(0);
    await waitUntil(() => sys.ends().length === 1);
    expect(sys.ends()[0]).toMatchObject({ outcome: 'failed', code: 'SESSION_EXPIRED' });
  });

  it("refuses another user's token: the same sentence in the job's room, nothing in the other, no image paid for", async () => {
    const alice = await sys.user('alice');
    const bob = await sys.user('bob');
    await sys.startWorker();
    await sys.enqueue({ Id: 'alice', Prompt: 'steal this', Token: signToken('bob'), Number: 1 });

    expect(await alice.waitFor(isFinal)).toEqual({ Message: 'Session expired. Please log in again.', Status: false, Number: 1 });
    expect(bob.received).toEqual([]);
    expect(sys.xai.calls).toHaveLength(0);
    await waitUntil(() => sys.ends().length === 1);
    expect(sys.ends()[0]).toMatchObject({ outcome: 'failed', code: 'INVALID_TOKEN' });
  });

  it('tells the user about invalid job data in a sentence; the detail goes to the log', async () => {
    const alice = await sys.user('alice');
    await sys.startWorker();
    await sys.enqueue({ Id: 'alice', Prompt: '   ', Token: signToken('alice'), Number: 'slot-2' });

    expect(await alice.waitFor(isFinal)).toEqual({ Message: USER_MESSAGES.INVALID_JOB, Status: false, Number: 'slot-2' });
    expect(sys.xai.calls).toHaveLength(0);
    await waitUntil(() => sys.ends().length === 1);
    expect(sys.ends()[0]).toMatchObject({ code: 'INVALID_JOB', error: { message: 'Job field Prompt must not be blank' } });
  });

  it('shows a readable sentence for a moderated prompt, not the API text', async () => {
    const alice = await sys.user('alice');
    await sys.startWorker();
    sys.xai.script([MODERATED]);
    await sys.enqueue({ Id: 'alice', Prompt: 'something refused', Token: signToken('alice'), Number: 4 });

    expect(await alice.waitFor(isFinal)).toEqual({ Message: USER_MESSAGES.CONTENT_REJECTED, Status: false, Number: 4 });
    await waitUntil(() => sys.ends().length === 1);
    expect(sys.ends()[0]).toMatchObject({ code: 'CONTENT_REJECTED', error: { message: expect.stringContaining('content moderation') } });
  });

  it('leaves Number out when the job had none', async () => {
    const alice = await sys.user('alice');
    await sys.startWorker();
    await sys.enqueue({ Id: 'alice', Prompt: 'a cat', Token: signToken('alice') });
    const done = await alice.waitFor(isFinal);
    expect(done).toEqual({ Message: `data:image/png;base64,${TINY_PNG_BASE64}`, Status: true });
    expect(Object.keys(done)).not.toContain('Number');
  });

  it('has up to CONCURRENCY image requests in flight at once, never more', async () => {
    const alice = await sys.user('alice');
    await sys.startWorker({ CONCURRENCY: '4' });
    const release = sys.xai.stall();
    await Promise.all([1, 2, 3, 4, 5].map((n) => sys.enqueue({ Id: 'alice', Prompt: `cat ${n}`, Token: signToken('alice'), Number: n })));
    await waitUntil(() => sys.xai.inFlight === 4, 10000, 'four requests in flight');
    release();
    await waitUntil(async () => alice.finals().length === 5, 10000);
    expect(sys.xai.peakInFlight).toBe(4);
    expect(
      alice
        .finals()
        .map((p) => p.Number)
        .sort(),
    ).toEqual([1, 2, 3, 4, 5]);
  });
});

/** NOTIFY_FORMAT=schema, through a notification service that passes the whole payload on. */
describe('worker end to end, schema format', () => {
  let sys: TestSystem;
  useTestSystem('e2e_schema', (s) => (sys = s), 'each', { format: 'schema' });

  it('sends progress, then the image with its routing, jobId and echoed Number', async () => {
    const alice = await sys.user('alice');
    await sys.startWorker();
    sys.xai.setDefault(successAnswer());
    const job = await sys.enqueue({ Id: 'alice', Prompt: 'a lighthouse', Token: signToken('alice'), Number: 7 });

    expect(await alice.waitFor(isFinal)).toEqual({
      Id: 'alice_Grok_Image_Generator',
      Number: 7,
      jobId: String(job.id),
      status: 'completed',
      success: true,
      data: { image: TINY_PNG_BASE64, mimeType: 'image/png' },
      error: null,
      code: null,
    });
    expect(alice.received[0]).toMatchObject({ status: 'processing', Number: 7, data: null, error: null, code: null });
  });

  it('names the code and gives the same sentence as the legacy format', async () => {
    const alice = await sys.user('alice');
    await sys.startWorker();
    sys.xai.script([MODERATED]);
    await sys.enqueue({ Id: 'alice', Prompt: 'a cat', Token: signToken('alice', { expiresInS: -60 }), Number: 1 });
    await sys.enqueue({ Id: 'alice', Prompt: 'refused', Token: signToken('alice'), Number: 2 });

    expect(await alice.waitFor((p) => p.Number === 1 && isFinal(p))).toMatchObject({
      status: 'failed',
      success: false,
      data: null,
      code: 'SESSION_EXPIRED',
      error: 'Session expired. Please log in again.',
    });
    expect(await alice.waitFor((p) => p.Number === 2 && isFinal(p))).toMatchObject({
      status: 'failed',
      code: 'CONTENT_REJECTED',
      error: USER_MESSAGES.CONTENT_REJECTED,
    });
    // Progress goes out only once the token is proven: the expired job sent none.
    expect(alice.received.filter((p) => p.status === 'processing').map((p) => p.Number)).toEqual([2]);
  });
});
