import { permanentError, WorkerError } from './errors';
import type { Logger } from './logger';
import type { Pacer } from './pacer';
import { backoffDelayMs } from './retryPolicy';
import { sleep as cancellableSleep } from './sleep';
import type { GeneratedImage, ImageProvider, ImageRequest } from './types';

export interface CapacityOptions {
  /** The fleet's shared pace; null when GROK_RATE_LIMIT=0. */
  pacer: Pacer | null;
  /** GENERATION_DEADLINE_MS: how long one job may wait for capacity, from its first request. */
  deadlineMs: number;
  logger: Logger;
  sleep?: (ms: number, signal?: AbortSignal) => Promise<void>;
}

/**
 * One job's way to the image API: every request (first tries and retries alike) waits for its slot in the
 * fleet's pace, and a rate-limit 429 is a wait, not a failure: it slows the fleet and asks again, without
 * using up the job's retries. Only the deadline turns waiting into GENERATION_FAILED.
 * `onSlot` is called as each request gets its slot; the first call lets the worker claim the next job.
 */
export function withCapacity(provider: ImageProvider, options: CapacityOptions, jobId: string, onSlot: () => void = () => undefined): ImageProvider {
  const { pacer, deadlineMs, logger, sleep = cancellableSleep } = options;
  let firstRequestAt: number | undefined;
  return {
    async generate(request: ImageRequest, signal: AbortSignal): Promise<GeneratedImage> {
      firstRequestAt ??= Date.now();
      const deadlineAt = request.deadlineAt ?? firstRequestAt + deadlineMs;
      for (let rateLimited = 0; ; rateLimited++) {
        if (pacer) {
          const waitMs = await pacer.acquire(deadlineAt - Date.now());
          if (waitMs === null) throw noCapacity(deadlineMs);
          onSlot();
          await sleep(waitMs, signal);
        } else {
          onSlot();
        }
        try {
          return await provider.generate({ ...request, deadlineAt }, signal);
        } catch (err) {
          if (!(err instanceof WorkerError) || !err.rateLimited) throw err;
          const waitMs = err.retryAfterMs ?? backoffDelayMs(rateLimited + 1);
          logger.info({ jobId, retryAfterMs: err.retryAfterMs, rateLimited: rateLimited + 1 }, 'image API rate limit reached: waiting');
          // With a pacer the wait is the fleet's (the next slot comes after it); without one, this job waits alone.
          if (pacer) await pacer.slowDown(err.retryAfterMs);
          else await sleep(Math.min(waitMs, Math.max(0, deadlineAt - Date.now())), signal);
          if (Date.now() >= deadlineAt) throw noCapacity(deadlineMs, err);
        }
      }
    },
  };
}

function noCapacity(deadlineMs: number, cause?: unknown): WorkerError {
  return permanentError('GENERATION_FAILED', `No image API capacity within GENERATION_DEADLINE_MS (${deadlineMs} ms)`, { cause });
}
