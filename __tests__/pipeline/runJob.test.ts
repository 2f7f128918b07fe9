import { LogCapture } from '../support/helpers';
import { FAKE_IMAGE as IMAGE, FakeCheckpoints, FakeNotifier, FakeProvider, FakeRefusals, FakeVerifier } from '../support/fakes';
import { permanentError, rateLimitedError, transientError, USER_MESSAGES, WorkerError } from '../../src/base/errors';
import { createLogger } from '../../src/base/logger';
import { failureEvent, failureOutcome, JobRun, PipelineDeps, PipelineSettings, RunOutcome, runJob } from '../../src/pipeline/runJob';
import type { JobEvent } from '../../src/pipeline/ports';

const USER = 'user-42';
const CREATED_AT = 1_700_000_000_000;
const FINGERPRINT = `${USER}:${CREATED_AT}`;

/** The failure a run reported; a delivery fails the test. */
function failure(outcome: RunOutcome): Extract<RunOutcome, { delivered: false }> {
  if (outcome.delivered) throw new Error('expected the run to fail, but it delivered');
  return outcome;
}

function setup(settings: Partial<PipelineSettings> = {}) {
  const timeline: string[] = [];
  const logs = new LogCapture();
  const verifier = new FakeVerifier(timeline);
  const provider = new FakeProvider(timeline);
  const notifier = new FakeNotifier(timeline);
  const checkpoints = new FakeCheckpoints(timeline);
  const deps: PipelineDeps = {
    verifier,
    provider,
    notifier,
    checkpoints,
    logger: createLogger('debug', logs),
    settings: { promptPrefix: '', promptMaxLength: 1000, maxRetries: 3, notifyProgress: true, ...settings },
    retryDelay: () => 0,
  };
  return { timeline, logs, verifier, provider, notifier, checkpoints, deps };
}

function withRefusals(t: ReturnType<typeof setup>): FakeRefusals {
  const refusals = new FakeRefusals(t.timeline);
  t.deps.refusals = refusals;
  return refusals;
}

const moderated = (): WorkerError => permanentError('CONTENT_REJECTED', 'Image API 400: Generated image rejected by content moderation.', { status: 400 });

function jobRun(overrides: Partial<JobRun> = {}): JobRun {
  return {
    jobId: '17',
    data: { Id: USER, Token: 'header.payload.signature', Prompt: 'a red fox in the snow', Number: 3 },
    attempt: 1,
    maxAttempts: 1,
    createdAt: CREATED_AT,
    ...overrides,
  };
}

const signal = (): AbortSignal => new AbortController().signal;
const statuses = (events: JobEvent[]): string[] => events.map((e) => e.status);

