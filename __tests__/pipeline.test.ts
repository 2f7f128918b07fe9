import { Writable } from 'node:stream';
import { abortError, permanentError, transientError, WorkerError } from '../src/errors';
import { createLogger } from '../src/logger';
import { JobRun, PipelineDeps, PipelineSettings, runJob } from '../src/pipeline';
import { SESSION_EXPIRED_MESSAGE } from '../src/tokenVerifier';
import type { CheckpointStore, GeneratedImage, ImageProvider, ImageRequest, JobEvent, Notifier, TokenVerifier } from '../src/types';

const USER = 'user-42';
const CREATED_AT = 1_700_000_000_000;
const FINGERPRINT = `${USER}:${CREATED_AT}`;
const IMAGE: GeneratedImage = { base64: 'aGVsbG8gd29ybGQ=', mimeType: 'image/png', revisedPrompt: 'a fox, revised', costUsd: 0.07 };

/** Pino lines captured in memory, parsed. */
class LogLines extends Writable {
  readonly lines: Array<Record<string, unknown>> = [];
  override _write(chunk: Buffer, _enc: BufferEncoding, done: () => void): void {
    for (const line of chunk.toString().split('\n').filter(Boolean)) this.lines.push(JSON.parse(line) as Record<string, unknown>);
    done();
  }
}

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
  /** What each call does, in order; the last entry repeats. */
  script: unknown[] = [IMAGE];
  onCall?: () => void;
  constructor(private readonly timeline: string[]) {}
  async generate({ prompt }: ImageRequest, signal: AbortSignal): Promise<GeneratedImage> {
    this.prompts.push(prompt);
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

function setup(settings: Partial<PipelineSettings> = {}) {
  const timeline: string[] = [];
  const logs = new LogLines();
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
  it('verifies, reports progress, generates, checkpoints, delivers the image and forgets the checkpoint', async () => {
    const t = setup();
    const result = await runJob(jobRun(), t.deps, signal());

    expect(result).toMatchObject({ outcome: 'completed', userId: USER, promptChars: 'a red fox in the snow'.length, imageBytes: 11, costUsd: 0.07 });
    expect(result.error).toBeUndefined();
    expect(result.fromCheckpoint).toBe(false);
    expect(Object.keys(result.steps).sort()).toEqual(['generate', 'notify', 'token']);
    for (const ms of Object.values(result.steps)) expect(ms).toBeGreaterThanOrEqual(0);

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
    expect(t.notifier.delivered[0]).toMatchObject({ userId: USER, number: 'slot-2', jobId: '17', status: 'failed', error: { code: 'INVALID_JOB' } });
    expect(t.notifier.delivered[0].error!.message).toMatch(/Prompt/);
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
  ] as const)('%s is permanent: failed, the user told, nothing generated, no progress before it', async (code, message) => {
    const t = setup();
    t.verifier.error = permanentError(code, message);
    const result = await runJob(jobRun({ attempt: 1, maxAttempts: 3 }), t.deps, signal());
    expect(result.outcome).toBe('failed');
    expect(result.error!.code).toBe(code);
    expect(t.verifier.calls).toHaveLength(1);
    expect(t.provider.prompts).toHaveLength(0);
    expect(t.notifier.delivered).toEqual([{ userId: USER, number: 3, jobId: '17', status: 'failed', error: { code, message } }]);
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
    expect(t.notifier.delivered[1].error).toEqual({ code: 'GENERATION_FAILED', message: 'Image API answered 503' });
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

  it("a checkpoint with another fingerprint (a reused job id, another user) is ignored", async () => {
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
    const started = Date.now();
    await expect(runJob(jobRun(), t.deps, controller.signal)).rejects.toMatchObject({ name: 'AbortError' });
    expect(Date.now() - started).toBeLessThan(1000);
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
