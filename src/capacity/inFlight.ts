import type { ImageMemory } from './imageMemory';

/**
 * How many jobs one process keeps in flight. With the pace on, enough to use every slot of it at the latency the
 * image API shows: a request takes `latency`, one starts every `interval`, so about latency / interval are waiting for
 * answers at once; a margin covers the spread of latencies (xAI: p50 7.7 s, p95 11.9 s). Jobs are claimed only when
 * the next slot is free, so a high limit never sends more than the pace, at any team limit and any latency. A
 * request waiting for its answer has no image yet: memory is bounded by the image bytes in memory (ImageMemory), not by
 * this count. Without the pace there is no rate to follow: DEFAULT_UNPACED, or CONCURRENCY. CONCURRENCY, when set,
 * is exactly the cap.
 */
const DEFAULT_UNPACED = 100;
/** What the latency is taken to be before any answer is seen: xAI's p95, so the first story is not starved. */
export const INITIAL_LATENCY_MS = 12_000;
const MARGIN = 1.3;
/** Weight of the newest latency in the moving average. */
const SMOOTHING = 0.2;

/** What decides the limit now, for the `ready` and stats lines. */
export type LimitedBy = 'pace' | 'CONCURRENCY' | 'unpaced default' | 'image memory';

export class InFlightLimit {
  private latencyMs = INITIAL_LATENCY_MS;

  constructor(
    /** The pace's interval between two requests; null when GROK_RATE_LIMIT=0. */
    private readonly paceIntervalMs: number | null,
    /** CONCURRENCY, when set. */
    private readonly cap?: number,
    /** The images in memory; full, no new job is claimed. */
    private readonly images?: ImageMemory,
  ) {}

  /** An answer from the image API took `ms` (success or a failure that was not a rate limit). */
  observe(ms: number): void {
    this.latencyMs += SMOOTHING * (ms - this.latencyMs);
  }

  /** Jobs in flight allowed now, given how many are (a full image memory allows no more than are). */
  limitFor(inFlight: number): number {
    return this.images?.full ? Math.min(inFlight, this.limit) : this.limit;
  }

  /** The limit in jobs, whatever the memory has. */
  get limit(): number {
    if (this.cap !== undefined) return this.cap;
    if (this.paceIntervalMs === null) return DEFAULT_UNPACED;
    return Math.max(1, Math.ceil((this.latencyMs / this.paceIntervalMs) * MARGIN) + 2);
  }

  get limitedBy(): LimitedBy {
    if (this.images?.full) return 'image memory';
    if (this.cap !== undefined) return 'CONCURRENCY';
    return this.paceIntervalMs === null ? 'unpaced default' : 'pace';
  }

  /** The latency the limit is sized for (a moving average), for the stats line. */
  get observedLatencyMs(): number {
    return Math.round(this.latencyMs);
  }
}