describe('runJob: the completed path', () => {
  it('verifies, reports progress, generates and delivers the image at once, without writing a checkpoint', async () => {
    const t = setup();
    const outcome = await runJob(jobRun(), t.deps, signal());

    expect(outcome.delivered).toBe(true);
    expect(outcome.report).toMatchObject({ userId: USER, promptChars: 'a red fox in the snow'.length, imageBytes: 11, costUsd: 0.07, fromCheckpoint: false });
    expect(Object.keys(outcome.report.steps).sort()).toEqual(['generate', 'notify', 'token']);

    expect(t.verifier.calls).toEqual([{ token: 'header.payload.signature', userId: USER }]);
    expect(t.provider.prompts).toEqual(['a red fox in the snow']);
    expect(t.notifier.delivered).toEqual([
      { userId: USER, number: 3, jobId: '17', status: 'processing' },
      { userId: USER, number: 3, jobId: '17', status: 'completed', image: IMAGE },
    ]);
    // Delivered at once: nothing to wait for, so the image is never written to Redis.
    expect(t.timeline).toEqual(['checkpoint:open', 'verify', 'try:processing', 'generate', 'deliver:completed']);
    expect(t.checkpoints.saved).toBeUndefined();
  });

  it('checkpoints the image before waiting for a delivery that cannot happen at once', async () => {
    const t = setup();
    t.notifier.connected = false;
    const outcome = await runJob(jobRun(), t.deps, signal());
    expect(outcome.delivered).toBe(true);
    expect(t.timeline).toEqual(['checkpoint:open', 'verify', 'try:processing', 'generate', 'deliver:completed', 'checkpoint:save', 'notify:completed']);
    expect(t.checkpoints.saved).toEqual({ fingerprint: FINGERPRINT, image: IMAGE });
  });

  it('sends no progress event when NOTIFY_PROGRESS is off', async () => {
    const t = setup({ notifyProgress: false });
    const outcome = await runJob(jobRun(), t.deps, signal());
    expect(outcome.delivered).toBe(true);
    expect(statuses(t.notifier.delivered)).toEqual(['completed']);
    expect(t.timeline).not.toContain('try:processing');
  });

  it('completes even when the progress event cannot be sent (disconnected)', async () => {
    const t = setup();
    t.notifier.connected = false;
    const outcome = await runJob(jobRun(), t.deps, signal());
    expect(outcome.delivered).toBe(true);
    expect(statuses(t.notifier.delivered)).toEqual(['completed']);
  });

  it('echoes a missing Number as null', async () => {
    const t = setup();
    await runJob(jobRun({ data: { Id: USER, Token: 't', Prompt: 'a fox' } }), t.deps, signal());
    expect(t.notifier.delivered.map((e) => e.number)).toEqual([null, null]);
  });

  it('sends prefix + prompt, cut at a word boundary when too long, and logs the cut', async () => {
    const t = setup({ promptPrefix: 'Style: watercolour. ', promptMaxLength: 12 });
    const outcome = await runJob(jobRun({ data: { Id: USER, Token: 't', Prompt: 'a red fox in the snow' } }), t.deps, signal());
    expect(outcome.delivered).toBe(true);
    expect(t.provider.prompts).toEqual(['Style: watercolour. a red fox in']);
    expect(outcome.report.promptChars).toBe('a red fox in'.length);
    const cut = t.logs.lines.find((l) => l.msg === 'prompt cut to PROMPT_MAX_LENGTH');
    expect(cut).toMatchObject({ jobId: '17', originalChars: 21, sentChars: 12 });
  });

  it('does not log a cut when the prompt fits', async () => {
    const t = setup({ promptPrefix: 'Style: ', promptMaxLength: 1000 });
    await runJob(jobRun(), t.deps, signal());
    expect(t.provider.prompts).toEqual(['Style: a red fox in the snow']);
    expect(t.logs.lines.find((l) => l.msg === 'prompt cut to PROMPT_MAX_LENGTH')).toBeUndefined();
  });
});

