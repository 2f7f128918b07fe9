import { ClaimLostError, errorSummary } from '../base/errors';
import type { Logger } from '../base/logger';
import { backoffDelayMs } from '../base/retryPolicy';
import { sleep } from '../base/sleep';
import { Throttle } from '../base/throttle';
import type { Claim, FairQueue, Presence } from './fairQueue';
import { PRESENCE_GRACE_MS } from './presence';

interface Ours {
  claim: Claim;
  controller: AbortController;
  /** performance.now() when Redis last confirmed the claim (taking it, a renewal); -Infinity: ask again. */
  confirmedAt: number;
  /** Its run is recording its end: whether the claim is still ours is END's to say (a renewal racing it would not know). */
  ending: boolean;
}

/**
 * The claims this worker has, each known by its token: a run is its claim. Renewed every third of the lease; a
 * claim found lost aborts its own run's signal and nobody else's (the same job may be claimed again by this very
 * worker under another token). A run asks `stillOurs` before paying and before delivering; that costs a round trip
 * only when the last confirmation is old enough for the claim to have been taken back since, and when Redis does not
 * answer it waits until Redis says, so nothing is paid or delivered on a claim that may be gone.
 *
 * How old is too old: half a lease, for a claim can lapse only by its deadline. With presence on, the fleet takes
 * a worker's claims back PRESENCE_GRACE_MS after it finds the worker's subscription gone, and a subscription can die
 * without its connection noticing (a NAT dropping an idle connection): then only that long, and every renewal reads
 * this worker's own presence too, so a confirmation never hides a subscription already gone.
 */
export class Claims {
  private readonly ours = new Map<string, Ours>();
  private timer: NodeJS.Timeout | undefined;
  private readonly throttle = new Throttle(30_000);
  /**
   * While this worker may look gone to the fleet (its subscription dropped), its claims can be taken back within
   * seconds, not only after their lease: every stillOurs asks Redis, and only answers asked for afterwards count.
   */
  private distrusted = false;
  private distrustedAt = -Infinity;

  constructor(
    private readonly fair: FairQueue,
    private readonly leaseMs: number,
    private readonly logger: Logger,
    private readonly hooks: {
      /** This worker's id and how the fleet tells it is present (see presence.ts). */
      self(): { presence: Presence; worker: string };
      /** A claim was found lost. */
      onLost?(claim: Claim): void;
      /** This worker's subscription is gone while its connection says nothing: reconnect it. */
      onAbsent?(): void;
    } = { self: () => ({ presence: 'off', worker: '' }) },
  ) {}

  /** How long a confirmation is trusted (see the class' comment). */
  private get trustMs(): number {
    return this.hooks.self().presence === 'off' ? this.leaseMs / 2 : Math.min(this.leaseMs / 2, PRESENCE_GRACE_MS);
  }

  /** What a renewal said of this worker's own subscription. */
  private heard(present: boolean | null): void {
    if (present !== false || this.distrusted) return;
    this.logger.warn({ component: 'fair-queue' }, "this worker's subscription is gone without a word: reconnecting; claims are confirmed with Redis meanwhile");
    this.distrust();
    this.hooks.onAbsent?.();
  }

  start(): void {
    this.timer = setInterval(() => void this.renew(), Math.max(200, Math.floor(this.leaseMs / 3)));
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
  }

  /** A claim just made; its run listens to the signal returned (aborted with a ClaimLostError if it is lost). */
  take(claim: Claim): AbortSignal {
    const controller = new AbortController();
    this.ours.set(claim.token, { claim, controller, confirmedAt: performance.now(), ending: false });
    return controller.signal;
  }

  /** The run records its end now: renewals go on, but only END says whether the claim was still ours. */
  ending(claim: Claim): void {
    const entry = this.ours.get(claim.token);
    if (entry) entry.ending = true;
  }

  release(claim: Claim): void {
    this.ours.delete(claim.token);
  }

  /** This worker may look gone to the fleet (its subscription dropped): no confirmation is taken on trust. */
  distrust(): void {
    this.distrusted = true;
    this.distrustedAt = performance.now();
  }

  /**
   * This worker's subscription is back: confirmations last half a lease again, those asked for from now on. One from
   * before (or during) the drop may predate a take-back by the fleet.
   */
  trust(): void {
    this.distrusted = false;
    this.distrustedAt = performance.now();
  }

  private confirmed(entry: Ours, askedAt: number): void {
    if (askedAt > this.distrustedAt && askedAt > entry.confirmedAt) entry.confirmedAt = askedAt;
  }

  /** Whether this claim is still ours; a lost one aborts its run. Waits while Redis does not answer (`signal` ends the wait). */
  async stillOurs(claim: Claim, signal?: AbortSignal): Promise<boolean> {
    const entry = this.ours.get(claim.token);
    if (!entry || entry.controller.signal.aborted) return false;
    if (!this.distrusted && entry.confirmedAt > this.distrustedAt && performance.now() - entry.confirmedAt < this.trustMs) return true;
    for (let attempt = 1; ; attempt++) {
      const askedAt = performance.now();
      try {
        const { lost, present } = await this.fair.renew([claim], this.hooks.self());
        this.heard(present);
        if (lost.length > 0) {
          this.lost(entry);
          return false;
        }
        this.confirmed(entry, askedAt);
        return true;
      } catch (err) {
        if (entry.controller.signal.aborted) return false;
        if (this.throttle.allow()) {
          this.logger.warn(
            { component: 'fair-queue', err: errorSummary(err) },
            'claims not confirmed: Redis failed; nothing is paid or delivered until it answers',
          );
        }
        await sleep(backoffDelayMs(attempt, { baseMs: 100, maxMs: 2000 }), signal);
      }
    }
  }

  /** Renews every claim this worker has; those that were lost stop their runs. */
  async renew(): Promise<void> {
    const entries = [...this.ours.values()];
    if (entries.length === 0) return;
    const askedAt = performance.now();
    let lost: string[];
    try {
      const reply = await this.fair.renew(
        entries.map((e) => e.claim),
        this.hooks.self(),
      );
      this.heard(reply.present);
      lost = reply.lost;
    } catch (err) {
      if (this.throttle.allow()) this.logger.warn({ component: 'fair-queue', err: errorSummary(err) }, 'claims not renewed: Redis failed');
      return;
    }
    const gone = new Set(lost);
    for (const entry of entries) {
      if (gone.has(entry.claim.token)) this.lost(entry);
      else this.confirmed(entry, askedAt);
    }
  }

  private lost(entry: Ours): void {
    if (entry.controller.signal.aborted || entry.ending) return;
    const { claim } = entry;
    this.logger.warn({ jobId: claim.job.id, fid: claim.job.fid, claim: claim.token }, 'claim lost: stopping its run (the job was taken back)');
    entry.controller.abort(new ClaimLostError(claim.job.id));
    this.hooks.onLost?.(claim);
  }
}
