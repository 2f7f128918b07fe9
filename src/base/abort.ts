/**
 * A signal that aborts when any of `signals` does, with `dispose()` to detach it again. Unlike
 * AbortSignal.any, nothing stays attached to a long-lived source (the worker's shutdown signal, a
 * notifier's close signal) once the short-lived work is done.
 */
export function linkSignals(...signals: AbortSignal[]): { signal: AbortSignal; dispose: () => void } {
  const controller = new AbortController();
  const onAbort = (event: Event): void => controller.abort((event.target as AbortSignal).reason);
  for (const source of signals) {
    if (source.aborted) {
      controller.abort(source.reason);
      break;
    }
    source.addEventListener('abort', onAbort, { once: true });
  }
  const dispose = (): void => signals.forEach((source) => source.removeEventListener('abort', onAbort));
  return { signal: controller.signal, dispose };
}

/**
 * The caller's signal plus a deadline of its own, for one request: `timedOut()` tells the deadline from
 * the caller's abort, `dispose()` clears the timer and detaches from the caller's signal.
 */
export function withDeadline(signal: AbortSignal, timeoutMs: number): { signal: AbortSignal; timedOut: () => boolean; dispose: () => void } {
  const deadline = new AbortController();
  const timer = setTimeout(() => deadline.abort(), timeoutMs);
  const linked = linkSignals(signal, deadline.signal);
  return {
    signal: linked.signal,
    timedOut: () => deadline.signal.aborted,
    dispose: () => {
      clearTimeout(timer);
      linked.dispose();
    },
  };
}