describe('runJob: a failure is reported, never told', () => {
  it('with a usable Id: INVALID_JOB, and the user to tell with Number echoed; the pipeline itself tells nobody', async () => {
    const t = setup();
    const failed = failure(await runJob(jobRun({ data: { Id: USER, Token: 't', Prompt: '   ', Number: 'slot-2' } }), t.deps, signal()));
    expect(failed.error).toBeInstanceOf(WorkerError);
    expect(failed.error.code).toBe('INVALID_JOB');
    expect(failed.report.userId).toBe(USER);
    expect(failed.owner).toEqual({ userId: USER, number: 'slot-2' });
    expect(failed.serviceAway).toBe(false);
    expect(t.notifier.delivered).toEqual([]);
    // The detail is for the log line, not for the person.
    expect(failed.error.message).toMatch(/Prompt/);
    expect(t.verifier.calls).toHaveLength(0);
    expect(t.provider.prompts).toHaveLength(0);
    expect(t.checkpoints.ops).toHaveLength(0);
  });

  it('INVALID_JOB is not worth retrying, even when Bull attempts remain', async () => {
    const t = setup();
    const failed = failure(await runJob(jobRun({ data: { Id: USER, Prompt: 'a fox' }, attempt: 1, maxAttempts: 3 }), t.deps, signal()));
    expect(failed.error.code).toBe('INVALID_JOB');
    expect(failureOutcome(failed.error, { attempt: 1, maxAttempts: 3 })).toBe('failed');
  });

  it.each([
    ['not an object', 'just a string'],
    ['null', null],
    ['an array', [{ Id: USER }]],
    ['a missing Id', { Token: 't', Prompt: 'a fox' }],
    ['a blank Id', { Id: '   ', Token: 't', Prompt: 'a fox' }],
    ['an Id too long', { Id: 'x'.repeat(129), Token: 't', Prompt: 'a fox' }],
    ['a numeric Id', { Id: 42, Token: 't', Prompt: 'a fox' }],
  ])('with %s: INVALID_JOB, and nobody to tell', async (_label, data) => {
    const t = setup();
    const failed = failure(await runJob(jobRun({ data }), t.deps, signal()));
    expect(failed.error.code).toBe('INVALID_JOB');
    expect(failed.report.userId).toBeUndefined();
    expect(failed.owner).toBeUndefined();
    expect(t.notifier.notifyCalls).toHaveLength(0);
    expect(t.provider.prompts).toHaveLength(0);
  });
});

describe('runJob: the token', () => {
  it.each([
    ['INVALID_TOKEN', 'Invalid token'],
    ['SESSION_EXPIRED', 'Session expired. Please log in again.'],
  ] as const)('%s is permanent: nothing generated, no progress before it', async (code, detail) => {
    const t = setup();
    t.verifier.error = permanentError(code, detail);
    const failed = failure(await runJob(jobRun({ attempt: 1, maxAttempts: 3 }), t.deps, signal()));
    expect(failed.error.code).toBe(code);
    expect(failureOutcome(failed.error, { attempt: 1, maxAttempts: 3 })).toBe('failed');
    expect(failed.owner).toEqual({ userId: USER, number: 3 });
    expect(t.verifier.calls).toHaveLength(1);
    expect(t.provider.prompts).toHaveLength(0);
    expect(t.timeline).toEqual(['checkpoint:open', 'verify']);
  });

  it('a transient verification failure is retried and then succeeds', async () => {
    const t = setup();
    let calls = 0;
    t.deps.verifier = {
      verify: async () => {
        calls++;
        if (calls === 1) throw transientError('JWT service unreachable');
      },
    };
    const outcome = await runJob(jobRun(), t.deps, signal());
    expect(outcome.delivered).toBe(true);
    expect(calls).toBe(2);
  });
});

