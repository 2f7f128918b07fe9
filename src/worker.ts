import { setMaxListeners } from 'node:events';
import Bull, { Job, Queue } from 'bull';
import type { Redis } from 'ioredis';
import { RedisCheckpointStore } from './checkpointStore';
import { Config, describeConfig, redactUrl } from './config';
import { abortError, errorSummary, toError } from './errors';
import { FairQueue } from './fairQueue';
import { GrokImageProvider } from './grokProvider';
import { JobRunner } from './jobRunner';
import { track } from './liveResources';
import { LocalImageProvider } from './localProvider';
import type { Logger } from './logger';
import { paceIntervalMs, RedisPacer } from './pacer';
import type { PipelineDeps } from './pipeline';
import { bullClientFactory, redisOptionsFromUrl } from './redis';
import { RedisRefusalMemory } from './refusalMemory';
import { Releasers } from './releasers';
import { backoffDelayMs } from './retryPolicy';
import { sleep, timeLimit } from './sleep';
import { SocketNotifier } from './socketNotifier';
import { Throttle } from './throttle';
import { JwtTokenVerifier, RemoteTokenVerifier } from './tokenVerifier';
import type { ImageProvider, Notifier, TokenVerifier } from './types';

const NOTIFIER_START_WAIT_MS = 3000;
/**
 * Jobs Bull hands over at once. Each is only moved into the fair queue (one script), but a story's burst sits
 * in Bull's FIFO list first: a user's single job behind it is fair only once it has been moved in.
 */
const INTAKE_CONCURRENCY = 8;
/** Jobs in flight when CONCURRENCY is unset, until the worker sizes itself to the pace and latency. */
const UNSET_CONCURRENCY = 5;
/** After shutdown runs out of time, how long aborted jobs get to hand themselves back. */
const HAND_BACK_LIMIT_MS = 2000;
/** How long start waits for Redis before saying so (and again every 30 s). */
const REDIS_WAIT_NOTICE_MS = 1000;

/** Edges a test (or a benchmark) may replace; everything else is built from the config. */
export interface WorkerOverrides {
  provider?: ImageProvider;
  verifier?: TokenVerifier;
  notifier?: Notifier;
  retryDelay?: PipelineDeps['retryDelay'];
  /** Aborting it during start releases what was built and rejects with an AbortError (a signal before ready). */
  signal?: AbortSignal;
}

export interface RunningWorker {
  queue: Queue;
  /** Stop taking jobs, let running ones finish within SHUTDOWN_TIMEOUT_MS, hand the rest back, close. Safe to call twice. */
  close(): Promise<void>;
}

export function createProvider(config: Config): ImageProvider {
  if (config.imageProvider === 'local') return new LocalImageProvider({ delayMs: config.localImageDelayMs });
  const { apiUrl, apiKey, model, timeoutMs, aspectRatio, resolution } = config.grok;
  return new GrokImageProvider({ apiUrl, apiKey, model, timeoutMs, aspectRatio, resolution });
}

export function createVerifier(config: Config): TokenVerifier {
  const { jwt } = config;
  if (jwt.mode === 'remote') {
    return new RemoteTokenVerifier({ url: jwt.verifyUrl!, timeoutMs: jwt.verifyTimeoutMs, userClaim: jwt.userClaim });
  }
  return new JwtTokenVerifier({
    secret: jwt.secret,
    publicKey: jwt.publicKey,
    algorithms: jwt.algorithms,
    issuer: jwt.issuer,
    audience: jwt.audience,
    clockToleranceS: jwt.clockToleranceS,
    userClaim: jwt.userClaim,
  });
}

/**
 * Wires config -> Redis, queue, fair queue, provider, verifier, notifier -> pipeline, and starts consuming.
 * Whatever was opened is released again if the start fails half-way.
 */
export async function startWorker(config: Config, logger: Logger, overrides: WorkerOverrides = {}): Promise<RunningWorker> {
  logger.info({ settings: describeConfig(config) }, 'starting');
  const releasers = new Releasers(logger);
  try {
    return await start(config, logger, overrides, releasers);
  } catch (err) {
    await releasers.releaseAll();
    throw err;
  }
}

