import fs from 'node:fs';

/** What the worker's own log says about a run: the job-end lines' timings and anything above info. */
export interface WorkerLogSummary {
  jobEnds: number;
  outcomes: Record<string, number>;
  meanDurationMs: number;
  meanStepsMs: { token: number; generate: number; notify: number };
  /** The longest notify step: how long a delivery waited at most (for the relay, or for room to send). */
  maxNotifyMs: number;
  /** When (epoch ms, from the line's time) each job whose notify step took WAITED_MS or more ended: deliveries that waited. */
  waitedEndsAt: number[];
  /** warn, error and fatal lines, by message: retries, lost connections, stalls. */
  problems: Record<string, number>;
  lines: number;
}

/** A notify step this long had to wait: for the service, or for room in the send buffer. */
const WAITED_MS = 100;

interface LogLine {
  time?: string;
  level?: string;
  msg?: string;
  outcome?: string;
  durationMs?: number;
  steps?: { token?: number; generate?: number; notify?: number };
}

export function summariseWorkerLogs(files: string[]): WorkerLogSummary {
  const outcomes: Record<string, number> = {};
  const problems: Record<string, number> = {};
  const sums = { duration: 0, token: 0, generate: 0, notify: 0 };
  let jobEnds = 0;
  let maxNotifyMs = 0;
  const waitedEndsAt: number[] = [];
  let lines = 0;
  for (const file of files) {
    for (const raw of fs.readFileSync(file, 'utf8').split('\n')) {
      if (!raw.startsWith('{')) continue;
      lines++;
      let line: LogLine;
      try {
        line = JSON.parse(raw) as LogLine;
      } catch {
        continue;
      }
      if (line.level === 'warn' || line.level === 'error' || line.level === 'fatal') {
        const key = `${line.level}: ${line.msg ?? ''}`;
        problems[key] = (problems[key] ?? 0) + 1;
      }
      if (!line.msg?.startsWith('job end')) continue;
      jobEnds++;
      const outcome = line.outcome ?? 'unknown';
      outcomes[outcome] = (outcomes[outcome] ?? 0) + 1;
      sums.duration += line.durationMs ?? 0;
      sums.token += line.steps?.token ?? 0;
      sums.generate += line.steps?.generate ?? 0;
      sums.notify += line.steps?.notify ?? 0;
      maxNotifyMs = Math.max(maxNotifyMs, line.steps?.notify ?? 0);
      if ((line.steps?.notify ?? 0) >= WAITED_MS && line.time) waitedEndsAt.push(Date.parse(line.time));
    }
  }
  const mean = (x: number): number => (jobEnds > 0 ? x / jobEnds : 0);
  return {
    jobEnds,
    outcomes,
    meanDurationMs: mean(sums.duration),
    meanStepsMs: { token: mean(sums.token), generate: mean(sums.generate), notify: mean(sums.notify) },
    maxNotifyMs,
    waitedEndsAt: waitedEndsAt.sort((a, b) => a - b),
    problems,
    lines,
  };
}