describe('runJob: retries of the image API', () => {
  it('a transient error twice, then success: exactly three calls, delivered', async () => {
    const t = setup({ maxRetries: 3 });
    t.provider.script = [transientError('503'), transientError('503'), IMAGE];
    const outcome = await runJob(jobRun(), t.deps, signal());
    expect(outcome.delivered).toBe(true);
    expect(t.provider.prompts).toHaveLength(3);
    expect(statuses(t.notifier.delivered)).toEqual(['processing', 'completed']);
    const retries = t.logs.lines.filter((l) => l.msg === 'generate failed, retrying');
    expect(retries.map((l) => l.retry)).toEqual([1, 2]);
  });

  it('waits retryDelay between attempts', async () => {
    const t = setup({ maxRetries: 2 });
    const waits: number[] = [];
    t.deps.retryDelay = (attempt) => attempt * 7;
    t.deps.sleep = async (ms) => {
      waits.push(ms);
    };
    t.provider.script = [transientError('503')];
    await runJob(jobRun(), t.deps, signal());
    expect(waits).toEqual([7, 14]);
  });

  it('transient on every call: 1 + maxRetries calls, GENERATION_FAILED, transient (a Bull retry while attempts are left)', async () => {
    const t = setup({ maxRetries: 2 });
    t.provider.script = [transientError('Image API answered 503')];
    const failed = failure(await runJob(jobRun({ attempt: 1, maxAttempts: 3 }), t.deps, signal()));
    expect(failed.error.code).toBe('GENERATION_FAILED');
    expect(failed.error.transient).toBe(true);
    expect(failed.error.message).toBe('Image API answered 503');
    expect(failureOutcome(failed.error, { attempt: 1, maxAttempts: 3 })).toBe('retry');
    expect(failureOutcome(failed.error, { attempt: 3, maxAttempts: 3 })).toBe('failed');
    expect(t.provider.prompts).toHaveLength(3);
    expect(statuses(t.notifier.delivered)).toEqual(['processing']);
    expect(t.checkpoints.ops).toEqual(['open']);
  });

  it('CONTENT_REJECTED is never retried: one call', async () => {
    const t = setup({ maxRetries: 3 });
    t.provider.script = [permanentError('CONTENT_REJECTED', 'The image was refused by moderation'), IMAGE];
    const failed = failure(await runJob(jobRun({ attempt: 1, maxAttempts: 3 }), t.deps, signal()));
    expect(failed.error.code).toBe('CONTENT_REJECTED');
    expect(failureOutcome(failed.error, { attempt: 1, maxAttempts: 3 })).toBe('failed');
    expect(t.provider.prompts).toHaveLength(1);
  });

  it('a plain TypeError from the provider is a bug: GENERATION_FAILED, not retried', async () => {
    const t = setup({ maxRetries: 3 });
    t.provider.script = [new TypeError("Cannot read properties of undefined (reading 'b64_json')"), IMAGE];
    const failed = failure(await runJob(jobRun({ attempt: 1, maxAttempts: 3 }), t.deps, signal()));
    expect(failed.error.code).toBe('GENERATION_FAILED');
    expect(failed.error.transient).toBe(false);
    expect(t.provider.prompts).toHaveLength(1);
    expect(t.logs.lines.some((l) => l.msg === 'unexpected error in the pipeline' && l.level === 'error')).toBe(true);
  });
});

