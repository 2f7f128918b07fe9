import { LogCapture } from './support/helpers';
import { abortError, permanentError, rateLimitedError, transientError, USER_MESSAGES, WorkerError } from '../src/errors';
import { createLogger } from '../src/logger';
import { failureEvent, failureOutcome, JobRun, PipelineDeps, PipelineSettings, runJob } from '../src/pipeline';
import { SESSION_EXPIRED_MESSAGE } from '../src/steps/tokenVerifier';
import type { CheckpointStore, GeneratedImage, ImageProvider, ImageRequest, JobEvent, Notifier, RefusalMemory, TokenVerifier } from '../src/types';

const USER = 'user-42';
const CREATED_AT = 1_700_000_000_000;
const FINGERPRINT = `${USER}:${CREATED_AT}`;
const IMAGE: GeneratedImage = { base64: 'aGVsbG8gd29ybGQ=', mimeType: 'image/png', revisedPrompt: 'a fox, revised', costUsd: 0.07 };

/** Resolves when `signal` aborts, with the AbortError a real step would throw. */
function untilAborted(signal: AbortSignal): Promise<never> {
  return new Promise((_, reject) => {
    if (signal.aborted) reject(abortError(signal.reason));
    signal.addEventListener('abort', () => reject(abortError(signal.reason)), { once: true });
  });
}

class FakeVerifier implements TokenVerifier {
  readonly calls: Array<{ token: string; userId: string }> = [];
  error?: unknown;
  constructor(private readonly timeline: string[]) {}
  async verify(token: string, userId: string): Promise<void> {
    this.calls.push({ token, userId });
    this.timeline.push('verify');
    if (this.error !== undefined) throw this.error;
  }
}

class FakeProvider implements ImageProvider {
  readonly prompts: string[] = [];
  readonly requests: ImageRequest[] = [];
  /** What each call does, in order; the last entry repeats. */
  script: unknown[] = [IMAGE];
  onCall?: () => void;
  constructor(private readonly timeline: string[]) {}
  async generate(request: ImageRequest, signal: AbortSignal): Promise<GeneratedImage> {
    this.requests.push(request);
    this.prompts.push(request.prompt);
    this.timeline.push('generate');
    this.onCall?.();
    const step = this.script[Math.min(this.prompts.length - 1, this.script.length - 1)];
    if (step === 'hang') return untilAborted(signal);
    if (typeof step === 'object' && step !== null && 'base64' in step) return step as GeneratedImage;
    throw step;
  }
}

class FakeNotifier implements Notifier {
  /** Events that reached the user. */
  readonly delivered: JobEvent[] = [];
  /** Every `notify` call, delivered or not. */
  readonly notifyCalls: JobEvent[] = [];
  /** The next `failures` notify calls reject as the real notifier does when it gives up. */
  failures = 0;
  hang = false;
  connected = true;
  constructor(private readonly timeline: string[]) {}
  async notify(event: JobEvent, signal: AbortSignal): Promise<void> {
    this.notifyCalls.push(event);
    this.timeline.push(`notify:${event.status}`);
    if (this.hang) return untilAborted(signal);
    if (this.failures > 0) {
      this.failures--;
      throw transientError('Notification not delivered within 120000 ms: service unreachable');
    }
    this.delivered.push(event);
  }
  /** False: deliveries need waiting (as when the service must acknowledge). */
  instant = true;
  /** Delivers at once unless disconnected, failing or hanging (then the pipeline must wait through notify). */
  tryDeliver(event: JobEvent): boolean {
    this.timeline.push(`deliver:${event.status}`);
    if (!this.instant || !this.connected || this.failures > 0 || this.hang) return false;
    this.delivered.push(event);
    return true;
  }
  tryNotify(event: JobEvent): boolean {
    this.timeline.push(`try:${event.status}`);
    if (!this.connected) return false;
    this.delivered.push(event);
    return true;
  }
  async close(): Promise<void> {}
}

