/**
 * How many jobs one process keeps in flight. With the pace on, enough to use every slot of it at the latency
 * the image API shows: a request takes `latency`, one starts every `interval`, so about latency / interval are
 * waiting for answers at once; a margin covers the spread of latencies (xAI: p50 7.7 s, p95 11.9 s). Jobs are
 * claimed only when the next slot is free, so a high limit never sends more than the pace; what bounds it is
 * memory: a job in flight holds at most one image (a few MB as base64), and MAX_IN_FLIGHT of them fit easily.
 * Without the pace there is nothing to follow: MAX_IN_FLIGHT, or CONCURRENCY when set, which always caps.
 */
export const MAX_IN_FLIGHT = 100;
/** What the latency is taken to be before any answer is seen: xAI's p95, so the first story is not starved. */
export const INITIAL_LATENCY_MS = 12_000;
const MARGIN = 1.3;
/** Weight of the newest latency in the moving average. */
const SMOOTHING = 0.2;

export class InFlightLimit {
  private latencyMs = INITIAL_LATENCY_MS;

  constructor(
    /** The pace's interval between two requests; null when GROK_RATE_LIMIT=0. */
    private readonly paceIntervalMs: number | null,
    /** CONCURRENCY, when set. */
    private readonly cap?: number,
  ) {}

  /** An answer from the image API took `ms` (success or a failure that was not a rate limit). */
  observe(ms: number): void {
    this.latencyMs += SMOOTHING * (ms - this.latencyMs);
  }

  get limit(): number {
    const byPace = this.paceIntervalMs === null ? MAX_IN_FLIGHT : Math.ceil((this.latencyMs / this.paceIntervalMs) * MARGIN) + 2;
    return Math.max(1, Math.min(byPace, MAX_IN_FLIGHT, this.cap ?? Infinity));
  }

  /** The latency the limit is sized for (a moving average), for the stats line. */
  get observedLatencyMs(): number {
    return Math.round(this.latencyMs);
  }
}