describe('runJob: checkpoints', () => {
  it('a checkpoint of this very job is delivered without calling the provider, even once the token expired', async () => {
    const t = setup();
    const saved = { ...IMAGE, base64: 'c2F2ZWQ=' };
    t.checkpoints.saved = { fingerprint: FINGERPRINT, image: saved };
    // The earlier run verified the token before it paid for the image; it may have expired since.
    t.verifier.error = permanentError('SESSION_EXPIRED', 'Session expired. Please log in again.');
    const outcome = await runJob(jobRun({ attempt: 2, maxAttempts: 2 }), t.deps, signal());
    expect(outcome).toMatchObject({ delivered: true, report: { fromCheckpoint: true, costUsd: 0 } });
    expect(t.provider.prompts).toHaveLength(0);
    expect(t.verifier.calls).toHaveLength(0);
    expect(t.notifier.delivered[t.notifier.delivered.length - 1]).toEqual({ userId: USER, number: 3, jobId: '17', status: 'completed', image: saved });
    expect(t.checkpoints.ops).toEqual(['open']);
  });

  it('a checkpoint with another fingerprint (a reused job id, another user) is ignored', async () => {
    const t = setup();
    const foreign = { ...IMAGE, base64: 'b3RoZXI=' };
    t.checkpoints.saved = { fingerprint: `someone-else:${CREATED_AT - 5000}`, image: foreign };
    const outcome = await runJob(jobRun(), t.deps, signal());
    expect(outcome).toMatchObject({ delivered: true, report: { fromCheckpoint: false } });
    expect(t.verifier.calls).toHaveLength(1);
    expect(t.provider.prompts).toHaveLength(1);
    expect(t.notifier.delivered[t.notifier.delivered.length - 1].image).toEqual(IMAGE);
  });

  it('the same user with a different createdAt (a new job reusing the id) is not served the old image', async () => {
    const t = setup();
    t.checkpoints.saved = { fingerprint: `${USER}:${CREATED_AT - 1}`, image: { ...IMAGE, base64: 'b2xk' } };
    await runJob(jobRun(), t.deps, signal());
    expect(t.provider.prompts).toHaveLength(1);
    expect(t.notifier.delivered[t.notifier.delivered.length - 1].image).toEqual(IMAGE);
  });

  it.each(['open', 'save'] as const)('a checkpoint store failing on %s does not stop the job', async (op) => {
    const t = setup();
    t.checkpoints.failOn.add(op);
    t.notifier.instant = false;
    const outcome = await runJob(jobRun(), t.deps, signal());
    expect(outcome.delivered).toBe(true);
    expect(t.provider.prompts).toHaveLength(1);
    expect(statuses(t.notifier.delivered)).toEqual(['processing', 'completed']);
    expect(t.logs.lines.some((l) => l.level === 'warn' && typeof l.msg === 'string' && l.msg.startsWith('checkpoint'))).toBe(true);
  });

  it('keptOnly (an answer with a paid picture after all): the kept picture, without verifying the token', async () => {
    const t = setup();
    t.checkpoints.saved = { fingerprint: FINGERPRINT, image: IMAGE };
    t.verifier.error = permanentError('SESSION_EXPIRED', 'Session expired. Please log in again.');
    const answer = permanentError('GENERATION_FAILED', 'stalled out');
    const outcome = await runJob(jobRun({ keptOnly: answer }), t.deps, signal());
    expect(outcome).toMatchObject({ delivered: true, report: { fromCheckpoint: true } });
    expect(t.verifier.calls).toHaveLength(0);
    expect(t.provider.prompts).toHaveLength(0);
  });

  it('keptOnly without a kept picture: fails with the answer, never generates', async () => {
    const t = setup();
    const answer = permanentError('GENERATION_FAILED', 'stalled out');
    const failed = failure(await runJob(jobRun({ keptOnly: answer }), t.deps, signal()));
    expect(failed.error).toBe(answer);
    expect(failed.owner).toEqual({ userId: USER, number: 3 });
    expect(t.verifier.calls).toHaveLength(0);
    expect(t.provider.prompts).toHaveLength(0);
  });
});

describe('runJob: delivery failures', () => {
  it('the service away past NOTIFY_MAX_WAIT_MS: a transient failure of the delivery, the checkpoint kept for the next attempt', async () => {
    const t = setup();
    t.notifier.failures = 1;
    const failed = failure(await runJob(jobRun({ attempt: 1, maxAttempts: 3 }), t.deps, signal()));
    expect(failed.error.transient).toBe(true);
    expect(failed.serviceAway).toBe(true);
    expect(failed.report.steps.notify).toBeDefined();
    expect(t.provider.prompts).toHaveLength(1);
    expect(t.notifier.notifyCalls.map((e) => e.status)).toEqual(['completed']);
    expect(t.timeline.slice(-2)).toEqual(['checkpoint:save', 'notify:completed']);
    expect(t.checkpoints.saved).toEqual({ fingerprint: FINGERPRINT, image: IMAGE });
  });

  it('the next attempt delivers the kept image without paying again', async () => {
    const t = setup();
    t.notifier.failures = 1;
    const first = await runJob(jobRun({ attempt: 1, maxAttempts: 2 }), t.deps, signal());
    const second = await runJob(jobRun({ attempt: 2, maxAttempts: 2 }), t.deps, signal());
    expect([first.delivered, second.delivered]).toEqual([false, true]);
    expect(second.report.fromCheckpoint).toBe(true);
    expect(t.provider.prompts).toHaveLength(1);
    expect(t.notifier.delivered.filter((e) => e.status === 'completed')).toHaveLength(1);
  });

  it('a run whose claim is gone before delivery delivers nothing, keeps the paid picture and stops', async () => {
    const t = setup();
    t.deps.claim = { stillOurs: async () => false };
    await expect(runJob(jobRun(), t.deps, signal())).rejects.toMatchObject({ name: 'ClaimLostError' });
    expect(t.provider.prompts).toHaveLength(1);
    expect(t.notifier.delivered.filter((e) => e.status === 'completed')).toEqual([]);
    expect(t.checkpoints.saved).toEqual({ fingerprint: FINGERPRINT, image: IMAGE });
  });
});

