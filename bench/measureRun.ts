import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import Bull from 'bull';
import jwt from 'jsonwebtoken';
import { redisOptionsFromUrl } from '../src/redis/connections';
import { DEFAULT_QUEUE_PREFIX } from '../src/config';
import { BenchChild, ConsumerKind } from './benchChild';
import type { MemorySnapshot } from './childProtocol';
import { Meter, Usage } from './meter';
import { memoryOf } from './procStats';
import type { ProfileWindow } from './profileSummary';
import { KeyFootprint, netInputBytes, queueFootprint, usedMemory } from './redisFootprint';
import type { BenchSystem } from './system';
import { summariseWorkerLogs, WorkerLogSummary } from './workerLog';

const JWT_SECRET = 'bench-secret-0123456789abcdef0123456789';
/** bench/.tmp: compiled code, logs and profiles (gitignored). */
export const TMP_DIR = path.resolve(__dirname, '..', '..');
const USERS = 50;

export interface RunSpec {
  name: string;
  kind: ConsumerKind;
  processes: number;
  /** Jobs each process runs at once (CONCURRENCY). */
  concurrency: number;
  /** Jobs per batch: all of a batch is queued before consumers may start; memory is read after each. */
  batches: number[];
  imageBytes: number;
  /** How long the image API takes to answer. */
  delayMs: number;
  /** Run the consumers under node --cpu-prof. */
  profile?: boolean;
  /** Added to the consumers' environment (what-if variants). */
  env?: Record<string, string>;
  /** Freeze the relay process (SIGSTOP) for `forMs`, `afterMs` into the first batch: a stalled notification service. */
  stallRelay?: { afterMs: number; forMs: number };
}

export interface RunResult {
  spec: RunSpec;
  jobs: number;
  completed: number;
  failed: number;
  duplicates: number;
  /** From the start of each batch to its last notification, summed. */
  activeMs: number;
  throughput: number;
  usage: Usage;
  memory: {
    /** Highest VmHWM of any consumer process. */
    peakRss: number;
    /** The first consumer's memory after a full GC: before the first batch, then after each. */
    snapshots: MemorySnapshot[];
  };
  redis: {
    keys: KeyFootprint[];
    perJobKeys: number;
    perJobBytes: number;
    usedMemoryDeltaPerJob: number;
    /** What all clients sent to Redis while jobs ran, per job: a checkpointed image shows here in full. */
    inputBytesPerJob: number;
  };
  workerLog?: WorkerLogSummary;
  /** API requests and TCP connections during the run: connections << requests means keep-alive works. */
  api: { requests: number; connections: number };
  profiles: string[];
  /** When jobs ran, on the clock CPU profiles use: their summary leaves start-up and shutdown out. */
  window: ProfileWindow;
  /** Runs with a frozen relay: when it was stopped and resumed, and what was delivered around it (ms from the start). */
  stall?: StallTimeline;
  error?: string;
}

interface StallTimeline {
  stoppedAtMs: number;
  resumedAtMs: number;
  /** The resume on the wall clock, to set the worker's log lines against. */
  resumedAtEpochMs: number;
  deliveredBeforeStop: number;
  deliveredAfterResume: number;
  /** The first and the last final notification after the relay was resumed. */
  firstAfterResumeMs: number;
  lastMs: number;
}

let runCount = 0;

/**
 * One measured run: a fresh queue, jobs queued exactly as the front end queues them while the queue is
 * paused, consumers started and ready, then the queue resumed and the clock running until the relay has
 * seen every job's final notification.
 */
