import { permanentError, WorkerError } from '../errors';
import type { Logger } from '../logger';
import { backoffDelayMs } from '../retryPolicy';
import { sleep as cancellableSleep } from '../sleep';
import type { GeneratedImage, ImageProvider, ImageRequest } from '../types';
import type { Pacer } from './pacer';

export interface CapacityOptions {
  /** The fleet's shared pace; null when GROK_RATE_LIMIT=0. */
  pacer: Pacer | null;
  logger: Logger;
  sleep?: (ms: number, signal?: AbortSignal) => Promise<void>;
}

/** What one job's way to the image API reports to its runner. */
export interface CapacityHooks {
  /** Each request got its slot: the first call lets the worker claim the next job. */
  onSlot?: () => void;
  /** Asked right before a request is sent (and paid for): false stops the job (its lease was lost). */
  mayPay?: () => Promise<boolean>;
  /** An answer (not a rate limit) came after `ms`: the in-flight limit follows the API's latency. */
  onAnswer?: (ms: number) => void;
}

/**
 * One job's way to the image API: every request (first tries and retries alike) waits for its slot in the
 * fleet's pace, and a rate-limit 429 is a wait, not a failure: it slows the fleet and asks again, without
 * using up the job's retries. Only the request's `deadlineAt` (the pipeline sets one per job from
 * GENERATION_DEADLINE_MS) turns waiting into GENERATION_FAILED; without one the wait has no end of its own.
 */
export function withCapacity(provider: ImageProvider, options: CapacityOptions, jobId: string, hooks: CapacityHooks = {}): ImageProvider {
  const { pacer, logger, sleep = cancellableSleep } = options;
  const { onSlot = () => undefined, mayPay, onAnswer } = hooks;
  return {
    async generate(request: ImageRequest, signal: AbortSignal): Promise<GeneratedImage> {
      const { deadlineAt = Infinity } = request;
      for (let rateLimited = 0; ; rateLimited++) {
        if (pacer) {
          const waitMs = await pacer.acquire(Number.isFinite(deadlineAt) ? deadlineAt - Date.now() : undefined);
          if (waitMs === null) throw noCapacity();
          onSlot();
          await sleep(waitMs, signal);
        } else {
          onSlot();
        }
        signal.throwIfAborted();
        if (mayPay && !(await mayPay())) signal.throwIfAborted();
        const sentAt = performance.now();
        try {
          const image = await provider.generate(request, signal);
          onAnswer?.(performance.now() - sentAt);
          return image;
        } catch (err) {
          if (!(err instanceof WorkerError) || !err.rateLimited) {
            if (err instanceof WorkerError && err.status !== undefined) onAnswer?.(performance.now() - sentAt);
            throw err;
          }
          const waitMs = err.retryAfterMs ?? backoffDelayMs(rateLimited + 1);
          logger.info({ jobId, retryAfterMs: err.retryAfterMs, rateLimited: rateLimited + 1 }, 'image API rate limit reached: waiting');
          // With a pacer the wait is the fleet's (the next slot comes after it); without one, this job waits alone.
          if (pacer) await pacer.slowDown(err.retryAfterMs);
          else await sleep(Math.min(waitMs, Math.max(0, deadlineAt - Date.now())), signal);
          if (Date.now() >= deadlineAt) throw noCapacity(err);
        }
      }
    },
  };
}

function noCapacity(cause?: unknown): WorkerError {
  return permanentError('GENERATION_FAILED', 'No image API capacity within GENERATION_DEADLINE_MS', { cause });
}