async function start(config: Config, logger: Logger, overrides: WorkerOverrides, releasers: Releasers): Promise<RunningWorker> {
  const { signal } = overrides;
  const redis = bullClientFactory(redisOptionsFromUrl(config.redisUrl, config.redisTlsRejectUnauthorized), logger);
  releasers.add('redis', () => redis.closeAll());
  const queue = new Bull(config.queueName, {
    prefix: config.queuePrefix,
    createClient: (type) => redis.create(type),
    settings: { lockDuration: config.lockDurationMs, stalledInterval: config.stalledIntervalMs, maxStalledCount: config.maxStalledCount },
  });
  releasers.add('queue', () => queue.close(true));
  watchQueue(queue, logger);
  await waitForRedis(queue.client, config.redisUrl, logger, signal);

  const notifier = overrides.notifier ?? new SocketNotifier({ ...config.notify, logger });
  releasers.add('notifier', () => notifier.close());
  // The first jobs' progress events need a connection; a service that is away does not stop the start.
  await notifier.waitForConnection?.(NOTIFIER_START_WAIT_MS);
  if (signal?.aborted) throw abortError();

  const base = `${config.queuePrefix}:${config.queueName}:`;
  const pacer = config.rateLimit ? new RedisPacer(queue.client, base, paceIntervalMs(config.rateLimit)) : null;
  const fair = new FairQueue(queue.client, base, {
    leaseMs: config.lockDurationMs,
    userConcurrency: config.userConcurrency,
    doneTtlS: config.checkpointTtlS,
    paced: pacer !== null,
  });
  const deps: PipelineDeps = {
    verifier: overrides.verifier ?? createVerifier(config),
    provider: overrides.provider ?? createProvider(config),
    notifier,
    checkpoints: new RedisCheckpointStore(queue.client, base, config.checkpointTtlS),
    refusals: config.refusalMemoryS > 0 ? new RedisRefusalMemory(queue.client, base, config.refusalMemoryS) : undefined,
    logger,
    settings: {
      promptPrefix: config.promptPrefix,
      promptMaxLength: config.promptMaxLength,
      maxRetries: config.grok.maxRetries,
      notifyProgress: config.notify.progress && config.notify.format === 'schema',
      generationDeadlineMs: config.generationDeadlineMs,
    },
    retryDelay: overrides.retryDelay,
  };

  // Aborted only when shutdown runs out of time: running jobs stop waiting and are handed back.
  const hardStop = new AbortController();
  // Every running job's waits listen to it: as many as CONCURRENCY, which may be above Node's warning level.
  setMaxListeners(0, hardStop.signal);
  const runner = new JobRunner(fair, deps, { pacer, logger }, {
    concurrency: config.concurrency ?? UNSET_CONCURRENCY,
    leaseMs: config.lockDurationMs,
    stalledIntervalMs: config.stalledIntervalMs,
    maxStalledCount: config.maxStalledCount,
  }, hardStop.signal);

  const wake = redis.create('wake');
  await wake.subscribe(fair.wakeChannel);
  wake.on('message', () => runner.wake());

  let closing: Promise<void> | undefined;
  // Bull only brings jobs in: each is moved into the fair queue at once (producers stay unchanged).
  queue.process(INTAKE_CONCURRENCY, (job: Job) => intake(fair, job, () => closing !== undefined, logger)).catch((err: unknown) => {
    logger.error({ err: toError(err) }, 'queue processing stopped');
  });
  runner.start();

  const stats = config.statsIntervalMs > 0 ? setInterval(() => void logStats(queue, fair, logger), config.statsIntervalMs) : undefined;
  stats?.unref();
  logger.info({ queue: config.queueName, concurrency: config.concurrency }, 'ready');
  // Tests fail any test that leaves a worker running (__tests__/support/leakCheck.ts).
  const untrack = track('worker', config.queueName);

  const close = (): Promise<void> =>
    (closing ??= (async () => {
      const started = Date.now();
      clearInterval(stats);
      logger.info({ timeoutMs: config.shutdownTimeoutMs }, 'shutting down: no new jobs, finishing running ones');
      // No new jobs from Bull (the ones being moved in finish moving), none claimed from the fair queue.
      const intakeStopped = queue.pause(true).catch(() => undefined);
      const finished = await runner.drain(config.shutdownTimeoutMs);
      if (!finished) {
        hardStop.abort();
        await runner.handedBack(HAND_BACK_LIMIT_MS);
      }
      runner.dispose();
      await Promise.race([intakeStopped, timeLimit(HAND_BACK_LIMIT_MS)]);
      await releasers.releaseAll();
      logger.info({ durationMs: Date.now() - started, finishedInFlight: finished }, 'shutdown complete');
      untrack();
    })());
  return { queue, close };
}

/**
 * Moves one Bull job into the fair queue. It must not fail: Bull would drop the job (the front end's
 * removeOnFail). While Redis is away it tries again; at shutdown it lets go without settling, and Bull's
 * stalled-job recovery gives the job to a live worker.
 */
async function intake(fair: FairQueue, job: Job, stopping: () => boolean, logger: Logger): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    try {
      await fair.intake(job);
      return;
    } catch (err) {
      if (stopping()) return new Promise<void>(() => undefined);
      if (attempt === 1) logger.warn({ jobId: String(job.id), err: errorSummary(err) }, 'job not moved into the fair queue yet: retrying');
      await timeLimit(backoffDelayMs(attempt, { baseMs: 200, maxMs: 5000 }));
    }
  }
}

/** Resolves once Redis answers; until then says what it waits for, once at first and every 30 s after. */
async function waitForRedis(client: Redis, url: string, logger: Logger, signal?: AbortSignal): Promise<void> {
  const throttle = new Throttle(30_000);
  let waitedMs = 0;
  while (client.status !== 'ready') {
    if (signal?.aborted) throw abortError();
    if (waitedMs >= REDIS_WAIT_NOTICE_MS && throttle.allow()) {
      logger.warn({ redisUrl: redactUrl(url), waitedMs, status: client.status }, 'waiting for Redis: not ready yet');
    }
    await sleep(100, signal);
    waitedMs += 100;
  }
}

function watchQueue(queue: Queue, logger: Logger): void {
  const throttle = new Throttle(30_000);
  queue.on('error', (err: Error) => {
    // Bull reports each failed poll while Redis is away; the connection itself is logged by ioredis' watcher.
    if (throttle.allow()) logger.warn({ component: 'queue', err: { message: err.message } }, 'queue error');
  });
  queue.on('stalled', (job: Job) => logger.warn({ jobId: String(job.id) }, 'job stalled while being moved into the fair queue: it moves again'));
  queue.on('lock-extension-failed', (job: Job, err: Error) =>
    logger.warn({ jobId: String(job.id), err: { message: err.message } }, 'job lock not extended'),
  );
}

async function logStats(queue: Queue, fair: FairQueue, logger: Logger): Promise<void> {
  try {
    const [counts, fairCounts] = await Promise.all([queue.getJobCounts(), fair.counts()]);
    logger.info({ queue: queue.name, counts, fair: fairCounts }, 'queue stats');
  } catch (err) {
    logger.warn({ err: errorSummary(err) }, 'queue stats unavailable');
  }
}