class FakeCheckpoints implements CheckpointStore {
  readonly saved = new Map<string, { fingerprint: string; image: GeneratedImage }>();
  readonly ops: string[] = [];
  failOn = new Set<'open' | 'save'>();
  constructor(private readonly timeline: string[]) {}
  async load(jobId: string, fingerprint: string): Promise<GeneratedImage | null> {
    this.record('open', jobId);
    const entry = this.saved.get(jobId);
    return entry && entry.fingerprint === fingerprint ? entry.image : null;
  }
  async save(jobId: string, fingerprint: string, image: GeneratedImage): Promise<void> {
    this.record('save', jobId);
    this.saved.set(jobId, { fingerprint, image });
  }
  private record(op: 'open' | 'save', jobId: string): void {
    this.ops.push(op);
    this.timeline.push(`checkpoint:${op}`);
    if (this.failOn.has(op)) throw new Error(`redis down during ${op} of ${jobId}`);
  }
}

/** Remembered refusals in memory; `failOn` makes a call throw as Redis would when it is away. */
class FakeRefusals implements RefusalMemory {
  readonly refused = new Set<string>();
  readonly calls: string[] = [];
  failOn = new Set<'has' | 'remember'>();
  constructor(private readonly timeline: string[]) {}
  async has(userId: string, prompt: string): Promise<boolean> {
    this.record('has');
    return this.refused.has(JSON.stringify([userId, prompt]));
  }
  async remember(userId: string, prompt: string): Promise<void> {
    this.record('remember');
    this.refused.add(JSON.stringify([userId, prompt]));
  }
  private record(op: 'has' | 'remember'): void {
    this.calls.push(op);
    this.timeline.push(`refusals:${op}`);
    if (this.failOn.has(op)) throw new Error(`redis down during ${op}`);
  }
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
    const result = await runJob(jobRun(), t.deps, signal());

    expect(result).toMatchObject({ outcome: 'completed', userId: USER, promptChars: 'a red fox in the snow'.length, imageBytes: 11, costUsd: 0.07 });
    expect(result.error).toBeUndefined();
    expect(result.fromCheckpoint).toBe(false);
    expect(Object.keys(result.steps).sort()).toEqual(['generate', 'notify', 'token']);

