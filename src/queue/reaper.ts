import { errorSummary } from '../errors';
import type { Logger } from '../logger';
import { Throttle } from '../throttle';
import type { FairQueue } from './fairQueue';

/**
 * Looks after what no running worker owns: every STALLED_INTERVAL_MS it requeues jobs whose lease lapsed (their
 * worker died or froze) and promotes due retries and held answers; and it promotes them at the moment they are
 * due when this worker put them aside.
 */
export class Reaper {
  private interval: NodeJS.Timeout | undefined;
  private readonly timers = new Set<NodeJS.Timeout>();
  private readonly throttle = new Throttle(30_000);

  constructor(
    private readonly fair: FairQueue,
    private readonly settings: { stalledIntervalMs: number; maxStalledCount: number },
    private readonly logger: Logger,
  ) {}

  start(): void {
    if (this.settings.stalledIntervalMs <= 0) return;
    void this.reap();
    this.interval = setInterval(() => void this.reap(), this.settings.stalledIntervalMs);
    this.interval.unref();
  }

  stop(): void {
    clearInterval(this.interval);
    this.timers.forEach((timer) => clearTimeout(timer));
    this.timers.clear();
  }

  /** Promotes what this worker put aside once it is due (the periodic reap does it too, should this worker die). */
  promoteAfter(delayMs: number): void {
    const timer = setTimeout(() => {
      this.timers.delete(timer);
      this.fair.promote().catch((err: unknown) => this.warn('retries and answers not promoted: Redis failed; the reaper will', err));
    }, delayMs + 5);
    timer.unref();
    this.timers.add(timer);
  }

  async reap(): Promise<void> {
    try {
      const { requeued, stalledOut } = await this.fair.reap(this.settings.maxStalledCount);
      if (requeued + stalledOut > 0) this.logger.warn({ requeued, stalledOut }, 'jobs whose worker stopped renewing their lease were put back in line');
    } catch (err) {
      this.warn('stalled jobs not checked: Redis failed', err);
    }
  }

  private warn(message: string, err: unknown): void {
    if (this.throttle.allow()) this.logger.warn({ component: 'fair-queue', err: errorSummary(err) }, message);
  }
}
