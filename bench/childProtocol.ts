import { performance } from 'node:perf_hooks';

/** Messages between the benchmark and a consumer it runs as a child process (over Node's IPC channel). */

export type ToChild = { type: 'memory' } | { type: 'loop' } | { type: 'stop' };

export interface MemorySnapshot {
  rss: number;
  heapUsed: number;
  external: number;
  arrayBuffers: number;
  /** Highest values seen by sampling every 50 ms since the start: where a peak of RSS came from. */
  peak: { rss: number; heapTotal: number; heapUsed: number; external: number };
}

/** Cumulative time the event loop spent idle and busy since the process started, in ms. */
export interface LoopSnapshot {
  idle: number;
  active: number;
}

/** A final notification as the relay received it (progress events are not sent over). */
export interface FinalNotification {
  room: string;
  jobId: string;
  status: string;
}

export type FromChild =
  | { type: 'ready' }
  | { type: 'relay'; url: string }
  | ({ type: 'final' } & FinalNotification)
  | ({ type: 'memory' } & MemorySnapshot)
  | ({ type: 'loop' } & LoopSnapshot);

/**
 * Inside the child: says `ready` (or sends `ready`, e.g. the relay's URL); answers `memory` after a full collection (so a leak shows as heap that
 * survives it) and `loop` with the event loop's busy time; on `stop` closes the consumer and exits 0, which
 * is when `--cpu-prof` writes its file.
 */
export function serveParent(stop: () => Promise<void>, ready: FromChild = { type: 'ready' }): void {
  const peak = { rss: 0, heapTotal: 0, heapUsed: 0, external: 0 };
  const samplePeak = (): void => {
    const now = process.memoryUsage();
    peak.rss = Math.max(peak.rss, now.rss);
    peak.heapTotal = Math.max(peak.heapTotal, now.heapTotal);
    peak.heapUsed = Math.max(peak.heapUsed, now.heapUsed);
    peak.external = Math.max(peak.external, now.external);
  };
  setInterval(samplePeak, 50).unref();
  const send = (message: FromChild): void => {
    process.send?.(message);
  };
  process.on('message', (message: ToChild) => {
    if (message.type === 'memory') {
      samplePeak();
      (globalThis as { gc?: () => void }).gc?.();
      const { rss, heapUsed, external, arrayBuffers } = process.memoryUsage();
      send({ type: 'memory', rss, heapUsed, external, arrayBuffers, peak: { ...peak } });
    } else if (message.type === 'loop') {
      const { idle, active } = performance.eventLoopUtilization();
      send({ type: 'loop', idle, active });
    } else if (message.type === 'stop') {
      stop().then(
        () => process.exit(0),
        (err: unknown) => {
          process.stderr.write(`stop failed: ${String(err)}\n`);
          process.exit(1);
        },
      );
    }
  });
  // The parent going away must not leave a consumer running against its Redis.
  process.on('disconnect', () => process.exit(0));
  send(ready);
}

export function failChild(err: unknown): never {
  process.stderr.write(`${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exit(1);
}
