import { errorSummary, LeaseLostError } from '../errors';
import type { Logger } from '../logger';
import { Throttle } from '../throttle';
import type { FairJob, FairQueue } from './fairQueue';

interface Held {
  job: FairJob;
  controller: AbortController;
  /** performance.now() when Redis last confirmed the lease (the claim, a renewal). */
  confirmedAt: number;
}

/**
 * Keeps the leases of the jobs this worker runs: renews them every third of the lease, and aborts the run of a
 * job whose lease was lost (it lapsed while the worker was frozen or cut off from Redis, and the reaper gave the
 * job to another worker). A run asks `stillHeld` before paying and before delivering; that costs a round trip
 * only when the last confirmation is old enough for the lease to have lapsed.
 */
export class Leases {
  private readonly held = new Map<string, Held>();
  private timer: NodeJS.Timeout | undefined;
  private readonly throttle = new Throttle(30_000);

  constructor(
    private readonly fair: FairQueue,
    private readonly leaseMs: number,
    private readonly logger: Logger,
  ) {}

  start(): void {
    this.timer = setInterval(() => void this.renew(), Math.max(200, Math.floor(this.leaseMs / 3)));
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
  }

  /** A job this worker just claimed; its run listens to the signal returned (aborted if the lease is lost). */
  hold(job: FairJob): AbortSignal {
    const controller = new AbortController();
    this.held.set(job.fid, { job, controller, confirmedAt: performance.now() });
    return controller.signal;
  }

  release(job: FairJob): void {
    this.held.delete(job.fid);
  }

  /** Whether this worker still holds `job`; a lost lease aborts its run. */
  async stillHeld(job: FairJob): Promise<boolean> {
    const entry = this.held.get(job.fid);
    if (!entry || entry.controller.signal.aborted) return false;
    if (performance.now() - entry.confirmedAt < this.leaseMs / 2) return true;
    const askedAt = performance.now();
    if (await this.fair.confirm(job)) {
      entry.confirmedAt = askedAt;
      return true;
    }
    this.lost(entry);
    return false;
  }

  /** Renews every lease this worker holds; those that were lost stop their runs. */
  async renew(): Promise<void> {
    const entries = [...this.held.values()];
    if (entries.length === 0) return;
    const askedAt = performance.now();
    let lost: string[];
    try {
      lost = await this.fair.renew(entries.map((e) => e.job));
    } catch (err) {
      if (this.throttle.allow()) this.logger.warn({ component: 'fair-queue', err: errorSummary(err) }, 'job leases not renewed: Redis failed');
      return;
    }
    const gone = new Set(lost);
    for (const entry of entries) {
      if (gone.has(entry.job.fid)) this.lost(entry);
      else entry.confirmedAt = askedAt;
    }
  }

  private lost(entry: Held): void {
    if (entry.controller.signal.aborted) return;
    this.logger.warn({ jobId: entry.job.id, fid: entry.job.fid }, 'job lease lost: stopping its run (another worker may hold the job)');
    entry.controller.abort(new LeaseLostError(entry.job.id));
  }
}
