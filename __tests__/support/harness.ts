import { ChildProcess, spawn } from 'node:child_process';
import path from 'node:path';
import readline from 'node:readline';
import Bull from 'bull';
import Redis from 'ioredis';
import { io, Socket } from 'socket.io-client';
import { loadConfig } from '../../src/config';
import { track } from './liveResources';
import { startRelay, Relay, RelayOptions } from '../../src/demo/notificationService';
import { createLogger } from '../../src/base/logger';
import { redisOptionsFromUrl } from '../../src/redis/connections';
import { RunningWorker, startWorker, WorkerOverrides } from '../../src/worker';
import { WORKER_EVENT_NAMES, WorkerEventMap, WorkerEventName } from '../../src/events/workerEvents';
import { jobEndLine } from '../../src/events/jobEnd';
import { FakeXai, startFakeXai } from './fakeXai';
import { JWT_SECRET, LogCapture, lapseLeases, redisUrl, signToken, uniqueQueueName, waitUntil } from './helpers';

const ROOM_SUFFIX = '_Grok_Image_Generator';
const WORKER_ENTRY = path.resolve(__dirname, '..', '..', 'dist', 'index.js');

/**
 * A user's browser: joined to its room, collecting what the notification service relays. Behind the default
 * (StoryBang) relay that is `{Message, Status, Number}` and nothing else. Like StoryBang's wait page it joins its
 * room once and never again: after a reconnection of its socket, what reaches the room is lost to it.
 */
export class UserClient {
  readonly received: Array<Record<string, unknown>> = [];
  private waiters: Array<() => void> = [];
  private constructor(readonly socket: Socket) {}

  static async connect(relay: Relay, userId: string): Promise<UserClient> {
    const client = new UserClient(io(relay.url, { transports: ['websocket'] }));
    await new Promise<void>((resolve) => client.socket.once('connect', () => resolve()));
    client.socket.on('Profile_Response', (payload: Record<string, unknown>) => {
      client.received.push(payload);
      client.waiters.forEach((w) => w());
    });
    const room = userId + ROOM_SUFFIX;
    client.socket.emit('joinRoom', room);
    // The relay does not acknowledge joins: wait until it has the room, so no notification races the join.
    while (!relay.io.sockets.adapter.rooms.get(room)?.has(client.socket.id!)) await new Promise((r) => setTimeout(r, 5));
    return client;
  }

  /** The first notification matching `predicate`, waiting up to `timeoutMs`. */
  waitFor(predicate: (p: Record<string, unknown>) => boolean, timeoutMs = 15000): Promise<Record<string, unknown>> {
    return new Promise((resolve, reject) => {
      const check = (): boolean => {
        const found = this.received.find(predicate);
        if (found) {
          clearTimeout(timer);
          this.waiters = this.waiters.filter((w) => w !== check);
          resolve(found);
          return true;
        }
        return false;
      };
      const timer = setTimeout(() => {
        this.waiters = this.waiters.filter((w) => w !== check);
        reject(new Error(`no matching notification within ${timeoutMs} ms; got ${JSON.stringify(this.received.map(summary))}`));
      }, timeoutMs);
      if (!check()) this.waiters.push(check);
    });
  }

  finals(): Array<Record<string, unknown>> {
    return this.received.filter((p) => p.status !== 'processing');
  }

  close(): void {
    this.socket.close();
  }
}

function summary(p: Record<string, unknown>): Record<string, unknown> {
  return { Id: p.Id, Number: p.Number, status: p.status, code: p.code, Status: p.Status };
}

/**
 * How a test system speaks to its users. Default: the worker's default format (legacy) through a relay that
 * behaves like StoryBang's. `schema` sets NOTIFY_FORMAT=schema and relays the whole payload, as a service
 * that format needs would.
 */
export interface SystemOptions {
  format?: 'legacy' | 'schema';
  /** Overrides for the relay (e.g. `acknowledge: true`). */
  relay?: RelayOptions;
}

function relayOptionsFor(options: SystemOptions): RelayOptions {
  return { ...(options.format === 'schema' ? { relay: 'full' as const } : {}), ...options.relay };
}

/** The environment a worker under test runs with; `overrides` win. */
function workerEnv(
  h: { queueName: string; xai: FakeXai; relay: Relay; options?: SystemOptions },
  overrides: Record<string, string> = {},
): Record<string, string> {
  return {
    ...(h.options?.format ? { NOTIFY_FORMAT: h.options.format } : {}),
    REDIS_URL: redisUrl(),
    QUEUE_NAME: h.queueName,
    GROK_API: h.xai.url,
    GROK_API_KEY: 'xai-test-key-SECRET',
    JWT_SECRET,
    PORT_MESSAGES_USERS: h.relay.url,
    // The operator's default. Debug lines (a few per job, each parsed here) cost CPU the whole suite shares; a
    // test about them asks for them.
    LOG_LEVEL: 'info',
    STATS_INTERVAL_MS: '0',
    // The shared pace spaces requests 210 ms apart: only the tests about it turn it on.
    GROK_RATE_LIMIT: '0',
    SHUTDOWN_TIMEOUT_MS: '10000',
    ...overrides,
  };
}

