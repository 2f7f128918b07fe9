import { errorSummary, OperatorAlert, WorkerError } from '../base/errors';
import type { Logger } from '../base/logger';
import type { RunReport } from '../pipeline/runJob';

/**
 * How a job's run ended: completed or failed (the job ended, its user was told, or nobody could be), retry (the
 * producer's next attempt comes later), handed_back (shutdown ran out of time), claim_lost (the run stopped: the job
 * was taken back and runs again).
 */
export type JobEndOutcome = 'completed' | 'failed' | 'retry' | 'handed_back' | 'claim_lost';

export interface JobEnd {
  jobId: string;
  /** 1-based: the producer's Bull attempts count too. */
  attempt: number;
  /** When this run started (epoch ms). */
  startedAt: number;
  /** How long the job waited before this run, from its creation. */
  waitedMs?: number;
  outcome: JobEndOutcome;
  report: RunReport & {
    error?: WorkerError;
    /** The failure's answer was held back this long before it was told (the wait page asked again in a loop). */
    heldMs?: number;
    /** This job joined an identical one (the same user, page and prompt) and ended with it: the leader's job id. */
    joinedTo?: string;
  };
}

/** What an operator must act on, if anything: the alert an error carries. */
const HINTS: Record<OperatorAlert, string> = {
  billing: 'the xAI team is out of credits or over its spending limit',
  budget: 'the fleet spent DAILY_BUDGET_USD today: no picture is bought until the next UTC day, or until the budget is raised',
  misconfiguration:
    'the image API refused the request: check GROK_API_KEY, GROK_API, GROK_MODEL and the image settings (GROK_ASPECT_RATIO, GROK_RESOLUTION, GROK_QUALITY)',
};

/**
 * The one line per job end, however it ended: always `msg: "job end"` with the same fields, so operators can
 * grep and chart them. An operator alert (`alert`, with a `hint`) is logged at error level.
 */
export function logJobEnd(logger: Logger, end: JobEnd): void {
  const { level, fields } = jobEndLine(end);
  logger[level](fields, 'job end');
}

/** The `job end` line's level and fields for `end` (`durationMs` up to now). */
export function jobEndLine(end: JobEnd): { level: 'info' | 'warn' | 'error'; fields: Record<string, unknown> } {
  const { report } = end;
  const error = report.error;
  const alert = error?.alert;
  const fields = {
    jobId: end.jobId,
    userId: report.userId,
    outcome: end.outcome,
    code: error?.code ?? null,
    attempt: end.attempt,
    durationMs: Date.now() - end.startedAt,
    waitedMs: end.waitedMs,
    steps: report.steps,
    promptChars: report.promptChars,
    imageBytes: report.imageBytes,
    fromCheckpoint: report.fromCheckpoint ?? false,
    remembered: report.remembered,
    refusalRemembered: report.refusalRemembered,
    costUsd: report.costUsd,
    heldMs: report.heldMs,
    joinedTo: report.joinedTo,
    alert,
    hint: alert ? HINTS[alert] : undefined,
    error: error ? errorSummary(error) : undefined,
  };
  return { level: alert ? 'error' : end.outcome === 'completed' ? 'info' : 'warn', fields };
}
