import { errorSummary } from './errors';
import type { Logger } from './logger';
import { timeLimit } from './sleep';

/** Each resource gets this long to close; one that hangs (Redis away) must not hold the rest. */
const RELEASE_LIMIT_MS = 1500;

/**
 * What must be closed, in the order it was opened; released last-in-first-out, each step guarded on its own and
 * bounded in time (graphile/worker's releasers). Used on a clean stop and on a start that failed half-way.
 */
export class Releasers {
  private readonly steps: Array<{ name: string; release: () => Promise<void> | void }> = [];

  constructor(private readonly logger: Logger) {}

  add(name: string, release: () => Promise<void> | void): void {
    this.steps.push({ name, release });
  }

  /** Runs every step once, newest first; a step that fails or hangs is logged and passed over. */
  async releaseAll(): Promise<void> {
    while (this.steps.length > 0) {
      const { name, release } = this.steps.pop()!;
      try {
        await Promise.race([Promise.resolve().then(release), timeLimit(RELEASE_LIMIT_MS)]);
      } catch (err) {
        this.logger.warn({ resource: name, err: errorSummary(err) }, 'release failed');
      }
    }
  }
}