describe('runJob: abort (shutdown)', () => {
  it('an abort during generation rejects with AbortError and tells nobody of a failure', async () => {
    const t = setup();
    const controller = new AbortController();
    t.provider.script = ['hang'];
    t.provider.onCall = () => setImmediate(() => controller.abort());
    await expect(runJob(jobRun(), t.deps, controller.signal)).rejects.toMatchObject({ name: 'AbortError' });
    expect(t.provider.prompts).toHaveLength(1);
    expect(t.notifier.notifyCalls).toHaveLength(0);
  });

  it('an abort during the wait between retries rejects with AbortError without another call', async () => {
    const t = setup({ maxRetries: 3 });
    const controller = new AbortController();
    t.provider.script = [transientError('503')];
    t.deps.retryDelay = () => 60_000;
    delete t.deps.sleep;
    t.provider.onCall = () => setImmediate(() => controller.abort());
    // A 60 s wait: only the abort can end it within the test's time limit.
    await expect(runJob(jobRun(), t.deps, controller.signal)).rejects.toMatchObject({ name: 'AbortError' });
    expect(t.provider.prompts).toHaveLength(1);
  });

  it('an abort during delivery rejects with AbortError and keeps the checkpoint', async () => {
    const t = setup();
    const controller = new AbortController();
    t.notifier.hang = true;
    const running = runJob(jobRun(), t.deps, controller.signal);
    while (t.notifier.notifyCalls.length === 0) await new Promise((r) => setImmediate(r));
    controller.abort();
    await expect(running).rejects.toMatchObject({ name: 'AbortError' });
    expect(t.checkpoints.saved).toBeDefined();
  });
});

describe('failureOutcome', () => {
  it.each([
    [true, 1, 3, 'retry'],
    [true, 2, 3, 'retry'],
    [true, 3, 3, 'failed'],
    [true, 1, 1, 'failed'],
    [false, 1, 3, 'failed'],
    [false, 3, 3, 'failed'],
  ] as const)('transient=%s on attempt %i of %i -> %s', (transient, attempt, maxAttempts, expected) => {
    const error = transient ? transientError('503') : permanentError('GENERATION_FAILED', '400');
    expect(failureOutcome(error, { attempt, maxAttempts })).toBe(expected);
  });
});

describe('failureEvent', () => {
  it("carries the code and the code's sentence, never a detail", () => {
    expect(failureEvent('9', { userId: USER, number: 'p1' }, 'CONTENT_REJECTED')).toEqual({
      userId: USER,
      number: 'p1',
      jobId: '9',
      status: 'failed',
      error: { code: 'CONTENT_REJECTED', message: USER_MESSAGES.CONTENT_REJECTED },
    });
  });
});