export async function measureRun(system: BenchSystem, spec: RunSpec, log: (line: string) => void): Promise<RunResult> {
  const runTag = `r${++runCount}${randomBytes(2).toString('hex')}u`;
  const queueName = `bench_${spec.name}_${runTag}`;
  const logDir = path.join(TMP_DIR, 'logs');
  const profileDir = path.join(TMP_DIR, 'profiles');
  fs.mkdirSync(logDir, { recursive: true });
  fs.mkdirSync(profileDir, { recursive: true });

  const { admin, xai, deliveries, redisServer } = system;
  xai.configure({ imageBytes: spec.imageBytes, delayMs: spec.delayMs });
  const producer = new Bull(queueName, { prefix: DEFAULT_QUEUE_PREFIX, redis: redisOptionsFromUrl(redisServer.url) });
  await producer.isReady();
  await producer.pause();
  const usedBefore = await usedMemory(admin);

  const env = {
    REDIS_URL: redisServer.url,
    QUEUE_NAME: queueName,
    GROK_API: xai.url,
    GROK_API_KEY: 'xai-bench-key',
    JWT_SECRET,
    PORT_MESSAGES_USERS: system.relayUrl,
    CONCURRENCY: String(spec.concurrency),
    LOG_LEVEL: 'info',
    // These scenarios measure the worker's own cost, not xAI's limit: no pace; and the relay child counts
    // completions from the schema format's status field.
    GROK_RATE_LIMIT: '0',
    NOTIFY_FORMAT: 'schema',
    ...spec.env,
  };
  const logFiles = Array.from({ length: spec.processes }, (_, i) => path.join(logDir, `${spec.name}-${i}.log`));
  const profiles = spec.profile ? logFiles.map((_, i) => path.join(profileDir, `${spec.name}-${i}.cpuprofile`)) : [];
  for (const file of profiles) fs.rmSync(file, { force: true });
  const consumers = logFiles.map(
    (logFile, i) =>
      new BenchChild(spec.kind, {
        env,
        logFile,
        nodeFlags: spec.profile ? ['--cpu-prof', `--cpu-prof-dir=${profileDir}`, `--cpu-prof-name=${path.basename(profiles[i])}`] : [],
      }),
  );

  const result: RunResult = {
    spec,
    jobs: 0,
    completed: 0,
    failed: 0,
    duplicates: 0,
    activeMs: 0,
    throughput: 0,
    usage: Meter.empty(),
    memory: { peakRss: 0, snapshots: [] },
    redis: { keys: [], perJobKeys: 0, perJobBytes: 0, usedMemoryDeltaPerJob: 0, inputBytesPerJob: 0 },
    api: { requests: 0, connections: 0 },
    profiles,
    window: { fromUs: 0, toUs: 0 },
  };
  let stall: Stall | undefined;
  let redisInput = 0;
  try {
    await Promise.all(consumers.map((c) => c.ready));
    result.memory.snapshots.push(await consumers[0].memory());
    const meter = new Meter(consumers, system.relay, redisServer.process.pid!);
    deliveries.begin(runTag);
    const apiBefore = xai.counters();
    const tokens = Array.from({ length: USERS }, (_, u) => signToken(`${runTag}${u}`));

    for (const [b, size] of spec.batches.entries()) {
      if (b > 0) await producer.pause();
      await enqueue(producer, size, result.jobs, runTag, tokens);
      const target = result.jobs + size;
      const before = await meter.read();
      const inputBefore = await netInputBytes(admin);
      const started = performance.now();
      if (b === 0) result.window.fromUs = monotonicUs();
      if (b === 0 && spec.stallRelay) stall = stallProcess(system.relay.pid, spec.stallRelay.afterMs, spec.stallRelay.forMs);
      await producer.resume();
      await deliveries.waitFor(target, Math.max(60_000, size * 200));
      const batchMs = deliveries.lastAt - started;
      if (b === 0 && stall?.stoppedAt !== undefined && stall.resumedAt !== undefined) {
        const { stoppedAt, resumedAt, resumedAtEpoch } = stall;
        const after = deliveries.times.filter((t) => t >= resumedAt);
        result.stall = {
          stoppedAtMs: stoppedAt - started,
          resumedAtMs: resumedAt - started,
          resumedAtEpochMs: resumedAtEpoch ?? 0,
          deliveredBeforeStop: deliveries.times.filter((t) => t < stoppedAt).length,
          deliveredAfterResume: after.length,
          firstAfterResumeMs: (after[0] ?? resumedAt) - started,
          lastMs: batchMs,
        };
      }
      result.window.toUs = monotonicUs();
      result.activeMs += batchMs;
      result.usage = Meter.add(result.usage, Meter.usage(before, await meter.read()));
      redisInput += (await netInputBytes(admin)) - inputBefore;
      result.jobs = target;
      log(`  ${spec.name}: batch ${b + 1}/${spec.batches.length}, ${size} jobs in ${(batchMs / 1000).toFixed(2)} s`);
      result.memory.snapshots.push(await consumers[0].memory());
    }
    result.memory.peakRss = Math.max(...consumers.map((c) => memoryOf(c.pid).peak));
    const apiAfter = xai.counters();
    result.api = { requests: apiAfter.requests - apiBefore.requests, connections: apiAfter.connections - apiBefore.connections };
  } catch (err) {
    result.error = err instanceof Error ? err.message : String(err);
    log(`  ${spec.name}: ${result.error}\n${consumers.map((c) => c.logTail(5)).join('\n')}`);
  } finally {
    stall?.resume();
    result.completed = deliveries.completed;
    result.failed = deliveries.failed;
    result.duplicates = deliveries.duplicates;
    result.throughput = result.activeMs > 0 ? (result.jobs * 1000) / result.activeMs : 0;
    await Promise.all(consumers.map((c) => c.stop()));
  }

  const keys = await queueFootprint(admin, DEFAULT_QUEUE_PREFIX, queueName);
  const perJob = keys.filter((k) => k.perJob);
  const jobs = Math.max(result.jobs, 1);
  result.redis = {
    keys,
    perJobKeys: perJob.length / jobs,
    perJobBytes: perJob.reduce((sum, k) => sum + k.bytes, 0) / jobs,
    usedMemoryDeltaPerJob: ((await usedMemory(admin)) - usedBefore) / jobs,
    inputBytesPerJob: redisInput / jobs,
  };
  if (spec.kind === 'worker') result.workerLog = summariseWorkerLogs(logFiles);
  await producer.obliterate({ force: true }).catch(() => undefined);
  await producer.close();
  return result;
}

