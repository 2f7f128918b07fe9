/**
 * At most one yes per interval: for log lines about a failure that repeats every few milliseconds while a
 * service is away (Redis, the notification service), where one line a while says all there is to say.
 */
export class Throttle {
  private last = -Infinity;

  constructor(private readonly intervalMs: number) {}

  allow(now: number = Date.now()): boolean {
    if (now - this.last < this.intervalMs) return false;
    this.last = now;
    return true;
  }

  /** The failure is over: the next one is news again. */
  reset(): void {
    this.last = -Infinity;
  }
}
