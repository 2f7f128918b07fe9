import { errorSummary } from '../base/errors';
import type { Logger } from '../base/logger';
import { Throttle } from '../base/throttle';
import type { Claims } from './claims';
import type { FairQueue, KnownClaims, Presence } from './fairQueue';
import { PRESENCE_GRACE_MS } from './presence';

/** How often Bull's active list is swept when STALLED_INTERVAL_MS is 0 (lapsed claims are then never taken back). */
const SWEEP_DEFAULT_MS = 30_000;

/**
 * Bull's lock of a job the fair queue has outlasts two sweeps and a margin for a late one (a sweep's length, at most
 * 5 s): a live fleet keeps it, and once no worker of the new kind runs (a roll-back to a plain Bull worker), it
 * lapses and Bull's own stalled check returns the job to Bull's wait list. 65 s with the default 30 s.
 */
export function bullLockMs(stalledIntervalMs: number): number {
  const sweepMs = stalledIntervalMs || SWEEP_DEFAULT_MS;
  return 2 * sweepMs + Math.min(sweepMs, 5000);
}

export interface KeeperSettings {
  /** STALLED_INTERVAL_MS: how often lapsed claims are looked for; 0: never (the sweep still runs). */
  stalledIntervalMs: number;
  maxStalledCount: number;
  /** This worker's id, as its claim tokens start. */
  worker: string;
  /** How a worker's presence is told, now (it is 'off' until this worker's own subscription is up). */
  presence(): Presence;
  /** The claims this worker knows (its runs, its claims under way): see giveBackOrphans. */
  known(): KnownClaims;
}

/** Rounds after the command connection dropped that look for claims of this worker it does not know. */
const ORPHAN_ROUNDS = 2;

/**
 * Looks after what no run owns, on every worker, every STALLED_INTERVAL_MS: takes back the claims nobody will end
 * (lapsed, or of a worker that is gone) and promotes due retries and answers; once per round for the fleet, it
 * sweeps Bull's active list (keeps Bull's locks, takes in what nobody has, puts back what lost its place). It
 * also promotes what this worker put aside, at the moment it is due. After Redis was away it only renews this
 * worker's own claims first: every worker gets a round to renew before any claim is taken back.
 */
export class Keeper {
  private interval: NodeJS.Timeout | undefined;
  private recheck: NodeJS.Timeout | undefined;
  private readonly timers = new Set<NodeJS.Timeout>();
  private readonly throttle = new Throttle(30_000);
  private stopped = false;
  private failuresSeen = 0;
  private orphanRounds = 0;
  private ticking: Promise<void> = Promise.resolve();

  constructor(
    private readonly fair: FairQueue,
    private readonly claims: Claims,
    private readonly settings: KeeperSettings,
    private readonly logger: Logger,
  ) {}

  private get intervalMs(): number {
    return this.settings.stalledIntervalMs || SWEEP_DEFAULT_MS;
  }

  start(): void {
    this.failuresSeen = this.fair.failures;
    this.tick();
    this.interval = setInterval(() => this.tick(), this.intervalMs);
    this.interval.unref();
  }

  stop(): void {
    this.stopped = true;
    clearInterval(this.interval);
    clearTimeout(this.recheck);
    this.timers.forEach((timer) => clearTimeout(timer));
    this.timers.clear();
  }

  /**
   * The command connection dropped: a reply may have been lost and the command sent again, leaving a claim behind
   * that this worker never learned of. The next rounds give such claims back.
   */
  suspectOrphans(): void {
    this.orphanRounds = ORPHAN_ROUNDS;
  }

  /** Promotes what this worker put aside once it is due (every keeper does it too, should this worker die). */
  promoteAfter(delayMs: number): void {
    if (this.stopped) return;
    const timer = setTimeout(() => {
      this.timers.delete(timer);
      this.fair.promote().catch((err: unknown) => this.warn('retries and answers not promoted: Redis failed; the keepers will', err));
    }, delayMs + 5);
    timer.unref();
    this.timers.add(timer);
  }

  /** One round; rounds never overlap. */
  tick(): void {
    this.ticking = this.ticking.then(() => this.round());
  }

  private async round(): Promise<void> {
    if (this.stopped) return;
    const redisWasAway = this.fair.failures !== this.failuresSeen;
    this.failuresSeen = this.fair.failures;
    await this.claims.renew();
    if (this.orphanRounds > 0) await this.giveBackOrphans();
    if (this.settings.stalledIntervalMs > 0 && !redisWasAway) await this.reap();
    await this.sweep();
  }

  private async giveBackOrphans(): Promise<void> {
    try {
      const given = await this.fair.giveBackOrphans(this.settings.worker, this.settings.known());
      this.orphanRounds -= 1;
      if (given > 0) this.logger.warn({ given }, 'jobs claimed by a command sent twice after a dropped connection were given back');
    } catch (err) {
      this.warn('claims not checked after the connection dropped: Redis failed', err);
    }
  }

  private async reap(): Promise<void> {
    const { maxStalledCount, worker } = this.settings;
    try {
      const { requeued, stalledOut, suspects } = await this.fair.reap({
        maxStalls: maxStalledCount,
        presence: this.settings.presence(),
        graceMs: PRESENCE_GRACE_MS,
        worker,
      });
      if (requeued + stalledOut > 0) this.logger.warn({ requeued, stalledOut }, 'jobs whose run stopped were taken back and run again');
      if (suspects > 0 && !this.recheck) {
        // A worker looks gone: look again once its grace is over, not a whole interval later.
        this.recheck = setTimeout(() => {
          this.recheck = undefined;
          this.tick();
        }, PRESENCE_GRACE_MS + 50);
        this.recheck.unref();
      }
    } catch (err) {
      this.warn('stalled jobs not checked: Redis failed', err);
    }
  }

  private async sweep(): Promise<void> {
    try {
      const swept = await this.fair.sweep({ worker: this.settings.worker, roundMs: Math.floor(this.intervalMs * 0.9), presence: this.settings.presence() });
      if (swept && swept.taken + swept.relinked > 0) {
        this.logger.warn({ taken: swept.taken, relinked: swept.relinked }, 'jobs locked for the fair queue that it had lost were taken in again');
      }
    } catch (err) {
      this.warn("Bull's active list not swept: Redis failed", err);
    }
  }

  private warn(message: string, err: unknown): void {
    if (this.throttle.allow()) this.logger.warn({ component: 'fair-queue', err: errorSummary(err) }, message);
  }
}
