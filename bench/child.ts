import { ChildProcess, execFileSync, spawn } from 'node:child_process';
import { EventEmitter } from 'node:events';
import fs from 'node:fs';
import path from 'node:path';

/**
 * The bench's child processes (the worker, the bare pipeline, the relay) and the messages they send over Node's
 * IPC channel. Each child has its own CPU and memory, read from /proc.
 */

/** A worker event as the child forwarded it, stamped with Date.now() when it was emitted. */
export interface ForwardedEvent {
  type: 'event';
  name: string;
  at: number;
  data: Record<string, unknown>;
}

export type FromChild =
  | { type: 'ready'; url?: string }
  /** The relay's count of `Profile` messages since its last report: pictures (Status true) and failures. */
  | { type: 'relayed'; ok: number; failed: number }
  | ForwardedEvent;

export type ChildScript = 'workerChild' | 'bareChild' | 'relayChild';

/** Inside a child: say ready; on `stop` (or the parent going away) run `stop` and exit. */
export function serveParent(stop: () => Promise<unknown>, ready: FromChild = { type: 'ready' }): void {
  let stopping = false;
  const exit = (): void => {
    if (stopping) return;
    stopping = true;
    stop().then(
      () => process.exit(0),
      (err: unknown) => failChild(err),
    );
  };
  process.on('message', (m: { type?: string }) => void (m.type === 'stop' && exit()));
  process.on('disconnect', exit);
  process.send?.(ready);
}

export function failChild(err: unknown): never {
  process.stderr.write(`${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exit(1);
}

/** A child as the bench sees it: `ready`, its forwarded events on `events`, /proc figures, `stop`. */
export class Child {
  readonly process: ChildProcess;
  readonly ready: Promise<FromChild>;
  readonly exited: Promise<number | null>;
  /** Forwarded worker events by name (the payload is a ForwardedEvent); `relayed` reports too. */
  readonly events = new EventEmitter();

  constructor(
    script: ChildScript,
    env: Record<string, string>,
    readonly logFile: string,
  ) {
    fs.mkdirSync(path.dirname(logFile), { recursive: true });
    // Appended to by the child's stdout and stderr and by the worker's pino log alike.
    fs.writeFileSync(logFile, '');
    const out = fs.openSync(logFile, 'a');
    this.process = spawn(process.execPath, [path.join(__dirname, `${script}.js`)], {
      env: { PATH: process.env.PATH ?? '', BENCH_LOG_FILE: logFile, ...env },
      stdio: ['ignore', out, out, 'ipc'],
    });
    fs.closeSync(out);
    this.events.setMaxListeners(0);
    this.exited = new Promise((resolve) => this.process.once('exit', (code) => resolve(code)));
    this.ready = new Promise<FromChild>((resolve, reject) => {
      this.process.on('message', (m: FromChild) => {
        if (m.type === 'ready') resolve(m);
        else if (m.type === 'event') this.events.emit(m.name, m);
        else this.events.emit(m.type, m);
      });
      void this.exited.then((code) => reject(new Error(`${script} exited (${code}) before it was ready:\n${this.logTail()}`)));
    });
    this.ready.catch(() => undefined);
  }

  get pid(): number {
    return this.process.pid!;
  }

  /** Resolves with the next forwarded event `name` for which `match` holds. */
  next(name: string, match: (e: ForwardedEvent) => boolean = () => true): Promise<ForwardedEvent> {
    return new Promise((resolve) => {
      const on = (e: ForwardedEvent): void => {
        if (!match(e)) return;
        this.events.off(name, on);
        resolve(e);
      };
      this.events.on(name, on);
    });
  }

  cpuMs(): number {
    return cpuMsOf(this.pid);
  }

  /** Highest resident memory since the process started (VmHWM), bytes. */
  peakRss(): number {
    const status = fs.readFileSync(`/proc/${this.pid}/status`, 'utf8');
    return Number(/^VmHWM:\s+(\d+) kB/m.exec(status)?.[1] ?? 0) * 1024;
  }

  /** Asks for a clean exit; kills after `timeoutMs`. */
  async stop(timeoutMs = 15_000): Promise<void> {
    if (this.process.exitCode !== null || this.process.signalCode !== null) return;
    if (this.process.connected) this.process.send({ type: 'stop' });
    const timer = setTimeout(() => this.process.kill('SIGKILL'), timeoutMs);
    await this.exited;
    clearTimeout(timer);
  }

  logTail(lines = 20): string {
    try {
      return fs.readFileSync(this.logFile, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
    } catch {
      return '';
    }
  }
}

const CLOCK_TICKS_PER_S = (() => {
  try {
    return Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
  } catch {
    return 100;
  }
})();

/** User plus system CPU a process has used, ms (/proc/<pid>/stat). */
function cpuMsOf(pid: number): number {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return ((Number(fields[11]) + Number(fields[12])) * 1000) / CLOCK_TICKS_PER_S;
}
