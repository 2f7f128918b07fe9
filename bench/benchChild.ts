import { ChildProcess, spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import type { FromChild, LoopSnapshot, MemorySnapshot, ToChild } from './childProtocol';

export type ConsumerKind = 'worker' | 'bare';
export type ChildKind = ConsumerKind | 'relay' | 'storyRelay';

const SCRIPTS: Record<ChildKind, string> = {
  worker: path.join(__dirname, 'workerChild.js'),
  bare: path.join(__dirname, 'bareChild.js'),
  relay: path.join(__dirname, 'relayChild.js'),
  storyRelay: path.join(__dirname, 'storyRelayChild.js'),
};

export interface ChildOptions {
  env: Record<string, string>;
  /** stdout and stderr go here: the worker's log lines, any crash. */
  logFile: string;
  nodeFlags?: string[];
}

/** A part of the benchmark (the worker, the bare pipeline, the relay) in its own process, so its CPU and memory are its own. */
export class BenchChild {
  readonly child: ChildProcess;
  /** Resolves with the child's first message, once it is ready. */
  readonly ready: Promise<FromChild>;
  readonly exited: Promise<number | null>;
  private readonly memoryWaiters: Array<(m: MemorySnapshot) => void> = [];
  private readonly loopWaiters: Array<(l: LoopSnapshot) => void> = [];

  constructor(
    readonly kind: ChildKind,
    private readonly options: ChildOptions,
  ) {
    const out = fs.openSync(options.logFile, 'w');
    this.child = spawn(process.execPath, ['--expose-gc', ...(options.nodeFlags ?? []), SCRIPTS[kind]], {
      env: { PATH: process.env.PATH ?? '', ...options.env },
      stdio: ['ignore', out, out, 'ipc'],
    });
    fs.closeSync(out);
    this.exited = new Promise((resolve) => this.child.once('exit', (code) => resolve(code)));
    let onReady: (message: FromChild) => void = () => undefined;
    this.ready = new Promise<FromChild>((resolve, reject) => {
      onReady = resolve;
      void this.exited.then((code) => reject(new Error(`${kind} exited (${code}) before it was ready:\n${this.logTail()}`)));
    });
    this.ready.catch(() => undefined);
    this.child.on('message', (message: FromChild) => {
      if (message.type === 'ready' || message.type === 'relay') onReady(message);
      else if (message.type === 'memory') this.memoryWaiters.shift()?.(message);
      else if (message.type === 'loop') this.loopWaiters.shift()?.(message);
    });
  }

  /** Every message the child sends, for callers that listen to more than the replies. */
  onMessage(listener: (message: FromChild) => void): void {
    this.child.on('message', listener);
  }

  get pid(): number {
    return this.child.pid!;
  }

  /** Heap and RSS right after a full garbage collection in the child. */
  memory(): Promise<MemorySnapshot> {
    return new Promise((resolve) => {
      this.memoryWaiters.push(resolve);
      this.send({ type: 'memory' });
    });
  }

  /** The child's event loop busy and idle time so far: busy near 100% means the consumer itself is the limit. */
  loop(): Promise<LoopSnapshot> {
    return new Promise((resolve) => {
      this.loopWaiters.push(resolve);
      this.send({ type: 'loop' });
    });
  }

  /** Asks for a clean exit (in-flight jobs finish, the CPU profile is written); kills after `timeoutMs`. */
  async stop(timeoutMs = 30_000): Promise<number | null> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return this.child.exitCode;
    this.send({ type: 'stop' });
    const timer = setTimeout(() => this.child.kill('SIGKILL'), timeoutMs);
    const code = await this.exited;
    clearTimeout(timer);
    return code;
  }

  logTail(lines = 20): string {
    try {
      return fs.readFileSync(this.options.logFile, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
    } catch {
      return '';
    }
  }

  private send(message: ToChild): void {
    if (this.child.connected) this.child.send(message);
  }
}
