import { abortError, transientError } from '../../src/base/errors';
import type { CheckpointStore, GeneratedImage, ImageProvider, ImageRequest, JobEvent, Notifier, RefusalMemory, TokenVerifier } from '../../src/pipeline/ports';
import type { FairJob } from '../../src/queue/replies';

/**
 * Small stand-ins for the pipeline's edges, for unit tests of the pipeline and of a run's ending. Each writes what
 * it is asked into a shared timeline, so a test can assert the order of the steps.
 */

export const FAKE_IMAGE: GeneratedImage = { base64: 'aGVsbG8gd29ybGQ=', mimeType: 'image/png', revisedPrompt: 'a fox, revised', costUsd: 0.07 };

/** Resolves when `signal` aborts, with the AbortError a real step would throw. */
function untilAborted(signal: AbortSignal): Promise<never> {
  return new Promise((_, reject) => {
    if (signal.aborted) reject(abortError(signal.reason));
    signal.addEventListener('abort', () => reject(abortError(signal.reason)), { once: true });
  });
}

export class FakeVerifier implements TokenVerifier {
  readonly calls: Array<{ token: string; userId: string }> = [];
  error?: unknown;
  constructor(private readonly timeline: string[] = []) {}
  async verify(token: string, userId: string): Promise<void> {
    this.calls.push({ token, userId });
    this.timeline.push('verify');
    if (this.error !== undefined) throw this.error;
  }
}

export class FakeProvider implements ImageProvider {
  readonly prompts: string[] = [];
  readonly requests: ImageRequest[] = [];
  /** What each call does, in order; the last entry repeats. */
  script: unknown[] = [FAKE_IMAGE];
  onCall?: () => void;
  constructor(private readonly timeline: string[] = []) {}
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

export class FakeNotifier implements Notifier {
  /** Events that reached the user. */
  readonly delivered: JobEvent[] = [];
  /** Every `notify` call, delivered or not. */
  readonly notifyCalls: JobEvent[] = [];
  /** The next `failures` notify calls reject as the real notifier does when it gives up. */
  failures = 0;
  hang = false;
  connected = true;
  /** False: deliveries need waiting (as when the service must acknowledge). */
  instant = true;
  constructor(private readonly timeline: string[] = []) {}
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

/** One job's checkpoint, as the queue's store keeps it; `failOn` makes a call throw as Redis would when it is away. */
export class FakeCheckpoints implements CheckpointStore {
  saved: { fingerprint: string; image: GeneratedImage } | undefined;
  readonly ops: string[] = [];
  failOn = new Set<'open' | 'save'>();
  constructor(private readonly timeline: string[] = []) {}
  async load(fingerprint: string): Promise<GeneratedImage | null> {
    this.record('open');
    return this.saved && this.saved.fingerprint === fingerprint ? this.saved.image : null;
  }
  async save(fingerprint: string, image: GeneratedImage): Promise<void> {
    this.record('save');
    this.saved = { fingerprint, image };
  }
  private record(op: 'open' | 'save'): void {
    this.ops.push(op);
    this.timeline.push(`checkpoint:${op}`);
    if (this.failOn.has(op)) throw new Error(`redis down during ${op}`);
  }
}

/** Remembered refusals in memory; `failOn` makes a call throw as Redis would when it is away. */
export class FakeRefusals implements RefusalMemory {
  readonly refused = new Set<string>();
  readonly calls: string[] = [];
  failOn = new Set<'has' | 'remember'>();
  constructor(private readonly timeline: string[] = []) {}
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

/** A fair queue's job as a claim hands it out, with `overrides`. */
export function fakeFairJob(fid: string, overrides: Partial<FairJob> = {}): FairJob {
  return {
    fid,
    id: fid,
    userId: 'alice',
    data: {},
    createdAt: 0,
    attempts: 1,
    attemptsMade: 0,
    backoff: null,
    ask: '',
    remembered: false,
    lane: 'line',
    hasCheckpoint: false,
    stalledOut: false,
    ...overrides,
  };
}
