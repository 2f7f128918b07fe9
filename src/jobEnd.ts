import { errorSummary } from './errors';
import type { Logger } from './logger';
import type { JobResult } from './pipeline';

/**
 * How a job's run ended: completed, failed, retry (the producer's next attempt comes later), held_back (a
 * repeated failure's answer is told later), handed_back (shutdown ran out of time), lease_lost (the run stopped:
 * another worker may hold the job).
 */
export type JobEndOutcome = Exclude<JobResult['outcome'], 'held'> | 'held_back' | 'handed_back' | 'lease_lost';

export interface JobEnd {
  jobId: string;
  /** 1-based: the producer's Bull attempts count too. */
  attempt: number;
  /** When this run started (epoch ms). */
  startedAt: number;
  /** How long the job waited before this run, from its creation. */
  waitedMs?: number;
  outcome: JobEndOutcome;
  result: Omit<JobResult, 'outcome'>;
}

/** What an operator must act on, if anything: the alert an error carries. */
const HINTS: Record<string, string> = {
  billing: 'the xAI team is out of credits or over its spending limit',
  misconfiguration:
    'the image API refused the request: check GROK_API_KEY, GROK_API, GROK_MODEL and the image settings (GROK_ASPECT_RATIO, GROK_RESOLUTION, GROK_QUALITY)',
};

/**
 * The one line per job end, however it ended: always `msg: "job end"` with the same fields, so operators can
 * grep and chart them. An operator alert (`alert`, with a `hint`) is logged at error level.
 */
export function logJobEnd(logger: Logger, end: JobEnd): void {
  const { result } = end;
  const error = result.error;
  const alert = error?.alert;
  const line = {
    jobId: end.jobId,
    userId: result.userId,
    outcome: end.outcome,
    code: error?.code ?? null,
    attempt: end.attempt,
    durationMs: Date.now() - end.startedAt,
    waitedMs: end.waitedMs,
    steps: result.steps,
    promptChars: result.promptChars,
    imageBytes: result.imageBytes,
    fromCheckpoint: result.fromCheckpoint ?? false,
    refusalRemembered: result.refusalRemembered,
    costUsd: result.costUsd,
    heldMs: result.heldMs,
    joinedTo: result.joinedTo,
    alert,
    hint: alert ? HINTS[alert] : undefined,
    error: error ? errorSummary(error) : undefined,
  };
  if (alert) logger.error(line, 'job end');
  else if (end.outcome === 'completed') logger.info(line, 'job end');
  else logger.warn(line, 'job end');
}
