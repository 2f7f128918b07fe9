import pino from 'pino';
import { createLogger } from '../src/base/logger';
import { loadConfig } from '../src/config';
import { WORKER_EVENT_NAMES, WorkerEvents } from '../src/events/workerEvents';
import type { JobEnd } from '../src/events/jobEnd';
import { startWorker } from '../src/worker';
import { failChild, ForwardedEvent, serveParent } from './child';

/**
 * The worker under test, started in-process exactly as `src/index.ts` starts it: config from the environment,
 * pino JSON at LOG_LEVEL (into BENCH_LOG_FILE), `startWorker`. Its typed events go to the bench over IPC, each
 * stamped with Date.now(): all of them, or those named in BENCH_EVENTS (comma-separated).
 */
async function main(): Promise<void> {
  const config = loadConfig(process.env);
  const logFile = process.env.BENCH_LOG_FILE;
  const logger = createLogger(config.logLevel, logFile ? pino.destination({ dest: logFile, append: true, sync: false }) : undefined);
  const forward = (name: string, payload: object): void => {
    const event: ForwardedEvent = { type: 'event', name, at: Date.now(), data: name === 'job:end' ? endOf(payload as JobEnd) : { ...payload } };
    process.send?.(event);
  };
  const events = new WorkerEvents();
  const wanted = process.env.BENCH_EVENTS?.split(',') ?? WORKER_EVENT_NAMES;
  for (const name of WORKER_EVENT_NAMES.filter((n) => wanted.includes(n))) events.on(name, (payload: object) => forward(name, payload));
  const worker = await startWorker(config, logger, { events });
  serveParent(() => worker.close());
}

/** A run's end as plain data (its error becomes its code). */
function endOf(end: JobEnd): Record<string, unknown> {
  const { jobId, outcome, attempt, report } = end;
  return { jobId, outcome, attempt, userId: report.userId, code: report.error?.code ?? null, joinedTo: report.joinedTo, heldMs: report.heldMs };
}

main().catch(failChild);
