import { errorSummary, permanentError, quotaError, transientError, WorkerError } from '../base/errors';
import type { Logger } from '../base/logger';
import { backoffDelayMs } from '../base/retryPolicy';
import { sleep as cancellableSleep } from '../base/sleep';
import type { GeneratedImage, ImageProvider, ImageRequest } from '../pipeline/ports';
import { Bill, isRefusal, Purchase } from './bill';
import type { ImageMemory } from './imageMemory';
import type { Pacer } from './pacer';

export interface CapacityOptions {
  /** The fleet's shared pace; null when GROK_RATE_LIMIT=0. */
  pacer: Pacer | null;
  /** The images this process has in memory: while they fill their budget, no request is sent. */
  images?: ImageMemory;
  /** The fleet's daily bill (USER_DAILY_IMAGES, DAILY_BUDGET_USD), and the list price a request is bought at. */
  bill?: { bill: Bill; priceUsd: number };
  logger: Logger;
  sleep?: (ms: number, signal?: AbortSignal) => Promise<void>;
}

/** What one job's way to the image API reports to its runner. */
export interface CapacityHooks {
  /** Each request got its slot: the first call lets the worker claim the next job. */
  onSlot?: () => void;
  /** Asked right before a request is sent (and paid for): false stops the job (its claim was lost). */
  mayPay?: () => Promise<boolean>;
  /** An answer (not a rate limit) came after `ms`: the in-flight limit follows the API's latency. */
  onAnswer?: (ms: number) => void;
  /** The job's fid, when its claim was promised the next slot of the pace: its first request reserves that slot. */
  promised?: string;
}

/**
 * One job's way to the image API: every request (first tries and retries alike) is bought on the fleet's daily bill
 * (when one is kept: a job over a cap ends QUOTA_REACHED without a request), waits for its slot in the fleet's
 * pace and for room in the process's image memory, and a rate-limit 429 is a wait, not a failure: it slows the
 * fleet and asks again, without using up the job's retries. Only the request's `deadlineAt` (the pipeline sets one
 * per job from GENERATION_DEADLINE_MS) turns waiting into GENERATION_FAILED; without one the wait has no end of its
 * own.
 */
export function withCapacity(provider: ImageProvider, options: CapacityOptions, jobId: string, hooks: CapacityHooks = {}): ImageProvider {
  const { pacer, images, logger, sleep = cancellableSleep } = options;
  const { onSlot = () => undefined, mayPay, onAnswer, promised } = hooks;
  return {
    async generate(request: ImageRequest, signal: AbortSignal): Promise<GeneratedImage> {
      const { deadlineAt = Infinity } = request;
      for (let rateLimited = 0; ; rateLimited++) {
        const purchase = options.bill ? await buy(options.bill, request.userId) : undefined;
        let sent = false;
        let sentAt = 0;
        try {
          if (pacer) {
            const waitMs = await pacer.acquire(Number.isFinite(deadlineAt) ? deadlineAt - Date.now() : undefined, promised);
            if (waitMs === null) throw noCapacity();
            onSlot();
            await sleep(waitMs, signal);
          } else {
            onSlot();
          }
          signal.throwIfAborted();
          await images?.room(signal);
          if (mayPay && !(await mayPay())) signal.throwIfAborted();
          sent = true;
          sentAt = performance.now();
          const image = await expecting(images, () => provider.generate(request, signal));
          onAnswer?.(performance.now() - sentAt);
          await settle(purchase?.settle(image.costUsd), logger, jobId);
          return image;
        } catch (err) {
          // No picture came back. It was not paid for when the request was never sent or xAI answered an error
          // status; it most likely was for a 200 without a usable picture, and for a request cut off after it was
          // sent (a timeout, a dropped connection, shutdown): then it counts at its list price.
          const status = err instanceof WorkerError ? err.status : undefined;
          const refused = status !== undefined && status >= 300;
          if (purchase) await settle(!sent || refused ? purchase.giveBack() : purchase.settle(undefined), logger, jobId);
          if (!(err instanceof WorkerError) || !err.rateLimited) {
            if (status !== undefined) onAnswer?.(performance.now() - sentAt);
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

/** Buys the request's picture, or ends the job QUOTA_REACHED: a cap reached is never a reason to ask the API. */
async function buy({ bill, priceUsd }: NonNullable<CapacityOptions['bill']>, userId: string): Promise<Purchase> {
  let bought;
  try {
    bought = await bill.buy(userId, priceUsd);
  } catch (err) {
    throw transientError("Today's bill could not be read: Redis failed", { cause: err });
  }
  if (!isRefusal(bought)) return bought;
  const why = bought.reason === 'user' ? "USER_DAILY_IMAGES reached for this job's user today" : 'DAILY_BUDGET_USD reached for today';
  throw quotaError(`${why}: no picture was bought`, { alert: bought.alert });
}

/** A bill that cannot be settled (Redis failed) keeps the reservation until the day ends: it errs on spending less. */
async function settle(settling: Promise<void> | undefined, logger: Logger, jobId: string): Promise<void> {
  try {
    await settling;
  } catch (err) {
    logger.warn({ jobId, err: errorSummary(err) }, 'bill not settled: Redis failed; the price stays reserved today');
  }
}

function noCapacity(cause?: unknown): WorkerError {
  return permanentError('GENERATION_FAILED', 'No image API capacity within GENERATION_DEADLINE_MS', { cause });
}

/** A request out counts in the image memory, as the picture it will bring, until it is answered. */
async function expecting<T>(images: ImageMemory | undefined, request: () => Promise<T>): Promise<T> {
  const answered = images?.expect();
  try {
    return await request();
  } finally {
    answered?.();
  }
}