    expect(t.verifier.calls).toEqual([{ token: 'header.payload.signature', userId: USER }]);
    expect(t.provider.prompts).toEqual(['a red fox in the snow']);
    expect(t.notifier.delivered).toEqual([
      { userId: USER, number: 3, jobId: '17', status: 'processing' },
      { userId: USER, number: 3, jobId: '17', status: 'completed', image: IMAGE },
    ]);
    // Delivered at once: nothing to wait for, so the image is never written to Redis.
    expect(t.timeline).toEqual(['checkpoint:open', 'verify', 'try:processing', 'generate', 'deliver:completed']);
    expect(t.checkpoints.saved.size).toBe(0);
  });

  it('checkpoints the image before waiting for a delivery that cannot happen at once', async () => {
    const t = setup();
    t.notifier.connected = false;
    const result = await runJob(jobRun(), t.deps, signal());
    expect(result.outcome).toBe('completed');
    expect(t.timeline).toEqual(['checkpoint:open', 'verify', 'try:processing', 'generate', 'deliver:completed', 'checkpoint:save', 'notify:completed']);
    expect(t.checkpoints.saved.get('17')).toEqual({ fingerprint: FINGERPRINT, image: IMAGE });
  });

  it('sends no progress event when NOTIFY_PROGRESS is off', async () => {
    const t = setup({ notifyProgress: false });
    const result = await runJob(jobRun(), t.deps, signal());
    expect(result.outcome).toBe('completed');
    expect(statuses(t.notifier.delivered)).toEqual(['completed']);
    expect(t.timeline).not.toContain('try:processing');
  });

  it('completes even when the progress event cannot be sent (disconnected)', async () => {
    const t = setup();
    t.notifier.connected = false;
    const result = await runJob(jobRun(), t.deps, signal());
    expect(result.outcome).toBe('completed');
    expect(statuses(t.notifier.delivered)).toEqual(['completed']);
  });

  it('echoes a missing Number as null', async () => {
    const t = setup();
    await runJob(jobRun({ data: { Id: USER, Token: 't', Prompt: 'a fox' } }), t.deps, signal());
    expect(t.notifier.delivered.map((e) => e.number)).toEqual([null, null]);
  });

  it('sends prefix + prompt, cut at a word boundary when too long, and logs the cut', async () => {
    const t = setup({ promptPrefix: 'Style: watercolour. ', promptMaxLength: 12 });
    const result = await runJob(jobRun({ data: { Id: USER, Token: 't', Prompt: 'a red fox in the snow' } }), t.deps, signal());
    expect(result.outcome).toBe('completed');
    expect(t.provider.prompts).toEqual(['Style: watercolour. a red fox in']);
    expect(result.promptChars).toBe('a red fox in'.length);
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

describe('runJob: invalid job data', () => {
  it('with a usable Id: fails INVALID_JOB and tells that user, echoing Number', async () => {
    const t = setup();
    const result = await runJob(jobRun({ data: { Id: USER, Token: 't', Prompt: '   ', Number: 'slot-2' } }), t.deps, signal());
    expect(result.outcome).toBe('failed');
    expect(result.error).toBeInstanceOf(WorkerError);
    expect(result.error!.code).toBe('INVALID_JOB');
    expect(result.userId).toBe(USER);
    expect(t.notifier.delivered).toHaveLength(1);
    expect(t.notifier.delivered[0]).toEqual({
      userId: USER,
      number: 'slot-2',
      jobId: '17',
      status: 'failed',
      error: { code: 'INVALID_JOB', message: USER_MESSAGES.INVALID_JOB },
    });
    // The detail is for the log line, not for the person.
    expect(result.error!.message).toMatch(/Prompt/);
    expect(t.verifier.calls).toHaveLength(0);
    expect(t.provider.prompts).toHaveLength(0);
    expect(t.checkpoints.ops).toHaveLength(0);
  });

  it('fails INVALID_JOB even when Bull attempts remain (not worth retrying)', async () => {
    const t = setup();
    const result = await runJob(jobRun({ data: { Id: USER, Prompt: 'a fox' }, attempt: 1, maxAttempts: 3 }), t.deps, signal());
    expect(result.outcome).toBe('failed');
    expect(result.error!.code).toBe('INVALID_JOB');
    expect(statuses(t.notifier.delivered)).toEqual(['failed']);
  });

  it.each([
    ['not an object', 'just a string'],
    ['null', null],
    ['an array', [{ Id: USER }]],
    ['a missing Id', { Token: 't', Prompt: 'a fox' }],
    ['a blank Id', { Id: '   ', Token: 't', Prompt: 'a fox' }],
    ['an Id too long', { Id: 'x'.repeat(129), Token: 't', Prompt: 'a fox' }],
    ['a numeric Id', { Id: 42, Token: 't', Prompt: 'a fox' }],
  ])('with %s: fails INVALID_JOB and notifies nobody', async (_label, data) => {
    const t = setup();
    const result = await runJob(jobRun({ data }), t.deps, signal());
    expect(result.outcome).toBe('failed');
    expect(result.error!.code).toBe('INVALID_JOB');
    expect(result.userId).toBeUndefined();
    expect(t.notifier.notifyCalls).toHaveLength(0);
    expect(t.notifier.delivered).toHaveLength(0);
    expect(t.provider.prompts).toHaveLength(0);
  });
});

describe('runJob: the token', () => {
  it.each([
    ['INVALID_TOKEN', 'Invalid token'],
    ['SESSION_EXPIRED', SESSION_EXPIRED_MESSAGE],
  ] as const)('%s is permanent: failed, the user told, nothing generated, no progress before it', async (code, detail) => {
    const t = setup();
    t.verifier.error = permanentError(code, detail);
    const result = await runJob(jobRun({ attempt: 1, maxAttempts: 3 }), t.deps, signal());
    expect(result.outcome).toBe('failed');
    expect(result.error!.code).toBe(code);
    expect(t.verifier.calls).toHaveLength(1);
    expect(t.provider.prompts).toHaveLength(0);
    expect(t.notifier.delivered).toEqual([{ userId: USER, number: 3, jobId: '17', status: 'failed', error: { code, message: SESSION_EXPIRED_MESSAGE } }]);
    expect(t.timeline).toEqual(['checkpoint:open', 'verify', 'notify:failed']);
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
    const result = await runJob(jobRun(), t.deps, signal());
    expect(result.outcome).toBe('completed');
    expect(calls).toBe(2);
  });
});

describe('runJob: retries of the image API', () => {
  it('a transient error twice, then success: exactly three calls, completed', async () => {
    const t = setup({ maxRetries: 3 });
    t.provider.script = [transientError('503'), transientError('503'), IMAGE];
    const result = await runJob(jobRun(), t.deps, signal());
    expect(result.outcome).toBe('completed');
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

  it('transient on every call, last attempt: 1 + maxRetries calls, failed, GENERATION_FAILED notified', async () => {
    const t = setup({ maxRetries: 2 });
    t.provider.script = [transientError('Image API answered 503')];
    const result = await runJob(jobRun({ attempt: 3, maxAttempts: 3 }), t.deps, signal());
    expect(result.outcome).toBe('failed');
    expect(result.error!.code).toBe('GENERATION_FAILED');
    expect(result.error!.transient).toBe(true);
    expect(t.provider.prompts).toHaveLength(3);
    expect(statuses(t.notifier.delivered)).toEqual(['processing', 'failed']);
    expect(t.notifier.delivered[1].error).toEqual({ code: 'GENERATION_FAILED', message: USER_MESSAGES.GENERATION_FAILED });
    expect(result.error!.message).toBe('Image API answered 503');
    expect(t.checkpoints.ops).toEqual(['open']);
  });

  it('transient on every call with Bull attempts left: retry, and no failure event yet', async () => {
    const t = setup({ maxRetries: 2 });
    t.provider.script = [transientError('Image API answered 503')];
    const result = await runJob(jobRun({ attempt: 1, maxAttempts: 3 }), t.deps, signal());
    expect(result.outcome).toBe('retry');
    expect(result.error!.code).toBe('GENERATION_FAILED');
    expect(t.provider.prompts).toHaveLength(3);
    expect(t.notifier.notifyCalls).toHaveLength(0);
    expect(t.notifier.delivered.some((e) => e.status === 'failed')).toBe(false);
  });

  it('CONTENT_REJECTED is never retried: one call, failed, the user told', async () => {
    const t = setup({ maxRetries: 3 });
    t.provider.script = [permanentError('CONTENT_REJECTED', 'The image was refused by moderation'), IMAGE];
    const result = await runJob(jobRun({ attempt: 1, maxAttempts: 3 }), t.deps, signal());
    expect(result.outcome).toBe('failed');
    expect(result.error!.code).toBe('CONTENT_REJECTED');
    expect(t.provider.prompts).toHaveLength(1);
    expect(t.notifier.delivered[t.notifier.delivered.length - 1]).toMatchObject({ status: 'failed', error: { code: 'CONTENT_REJECTED' } });
  });

  it('a plain TypeError from the provider is a bug: failed GENERATION_FAILED, not retried', async () => {
    const t = setup({ maxRetries: 3 });
    t.provider.script = [new TypeError("Cannot read properties of undefined (reading 'b64_json')"), IMAGE];
    const result = await runJob(jobRun({ attempt: 1, maxAttempts: 3 }), t.deps, signal());
    expect(result.outcome).toBe('failed');
    expect(result.error!.code).toBe('GENERATION_FAILED');
    expect(result.error!.transient).toBe(false);
    expect(t.provider.prompts).toHaveLength(1);
    expect(t.notifier.delivered[t.notifier.delivered.length - 1]).toMatchObject({ status: 'failed', error: { code: 'GENERATION_FAILED' } });
    expect(t.logs.lines.some((l) => l.msg === 'unexpected error in the pipeline' && l.level === 'error')).toBe(true);
  });
});

describe('runJob: checkpoints', () => {
  it('a checkpoint of this very job is delivered without calling the provider, even once the token expired', async () => {
    const t = setup();
    const saved = { ...IMAGE, base64: 'c2F2ZWQ=' };
    t.checkpoints.saved.set('17', { fingerprint: FINGERPRINT, image: saved });
    // The earlier run verified the token before it paid for the image; it may have expired since.
    t.verifier.error = permanentError('SESSION_EXPIRED', SESSION_EXPIRED_MESSAGE);
    const result = await runJob(jobRun({ attempt: 2, maxAttempts: 2 }), t.deps, signal());
    expect(result).toMatchObject({ outcome: 'completed', fromCheckpoint: true, costUsd: 0 });
    expect(t.provider.prompts).toHaveLength(0);
    expect(t.verifier.calls).toHaveLength(0);
    expect(t.notifier.delivered[t.notifier.delivered.length - 1]).toEqual({ userId: USER, number: 3, jobId: '17', status: 'completed', image: saved });
    expect(t.checkpoints.ops).toEqual(['open']);
  });

  it('a checkpoint with another fingerprint (a reused job id, another user) is ignored', async () => {
    const t = setup();
    const foreign = { ...IMAGE, base64: 'b3RoZXI=' };
    t.checkpoints.saved.set('17', { fingerprint: `someone-else:${CREATED_AT - 5000}`, image: foreign });
    const result = await runJob(jobRun(), t.deps, signal());
    expect(result.outcome).toBe('completed');
    expect(result.fromCheckpoint).toBe(false);
    expect(t.verifier.calls).toHaveLength(1);
    expect(t.provider.prompts).toHaveLength(1);
    expect(t.notifier.delivered[t.notifier.delivered.length - 1].image).toEqual(IMAGE);
  });

  it('the same user with a different createdAt (a new job reusing the id) is not served the old image', async () => {
    const t = setup();
    t.checkpoints.saved.set('17', { fingerprint: `${USER}:${CREATED_AT - 1}`, image: { ...IMAGE, base64: 'b2xk' } });
    await runJob(jobRun(), t.deps, signal());
    expect(t.provider.prompts).toHaveLength(1);
    expect(t.notifier.delivered[t.notifier.delivered.length - 1].image).toEqual(IMAGE);
  });

  it.each(['open', 'save'] as const)('a checkpoint store failing on %s does not stop the job', async (op) => {
    const t = setup();
    t.checkpoints.failOn.add(op);
    t.notifier.instant = false;
    const result = await runJob(jobRun(), t.deps, signal());
    expect(result.outcome).toBe('completed');
    expect(t.provider.prompts).toHaveLength(1);
    expect(statuses(t.notifier.delivered)).toEqual(['processing', 'completed']);
    expect(t.logs.lines.some((l) => l.level === 'warn' && typeof l.msg === 'string' && l.msg.startsWith('checkpoint'))).toBe(true);
  });
});

describe('runJob: delivery failures', () => {
  it('with attempts left: retry, the checkpoint kept for the next attempt, no failure notification', async () => {
    const t = setup();
    t.notifier.failures = 1;
    const result = await runJob(jobRun({ attempt: 1, maxAttempts: 3 }), t.deps, signal());
    expect(result.outcome).toBe('retry');
    expect(result.error!.transient).toBe(true);
    expect(t.provider.prompts).toHaveLength(1);
    expect(t.notifier.notifyCalls.map((e) => e.status)).toEqual(['completed']);
    expect(t.checkpoints.saved.get('17')).toEqual({ fingerprint: FINGERPRINT, image: IMAGE });
  });

  it('on the last attempt: failed, the checkpoint kept, and the failure only sent if the connection is back', async () => {
    const t = setup();
    t.notifier.failures = 5;
    const result = await runJob(jobRun({ attempt: 1, maxAttempts: 1 }), t.deps, signal());
    expect(result.outcome).toBe('failed');
    expect(result.error!.code).toBe('GENERATION_FAILED');
    expect(result.steps.notify).toBeDefined();
    expect(t.notifier.notifyCalls.map((e) => e.status)).toEqual(['completed']);
    expect(t.timeline.slice(-3)).toEqual(['checkpoint:save', 'notify:completed', 'try:failed']);
    expect(t.checkpoints.saved.has('17')).toBe(true);
  });

  it('the next attempt delivers the kept image without paying again', async () => {
    const t = setup();
    t.notifier.failures = 1;
    const first = await runJob(jobRun({ attempt: 1, maxAttempts: 2 }), t.deps, signal());
    const second = await runJob(jobRun({ attempt: 2, maxAttempts: 2 }), t.deps, signal());
    expect([first.outcome, second.outcome]).toEqual(['retry', 'completed']);
    expect(second.fromCheckpoint).toBe(true);
    expect(t.provider.prompts).toHaveLength(1);
    expect(t.notifier.delivered.filter((e) => e.status === 'completed')).toHaveLength(1);
  });

  it('a failure notification that cannot be delivered is logged, the job still ends failed', async () => {
    const t = setup();
    t.provider.script = [permanentError('CONTENT_REJECTED', 'refused')];
    t.notifier.failures = 1;
    const result = await runJob(jobRun(), t.deps, signal());
    expect(result.outcome).toBe('failed');
    expect(result.error!.code).toBe('CONTENT_REJECTED');
    expect(t.logs.lines.some((l) => l.msg === 'failure notification not delivered')).toBe(true);
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
    expect(t.checkpoints.saved.has('17')).toBe(true);
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
      const result = await runJob(jobRun(), t.deps, signal());
      expect(result.outcome).toBe('completed');
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
    const result = await runJob(jobRun({ attempt: 1, maxAttempts: 3 }), t.deps, signal());
    expect(result.outcome).toBe('failed');
    expect(result.error).toMatchObject({ code: 'GENERATION_FAILED', transient: false });
    expect(result.error!.message).toMatch(/GENERATION_DEADLINE_MS/);
    expect(result.error!.cause).toMatchObject({ message: 'Image API 503: busy' });
    expect(t.provider.prompts).toHaveLength(1);
    expect(waits).toEqual([]);
    expect(t.logs.lines.filter((l) => l.msg === 'generate failed, retrying')).toEqual([]);
    expect(t.notifier.delivered[t.notifier.delivered.length - 1]).toMatchObject({ status: 'failed', error: { code: 'GENERATION_FAILED' } });
  });

  it("honours the deadline for a rate limit's Retry-After under the default delay policy", async () => {
    const t = setup({ generationDeadlineMs: 10_000, maxRetries: 3 });
    const waits: number[] = [];
    delete t.deps.retryDelay;
    t.deps.sleep = async (ms) => void waits.push(ms);
    t.provider.script = [rateLimitedError('Image API 429: slow down', { status: 429, retryAfterMs: 60_000 })];
    const result = await runJob(jobRun(), t.deps, signal());
    expect(result.error).toMatchObject({ code: 'GENERATION_FAILED', transient: false });
    expect(waits).toEqual([]);
    expect(t.provider.prompts).toHaveLength(1);
  });

  it('takes the retry waits that end before the deadline', async () => {
    const t = setup({ generationDeadlineMs: 600_000, maxRetries: 3 });
    const waits: number[] = [];
    t.deps.retryDelay = () => 1000;
    t.deps.sleep = async (ms) => void waits.push(ms);
    t.provider.script = [transientError('503'), transientError('503'), IMAGE];
    const result = await runJob(jobRun(), t.deps, signal());
    expect(result.outcome).toBe('completed');
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
    const result = await runJob(jobRun(), t.deps, signal());
    expect(result.outcome).toBe('completed');
    expect(waits).toEqual([5000]);
  });
});

describe('runJob: refusal memory', () => {
  it('remembers a moderation refusal for this user and the prepared prompt', async () => {
    const t = setup({ promptPrefix: 'Style: ' });
    const refusals = withRefusals(t);
    t.provider.script = [moderated()];
    const result = await runJob(jobRun(), t.deps, signal());
    expect(result).toMatchObject({ outcome: 'failed', error: { code: 'CONTENT_REJECTED' } });
    expect(result.refusalRemembered).toBeUndefined();
    expect([...refusals.refused]).toEqual([JSON.stringify([USER, 'Style: a red fox in the snow'])]);
    expect(t.timeline).toEqual(['checkpoint:open', 'verify', 'try:processing', 'refusals:has', 'generate', 'refusals:remember', 'notify:failed']);
  });

  it('refuses the same prompt again without calling the API, after the token is verified, and says so', async () => {
    const t = setup();
    const refusals = withRefusals(t);
    t.provider.script = [moderated(), IMAGE];
    await runJob(jobRun(), t.deps, signal());
    t.timeline.length = 0;
    const again = await runJob(jobRun({ jobId: '18' }), t.deps, signal());
    expect(again).toMatchObject({ outcome: 'failed', refusalRemembered: true, error: { code: 'CONTENT_REJECTED', transient: false } });
    expect(again.steps.generate).toEqual(expect.any(Number));
    expect(t.provider.prompts).toHaveLength(1);
    expect(t.timeline).toEqual(['checkpoint:open', 'verify', 'try:processing', 'refusals:has', 'notify:failed']);
    expect(t.notifier.delivered[t.notifier.delivered.length - 1]).toEqual({
      userId: USER,
      number: 3,
      jobId: '18',
      status: 'failed',
      error: { code: 'CONTENT_REJECTED', message: USER_MESSAGES.CONTENT_REJECTED },
    });
    expect(refusals.calls.filter((c) => c === 'remember')).toHaveLength(1);
  });

  it('does not refuse the same prompt for another user, nor another prompt for the same user', async () => {
    const t = setup();
    withRefusals(t);
    t.provider.script = [moderated(), IMAGE];
    await runJob(jobRun(), t.deps, signal());
    const otherUser = await runJob(jobRun({ data: { Id: 'user-43', Token: 't', Prompt: 'a red fox in the snow' } }), t.deps, signal());
    const otherPrompt = await runJob(jobRun({ data: { Id: USER, Token: 't', Prompt: 'a red fox in the rain' } }), t.deps, signal());
    expect([otherUser.outcome, otherPrompt.outcome]).toEqual(['completed', 'completed']);
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
    const result = await runJob(jobRun(), t.deps, signal());
    expect(result.outcome).toBe('completed');
    expect(t.provider.prompts).toHaveLength(1);
    expect(t.logs.lines).toContainEqual(expect.objectContaining({ level: 'warn', msg: 'refusal memory unreadable, asking the image API', jobId: '17' }));
  });

  it('a refusal that cannot be remembered still ends CONTENT_REJECTED, warned, and the user told', async () => {
    const t = setup();
    const refusals = withRefusals(t);
    refusals.failOn.add('remember');
    t.provider.script = [moderated()];
    const result = await runJob(jobRun(), t.deps, signal());
    expect(result).toMatchObject({ outcome: 'failed', error: { code: 'CONTENT_REJECTED' } });
    expect(t.logs.lines).toContainEqual(expect.objectContaining({ level: 'warn', msg: 'refusal not remembered' }));
    expect(t.notifier.delivered[t.notifier.delivered.length - 1]).toMatchObject({ status: 'failed', error: { code: 'CONTENT_REJECTED' } });
  });

  it('is not consulted for an image already checkpointed', async () => {
    const t = setup();
    const refusals = withRefusals(t);
    t.checkpoints.saved.set('17', { fingerprint: FINGERPRINT, image: IMAGE });
    const result = await runJob(jobRun(), t.deps, signal());
    expect(result.outcome).toBe('completed');
    expect(refusals.calls).toEqual([]);
  });
});
