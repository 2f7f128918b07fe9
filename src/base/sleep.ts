import { abortError } from './errors';

/** Waits `ms`, or rejects with an AbortError as soon as `signal` aborts: every wait in the worker is cancellable. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(abortError(signal.reason));
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    const onAbort = (): void => {
      clearTimeout(timer);
      reject(abortError(signal!.reason));
    };
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/** Resolves after `ms` without keeping the process alive: a bound raced against closing a resource. */
export function timeLimit(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms).unref());
}
