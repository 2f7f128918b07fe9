import { ChildProcess, spawn } from 'node:child_process';
import fs from 'node:fs';
import { cpuMsOf } from './procStats';

/** Exit code of a worker that refused its configuration (EX_CONFIG). */
export const CONFIG_REFUSED = 78;
const READY_TIMEOUT_MS = 30_000;

/**
 * A built worker (`node dist/index.js`) as the platform runs it: environment in, pino JSON lines out (kept in
 * `logFile`), SIGTERM to stop. Ready when it logs `ready`; its outcomes are read from its `job end` lines.
 */
export class WorkerProcess {
  readonly child: ChildProcess;
  readonly ready: Promise<void>;
  readonly exited: Promise<number | null>;
  private readonly lines: string[] = [];

  /** `cwd`: where it runs (the worker reads a `.env` there); by default the benchmark's own directory. */
  constructor(
    entry: string,
    env: Record<string, string>,
    readonly logFile: string,
    cwd?: string,
  ) {
    this.child = spawn(process.execPath, [entry], { cwd, env: { PATH: process.env.PATH ?? '', ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    const log = fs.createWriteStream(logFile);
    let markReady: () => void = () => undefined;
    let partial = '';
    this.child.stdout!.on('data', (chunk: Buffer) => {
      log.write(chunk);
      const text = partial + chunk.toString('utf8');
      const parts = text.split('\n');
      partial = parts.pop() ?? '';
      for (const line of parts) {
        this.lines.push(line);
        if (/"msg":"ready/.test(line)) markReady();
      }
    });
    this.child.stderr!.on('data', (chunk: Buffer) => log.write(chunk));
    this.exited = new Promise((resolve) => this.child.once('exit', (code) => (log.end(), resolve(code))));
    this.ready = new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no "ready" line within ${READY_TIMEOUT_MS} ms (log: ${logFile})`)), READY_TIMEOUT_MS);
      markReady = () => (clearTimeout(timer), resolve());
      void this.exited.then(
        (code) => (clearTimeout(timer), reject(Object.assign(new Error(`worker exited (${code}) before it was ready (log: ${logFile})`), { code }))),
      );
    });
    this.ready.catch(() => undefined);
  }

  get pid(): number {
    return this.child.pid!;
  }

  cpuMs(): number {
    return cpuMsOf(this.pid);
  }

  /** Outcomes of its `job end` lines so far, e.g. {completed: 10, failed: 2}, and their codes. */
  outcomes(): { outcomes: Record<string, number>; codes: Record<string, number> } {
    const outcomes: Record<string, number> = {};
    const codes: Record<string, number> = {};
    for (const raw of this.lines) {
      if (!raw.includes('"msg":"job end')) continue;
      try {
        const line = JSON.parse(raw) as { outcome?: string; code?: string | null };
        outcomes[line.outcome ?? 'unknown'] = (outcomes[line.outcome ?? 'unknown'] ?? 0) + 1;
        if (line.code) codes[line.code] = (codes[line.code] ?? 0) + 1;
      } catch {
        // A line cut by a kill.
      }
    }
    return { outcomes, codes };
  }

  /** SIGTERM (in-flight jobs finish within SHUTDOWN_TIMEOUT_MS), SIGKILL after `timeoutMs`. */
  async stop(timeoutMs = 15_000): Promise<number | null> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return this.child.exitCode;
    this.child.kill('SIGTERM');
    const timer = setTimeout(() => this.child.kill('SIGKILL'), timeoutMs);
    const code = await this.exited;
    clearTimeout(timer);
    return code;
  }
}

/** Adds the outcome counts of several workers. */
export function mergeCounts(parts: Array<Record<string, number>>): Record<string, number> {
  const sum: Record<string, number> = {};
  for (const part of parts) for (const [k, v] of Object.entries(part)) sum[k] = (sum[k] ?? 0) + v;
  return sum;
}