describe('runJob: the image request', () => {
  it("sends the prepared prompt and the user's Id, and no deadline when none is set", async () => {
    const t = setup({ promptPrefix: 'Style: ' });
    await runJob(jobRun(), t.deps, signal());
    expect(t.provider.requests).toEqual([{ prompt: 'Style: a red fox in the snow', userId: USER, deadlineAt: undefined }]);
  });

  it('passes deadlineAt = start of the generate step + generationDeadlineMs, the same on every retry', async () => {
    const t = setup({ generationDeadlineMs: 45_000, maxRetries: 2 });
    t.provider.script = [transientError('503'), IMAGE];
    // The clock stands still, so the deadline is known exactly: no bracket between two readings of a moving clock.
    const NOW = 1_750_000_000_000;
    const clock = jest.spyOn(Date, 'now').mockReturnValue(NOW);
    try {
      const outcome = await runJob(jobRun(), t.deps, signal());
      expect(outcome.delivered).toBe(true);
    } finally {
      clock.mockRestore();
    }
    expect(t.provider.requests.map((r) => r.deadlineAt)).toEqual([NOW + 45_000, NOW + 45_000]);
  });

  it('does not start a retry wait that would end past the deadline: GENERATION_FAILED, permanent, no wait, no further call', async () => {
    const t = setup({ generationDeadlineMs: 1000, maxRetries: 3 });
    const waits: number[] = [];
    t.deps.retryDelay = () => 60_000;
    t.deps.sleep = async (ms) => void waits.push(ms);
    t.provider.script = [transientError('Image API 503: busy', { status: 503 })];
    const failed = failure(await runJob(jobRun({ attempt: 1, maxAttempts: 3 }), t.deps, signal()));
    expect(failed.error).toMatchObject({ code: 'GENERATION_FAILED', transient: false });
    expect(failed.error.message).toMatch(/GENERATION_DEADLINE_MS/);
    expect(failed.error.cause).toMatchObject({ message: 'Image API 503: busy' });
    expect(failureOutcome(failed.error, { attempt: 1, maxAttempts: 3 })).toBe('failed');
    expect(t.provider.prompts).toHaveLength(1);
    expect(waits).toEqual([]);
    expect(t.logs.lines.filter((l) => l.msg === 'generate failed, retrying')).toEqual([]);
  });

  it("honours the deadline for a rate limit's Retry-After under the default delay policy", async () => {
    const t = setup({ generationDeadlineMs: 10_000, maxRetries: 3 });
    const waits: number[] = [];
    delete t.deps.retryDelay;
    t.deps.sleep = async (ms) => void waits.push(ms);
    t.provider.script = [rateLimitedError('Image API 429: slow down', { status: 429, retryAfterMs: 60_000 })];
    const failed = failure(await runJob(jobRun(), t.deps, signal()));
    expect(failed.error).toMatchObject({ code: 'GENERATION_FAILED', transient: false });
    expect(waits).toEqual([]);
    expect(t.provider.prompts).toHaveLength(1);
  });

  it('takes the retry waits that end before the deadline', async () => {
    const t = setup({ generationDeadlineMs: 600_000, maxRetries: 3 });
    const waits: number[] = [];
    t.deps.retryDelay = () => 1000;
    t.deps.sleep = async (ms) => void waits.push(ms);
    t.provider.script = [transientError('503'), transientError('503'), IMAGE];
    const outcome = await runJob(jobRun(), t.deps, signal());
    expect(outcome.delivered).toBe(true);
    expect(waits).toEqual([1000, 1000]);
  });

  it('keeps the deadline to the generate step: token retries wait as before', async () => {
    const t = setup({ generationDeadlineMs: 1, maxRetries: 1 });
    const waits: number[] = [];
    t.deps.retryDelay = () => 5000;
    t.deps.sleep = async (ms) => void waits.push(ms);
    let calls = 0;
    t.deps.verifier = {
      verify: async () => {
        if (calls++ === 0) throw transientError('JWT service unreachable');
      },
    };
    const outcome = await runJob(jobRun(), t.deps, signal());
    expect(outcome.delivered).toBe(true);
    expect(waits).toEqual([5000]);
  });
});