/** A worker in a child process running dist/index.js, its stdout parsed as log lines. */
export interface WorkerProcess {
  child: ChildProcess;
  logs: Array<Record<string, unknown>>;
  stderr: string[];
  ready: Promise<void>;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  waitForLog(predicate: (l: Record<string, unknown>) => boolean, timeoutMs?: number): Promise<Record<string, unknown>>;
}

/** The `job end` lines a worker process logged. */
export function jobEnds(proc: WorkerProcess): Array<Record<string, unknown>> {
  return proc.logs.filter((l) => l.msg === 'job end');
}

export function spawnWorker(env: Record<string, string>): WorkerProcess {
  const child = spawn(process.execPath, [WORKER_ENTRY], {
    env: { PATH: process.env.PATH ?? '', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const logs: Array<Record<string, unknown>> = [];
  const stderr: string[] = [];
  const listeners: Array<() => void> = [];
  readline.createInterface({ input: child.stdout! }).on('line', (line) => {
    try {
      logs.push(JSON.parse(line) as Record<string, unknown>);
    } catch {
      logs.push({ msg: line, unparsed: true });
    }
    listeners.forEach((l) => l());
  });
  readline.createInterface({ input: child.stderr! }).on('line', (line) => stderr.push(line));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once('exit', (code, signal) => resolve({ code, signal })),
  );
  const waitForLog = (predicate: (l: Record<string, unknown>) => boolean, timeoutMs = 15000): Promise<Record<string, unknown>> =>
    new Promise((resolve, reject) => {
      const check = (): void => {
        const found = logs.find(predicate);
        if (!found) return;
        clearTimeout(timer);
        listeners.splice(listeners.indexOf(check), 1);
        resolve(found);
      };
      const timer = setTimeout(() => {
        listeners.splice(listeners.indexOf(check), 1);
        reject(new Error(`log line not seen within ${timeoutMs} ms; stderr: ${stderr.join('\n')}`));
      }, timeoutMs);
      listeners.push(check);
      check();
    });
  const ready = Promise.race([
    waitForLog((l) => l.msg === 'ready', 20000).then(() => undefined),
    exited.then(({ code }) => Promise.reject(new Error(`worker exited (${code}) before ready: ${stderr.join('\n')}`))),
  ]);
  ready.catch(() => undefined);
  return { child, logs, stderr, ready, exited, waitForLog };
}

/**
 * StoryBang's wait page for one page of a story: it asks (a fresh token each time, the front end's options) and
 * asks again at once whenever the answer has `Status: false`, until `stop()`.
 */
export class WaitPage {
  readonly answers: Array<Record<string, unknown>> = [];
  asks = 0;
  private stopped = false;

  constructor(
    private readonly sys: TestSystem,
    private readonly browser: UserClient,
    private readonly userId: string,
    readonly page: { Prompt: string; Number: number },
  ) {
    browser.socket.on('Profile_Response', (payload: Record<string, unknown>) => {
      if (payload.Number !== page.Number) return;
      this.answers.push(payload);
      if (payload.Status === false && !this.stopped) void this.ask();
    });
  }

  async ask(): Promise<void> {
    this.asks += 1;
    await this.sys.enqueue({ Id: this.userId, Token: signToken(this.userId), ...this.page });
  }

  stop(): void {
    this.stopped = true;
  }
}

/** Everything one integration test needs, each piece private to it, and a cleanup that stops them all. */
export class TestSystem {
  readonly queueName: string;
  readonly producer: Bull.Queue;
  readonly redis: Redis;
  readonly logs = new LogCapture();
  /** Every event of the workers this test runs in its own process, in order. */
  readonly emitted: Array<{ name: WorkerEventName; payload: unknown }> = [];
  private readonly untrack: () => void;
  readonly workers: RunningWorker[] = [];
  readonly processes: WorkerProcess[] = [];
  readonly users: UserClient[] = [];

  private constructor(
    readonly xai: FakeXai,
    public relay: Relay,
    label: string,
    readonly options: SystemOptions,
  ) {
    this.queueName = uniqueQueueName(label);
    this.producer = new Bull(this.queueName, { redis: redisOptionsFromUrl(redisUrl()) });
    this.redis = new Redis(redisOptionsFromUrl(redisUrl()));
    this.untrack = track('test system', this.queueName);
  }

  static async start(label: string, options: SystemOptions = {}): Promise<TestSystem> {
    return new TestSystem(await startFakeXai(), await startRelay(relayOptionsFor(options)), label, options);
  }

  /** A new relay of the same kind, e.g. on the port of one that was closed (the service coming back). */
  async restartRelay(port: number): Promise<Relay> {
    this.relay = await startRelay({ ...relayOptionsFor(this.options), port });
    return this.relay;
  }

  env(overrides: Record<string, string> = {}): Record<string, string> {
    return workerEnv(this, overrides);
  }

  async startWorker(overrides: Record<string, string> = {}, edges: WorkerOverrides = {}): Promise<RunningWorker> {
    const config = loadConfig(this.env(overrides));
    const worker = await startWorker(config, createLogger(config.logLevel, this.logs), { retryDelay: () => 10, ...edges });
    for (const name of WORKER_EVENT_NAMES) {
      worker.events.on(name, (...args: unknown[]) => this.emitted.push({ name, payload: args[0] }));
    }
    // Open until it says it stopped (its notifier and connections are closed by then): see leakCheck.
    worker.events.once('worker:stopped', track('worker', config.queueName));
    this.workers.push(worker);
    return worker;
  }

  /**
   * The in-process workers' job ends, in order, as their `job end` lines carry them (`level` and fields), made from
   * the `job:end` events: what a test reads instead of log text.
   */
  ends(): Array<Record<string, unknown>> {
    return this.events('job:end').map((end) => {
      const { level, fields } = jobEndLine(end);
      return { level, ...fields };
    });
  }

  /** What the in-process workers emitted as `name`, in order. */
  events<N extends WorkerEventName>(name: N): Array<WorkerEventMap[N][0]> {
    return this.emitted.filter((e) => e.name === name).map((e) => e.payload as WorkerEventMap[N][0]);
  }

  spawnWorker(overrides: Record<string, string> = {}): WorkerProcess {
    const proc = spawnWorker(this.env(overrides));
    this.processes.push(proc);
    return proc;
  }

  /**
   * A worker process with one of alice's pages under way: its request has reached the image API (the test's
   * first). For tests that then kill, freeze or signal the worker mid-generation.
   */
  async spawnWorkerDrawing(
    page: { Prompt: string; Number: number },
    overrides: Record<string, string> = {},
  ): Promise<{ worker: WorkerProcess; job: Bull.Job }> {
    const worker = this.spawnWorker(overrides);
    await worker.ready;
    const job = await this.enqueue({ Id: 'alice', Token: signToken('alice'), ...page });
    await waitUntil(() => this.xai.calls.length === 1, 15_000, 'generation started');
    return { worker, job };
  }

  /** kill -9. Its lease would lapse LOCK_DURATION_MS after its last renewal: the lapse is written instead. */
  async killWorker(proc: WorkerProcess): Promise<void> {
    proc.child.kill('SIGKILL');
    await proc.exited;
    await this.lapseLeases();
  }

  async user(userId: string): Promise<UserClient> {
    const user = await UserClient.connect(this.relay, userId);
    this.users.push(user);
    return user;
  }

  /** Exactly what the existing front end enqueues. */
  enqueue(data: Record<string, unknown>, opts: Bull.JobOptions = {}): Promise<Bull.Job> {
    return this.producer.add(data, { attempts: 1, removeOnComplete: true, removeOnFail: true, ...opts });
  }

  /** See lapseLeases: every lease of this system's queue lapses now. */
  lapseLeases(): Promise<void> {
    return lapseLeases(this.redis, `bull:${this.queueName}:`);
  }

  async keys(): Promise<string[]> {
    return (await this.redis.keys(`bull:${this.queueName}:*`)).sort();
  }

  async cleanup(): Promise<void> {
    for (const user of this.users) user.close();
    for (const proc of this.processes) {
      if (proc.child.exitCode === null && proc.child.signalCode === null) {
        proc.child.kill('SIGKILL');
        await proc.exited;
      }
    }
    await Promise.all(this.workers.map((w) => w.close()));
    await this.producer.obliterate({ force: true }).catch(() => undefined);
    await this.producer.close();
    const leftovers = await this.redis.keys(`bull:${this.queueName}:*`);
    if (leftovers.length) await this.redis.del(...leftovers);
    this.redis.disconnect();
    await this.relay.close();
    await this.xai.close();
    this.untrack();
  }
}

/**
 * A fresh TestSystem for each test of the enclosing describe (or one for all of them with `scope: 'all'`),
 * cleaned up afterwards, so every test has its own queue, image API and relay.
 */
export function useTestSystem(label: string, assign: (sys: TestSystem) => void, scope: 'each' | 'all' = 'each', options: SystemOptions = {}): void {
  let current: TestSystem | undefined;
  const [before, after] = scope === 'each' ? [beforeEach, afterEach] : [beforeAll, afterAll];
  before(async () => {
    current = await TestSystem.start(label, options);
    assign(current);
  });
  after(async () => {
    await current?.cleanup();
    current = undefined;
  });
}
