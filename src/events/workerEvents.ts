import { EventEmitter } from 'node:events';
import type { ErrorCode } from '../base/errors';
import type { JobEnd } from './jobEnd';

/**
 * What a worker tells whoever listens, typed (graphile-worker's WorkerEventMap): the JSON log is one listener,
 * tests and benchmarks are others. The log lines the README documents are written from these.
 */
export interface WorkerEventMap {
  /** Started and taking jobs. */
  'worker:ready': [{ queue: string; inFlightLimit: number; limitedBy: string }];
  /** A job was claimed by this worker (`lane`: answers never wait for the pace). */
  'job:claimed': [{ jobId: string; fid: string; claim: string; lane: 'answers' | 'line' }];
  /** The claimed job's run began (a job claimed once shutdown has begun is handed back and never starts). */
  'job:started': [{ jobId: string; claim: string; attempt: number }];
  /** A picture went out to the notification service (its end is recorded next). */
  'job:delivered': [{ jobId: string; userId: string; fromCheckpoint: boolean }];
  /** A failure was told to the job's user. */
  'job:told': [{ jobId: string; userId: string; code: ErrorCode }];
  /** A failure's answer is held back (the same failure was told for this ask a moment ago); told after `heldMs`. */
  'job:heldBack': [{ jobId: string; userId?: string; code: ErrorCode; heldMs: number }];
  /** A run's claim was lost: the run stops; the job runs again. */
  'claim:lost': [{ jobId: string; fid: string; claim: string }];
  /** A run ended, however it did: the `job end` line. */
  'job:end': [JobEnd];
  /** The first signal: stop taking jobs, let running ones finish. */
  'worker:gracefulShutdown': [{ timeoutMs: number }];
  /** Shutdown ran out of time: running jobs are handed back. */
  'worker:forcefulShutdown': [{ running: number }];
  /** Everything is closed. */
  'worker:stopped': [{ durationMs: number; finishedInFlight: boolean; handedBack: boolean }];
}

export type WorkerEventName = keyof WorkerEventMap;

/** Every event a worker emits, for a listener that wants them all (a test's record, a benchmark's). */
export const WORKER_EVENT_NAMES: readonly WorkerEventName[] = [
  'worker:ready',
  'job:claimed',
  'job:started',
  'job:delivered',
  'job:told',
  'job:heldBack',
  'claim:lost',
  'job:end',
  'worker:gracefulShutdown',
  'worker:forcefulShutdown',
  'worker:stopped',
];

export class WorkerEvents extends EventEmitter<WorkerEventMap> {}