describe('runJob: refusal memory', () => {
  it('remembers a moderation refusal for this user and the prepared prompt', async () => {
    const t = setup({ promptPrefix: 'Style: ' });
    const refusals = withRefusals(t);
    t.provider.script = [moderated()];
    const failed = failure(await runJob(jobRun(), t.deps, signal()));
    expect(failed.error.code).toBe('CONTENT_REJECTED');
    expect(failed.report.refusalRemembered).toBeUndefined();
    expect([...refusals.refused]).toEqual([JSON.stringify([USER, 'Style: a red fox in the snow'])]);
    expect(t.timeline).toEqual(['checkpoint:open', 'verify', 'try:processing', 'refusals:has', 'generate', 'refusals:remember']);
  });

  it('refuses the same prompt again without calling the API, after the token is verified, and says so', async () => {
    const t = setup();
    const refusals = withRefusals(t);
    t.provider.script = [moderated(), IMAGE];
    await runJob(jobRun(), t.deps, signal());
    t.timeline.length = 0;
    const again = failure(await runJob(jobRun({ jobId: '18' }), t.deps, signal()));
    expect(again).toMatchObject({ report: { refusalRemembered: true }, error: { code: 'CONTENT_REJECTED', transient: false } });
    expect(again.report.steps.generate).toEqual(expect.any(Number));
    expect(again.owner).toEqual({ userId: USER, number: 3 });
    expect(t.provider.prompts).toHaveLength(1);
    expect(t.timeline).toEqual(['checkpoint:open', 'verify', 'try:processing', 'refusals:has']);
    expect(refusals.calls.filter((c) => c === 'remember')).toHaveLength(1);
  });

  it('does not refuse the same prompt for another user, nor another prompt for the same user', async () => {
    const t = setup();
    withRefusals(t);
    t.provider.script = [moderated(), IMAGE];
    await runJob(jobRun(), t.deps, signal());
    const otherUser = await runJob(jobRun({ data: { Id: 'user-43', Token: 't', Prompt: 'a red fox in the snow' } }), t.deps, signal());
    const otherPrompt = await runJob(jobRun({ data: { Id: USER, Token: 't', Prompt: 'a red fox in the rain' } }), t.deps, signal());
    expect([otherUser.delivered, otherPrompt.delivered]).toEqual([true, true]);
    expect(t.provider.prompts).toHaveLength(3);
  });

  it('remembers nothing but moderation refusals', async () => {
    const t = setup({ maxRetries: 0 });
    const refusals = withRefusals(t);
    t.provider.script = [
      permanentError('GENERATION_FAILED', 'Image API 400: Argument not supported', { status: 400 }),
      transientError('503'),
      new TypeError('bug'),
    ];
    for (let i = 0; i < 3; i++) await runJob(jobRun(), t.deps, signal());
    expect(refusals.refused.size).toBe(0);
    expect(refusals.calls).toEqual(['has', 'has', 'has']);
  });

  it('a memory that cannot be read is skipped: warned, the API asked, the job completes', async () => {
    const t = setup();
    const refusals = withRefusals(t);
    refusals.failOn.add('has');
    const outcome = await runJob(jobRun(), t.deps, signal());
    expect(outcome.delivered).toBe(true);
    expect(t.provider.prompts).toHaveLength(1);
    expect(t.logs.lines).toContainEqual(expect.objectContaining({ level: 'warn', msg: 'refusal memory unreadable, asking the image API', jobId: '17' }));
  });

  it('a refusal that cannot be remembered still ends CONTENT_REJECTED, warned', async () => {
    const t = setup();
    const refusals = withRefusals(t);
    refusals.failOn.add('remember');
    t.provider.script = [moderated()];
    const failed = failure(await runJob(jobRun(), t.deps, signal()));
    expect(failed.error.code).toBe('CONTENT_REJECTED');
    expect(t.logs.lines).toContainEqual(expect.objectContaining({ level: 'warn', msg: 'refusal not remembered' }));
  });

  it('is not consulted for an image already checkpointed', async () => {
    const t = setup();
    const refusals = withRefusals(t);
    t.checkpoints.saved = { fingerprint: FINGERPRINT, image: IMAGE };
    const outcome = await runJob(jobRun(), t.deps, signal());
    expect(outcome.delivered).toBe(true);
    expect(refusals.calls).toEqual([]);
  });
});