/** CPU milliseconds per job, by part. */
export function cpuPerJob(result: RunResult): Usage['cpuMs'] {
  const n = Math.max(result.jobs, 1);
  const { consumers, relay, harness, redis, otherOnMachine } = result.usage.cpuMs;
  return { consumers: consumers / n, relay: relay / n, harness: harness / n, redis: redis / n, otherOnMachine: otherOnMachine / n };
}

/**
 * Stops a process for a while, recording when (performance.now()); `resume` resumes it at once (for errors
 * and cleanup).
 */
interface Stall {
  resume: () => void;
  stoppedAt?: number;
  resumedAt?: number;
  resumedAtEpoch?: number;
}

function stallProcess(pid: number, afterMs: number, forMs: number): Stall {
  let resumed = false;
  const stall: Stall = {
    resume: () => {
      clearTimeout(stopTimer);
      clearTimeout(contTimer);
      if (resumed) return;
      resumed = true;
      process.kill(pid, 'SIGCONT');
      if (stall.stoppedAt === undefined) return;
      stall.resumedAt = performance.now();
      stall.resumedAtEpoch = Date.now();
    },
  };
  const stopTimer = setTimeout(() => {
    process.kill(pid, 'SIGSTOP');
    stall.stoppedAt = performance.now();
  }, afterMs);
  const contTimer = setTimeout(stall.resume, afterMs + forMs);
  return stall;
}

function monotonicUs(): number {
  return Number(process.hrtime.bigint() / 1000n);
}

function signToken(userId: string): string {
  return jwt.sign({ Id: userId }, JWT_SECRET, { algorithm: 'HS256', expiresIn: '1h' });
}

/** Exactly what the front end sends: `queue.add({Id, Prompt, Token, Number}, {attempts: 1, removeOnComplete, removeOnFail})`. */
async function enqueue(producer: Bull.Queue, count: number, firstNumber: number, runTag: string, tokens: string[]): Promise<void> {
  const opts = { attempts: 1, removeOnComplete: true, removeOnFail: true };
  const CHUNK = 500;
  for (let start = 0; start < count; start += CHUNK) {
    const jobs = [];
    for (let i = start; i < Math.min(count, start + CHUNK); i++) {
      const n = firstNumber + i;
      const user = n % tokens.length;
      jobs.push({ data: { Id: `${runTag}${user}`, Prompt: `A lighthouse at dawn in watercolour, study number ${n}`, Token: tokens[user], Number: n }, opts });
    }
    await producer.addBulk(jobs);
  }
}
