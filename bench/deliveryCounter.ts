import type { BenchChild } from './benchChild';
import type { FinalNotification } from './childProtocol';

/**
 * Counts final notifications as the relay received them: completion is what users see, not what a worker
 * logs. Only rooms starting with the current run's tag count, so a late message from an earlier run cannot.
 */
export class DeliveryCounter {
  private tag = '\u0000';
  private readonly seen = new Set<string>();
  private target = Infinity;
  private wake?: () => void;
  completed = 0;
  failed = 0;
  duplicates = 0;
  /** performance.now() of the latest final notification. */
  lastAt = 0;
  /** performance.now() of every final notification of this run, in order. */
  times: number[] = [];

  constructor(relay: BenchChild) {
    relay.onMessage((message) => {
      if (message.type === 'final') this.onFinal(message);
    });
  }

  /** Starts a run: counters back to zero, only rooms starting with `tag` count from now on. */
  begin(tag: string): void {
    this.tag = tag;
    this.seen.clear();
    this.completed = 0;
    this.failed = 0;
    this.duplicates = 0;
    this.lastAt = 0;
    this.times = [];
  }

  /** Resolves once `total` distinct jobs of this run have had their final notification; rejects after `timeoutMs`. */
  waitFor(total: number, timeoutMs: number): Promise<void> {
    if (this.seen.size >= total) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.wake = undefined;
        this.target = Infinity;
        reject(new Error(`only ${this.seen.size} of ${total} jobs notified within ${timeoutMs} ms`));
      }, timeoutMs);
      this.target = total;
      this.wake = () => {
        clearTimeout(timer);
        this.wake = undefined;
        this.target = Infinity;
        resolve();
      };
    });
  }

  private onFinal({ room, jobId, status }: FinalNotification): void {
    if (!room.startsWith(this.tag)) return;
    if (this.seen.has(jobId)) {
      this.duplicates++;
      return;
    }
    this.seen.add(jobId);
    if (status === 'completed') this.completed++;
    else this.failed++;
    this.lastAt = performance.now();
    this.times.push(this.lastAt);
    if (this.seen.size >= this.target) this.wake?.();
  }
}
