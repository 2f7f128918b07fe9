import { setMaxListeners } from 'node:events';
import Bull, { Job, Queue } from 'bull';
import { RedisCheckpointStore } from './checkpointStore';
import { Config, describeConfig } from './config';
import { toError } from './errors';
import { GrokImageProvider } from './grokProvider';
import { handleJob, JobContext, reportStallLimit } from './jobHandler';
import { track } from './liveResources';
import { LocalImageProvider } from './localProvider';
import type { Logger } from './logger';
import { errorSummary, PipelineDeps } from './pipeline';
import { bullClientFactory, redisOptionsFromUrl } from './redis';
import { timeLimit } from './sleep';
import { SocketNotifier } from './socketNotifier';
import { JwtTokenVerifier, RemoteTokenVerifier } from './tokenVerifier';
import type { ImageProvider, Notifier, TokenVerifier } from './types';

export const QUEUE_PREFIX = 'bull';
const NOTIFIER_START_WAIT_MS = 3000;
/** Each resource gets this long to close; Redis that is away would otherwise hold shutdown. */
const RELEASE_LIMIT_MS = 1500;

/** Edges a test (or a benchmark) may replace; everything else is built from the config. */
export interface WorkerOverrides {
  provider?: ImageProvider;
  verifier?: TokenVerifier;
  notifier?: Notifier;
  retryDelay?: PipelineDeps['retryDelay'];
}

export interface RunningWorker {
  queue: Queue;
  /** Stop fetching, let in-flight jobs finish within SHUTDOWN_TIMEOUT_MS, then close. Safe to call twice. */
  close(): Promise<void>;
}

export function createProvider(config: Config): ImageProvider {
  if (config.imageProvider === 'local') return new LocalImageProvider({ delayMs: config.localImageDelayMs });
  const { apiUrl, apiKey, model, timeoutMs } = config.grok;
  return new GrokImageProvider({ apiUrl, apiKey, model, timeoutMs });
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

/** Wires config -> Redis, queue, provider, verifier, notifier -> pipeline, and starts consuming. */
export async function startWorker(config: Config, logger: Logger, overrides: WorkerOverrides = {}): Promise<RunningWorker> {
  logger.info({ settings: describeConfig(config) }, 'starting');
  // Releasers run last-in-first-out at shutdown, each guarded on its own.
  const releasers: Array<{ name: string; release: () => Promise<void> }> = [];

  const redis = bullClientFactory(redisOptionsFromUrl(config.redisUrl, config.redisTlsRejectUnauthorized), logger);
  const queue = new Bull(config.queueName, {
    prefix: QUEUE_PREFIX,
    createClient: (type) => redis.create(type),
    settings: {
      lockDuration: config.lockDurationMs,
      stalledInterval: config.stalledIntervalMs,
      maxStalledCount: config.maxStalledCount,
    },
    limiter: config.rateLimit ? { max: config.rateLimit.max, duration: config.rateLimit.durationMs } : undefined,
  });
  releasers.push({ name: 'redis', release: () => redis.closeAll() });
  releasers.push({ name: 'queue', release: () => queue.close(true) });
  watchQueue(queue, logger);

  const notifier = overrides.notifier ?? new SocketNotifier({ ...config.notify, logger });
  releasers.push({ name: 'notifier', release: () => notifier.close() });
  // The first jobs' progress events need a connection; a service that is away does not stop the start.
  if (notifier instanceof SocketNotifier) await notifier.waitForConnection(NOTIFIER_START_WAIT_MS);

  const checkpoints = new RedisCheckpointStore(queue.client, `${QUEUE_PREFIX}:${config.queueName}:`, config.checkpointTtlS);
  const deps: PipelineDeps = {
    verifier: overrides.verifier ?? createVerifier(config),
    provider: overrides.provider ?? createProvider(config),
    notifier,
    checkpoints,
    logger,
    settings: {
      promptPrefix: config.promptPrefix,
      promptMaxLength: config.promptMaxLength,
      maxRetries: config.grok.maxRetries,
      notifyProgress: config.notify.progress && config.notify.format === 'schema',
    },
    retryDelay: overrides.retryDelay,
  };

  // Aborted only when shutdown runs out of time: in-flight waits end and their jobs are handed back.
  const hardStop = new AbortController();
  // Every in-flight wait listens to it: as many as CONCURRENCY, which may be above Node's warning level.
  setMaxListeners(0, hardStop.signal);
  let shuttingDown = false;
  const handBacks = new Set<Promise<void>>();
  const context: JobContext = { deps, signal: hardStop.signal, shuttingDown: () => shuttingDown, handBacks, logger };
  // Once Bull has recorded a job as finished, its checkpoint and owner record have served their purpose.
  const forget = (job: Job): void => {
    checkpoints.forget(String(job.id)).catch((err: unknown) => {
      logger.warn({ jobId: String(job.id), err: errorSummary(err) }, 'checkpoint not removed (it expires by itself)');
    });
  };
  queue.on('completed', forget);
  // Bull emits 'failed' for every failed attempt; only a final one (finishedOn set) ends the job.
  queue.on('failed', (job: Job | null) => job?.finishedOn && forget(job));
  queue.on('global:failed', (jobId: string, reason: string) => void reportStallLimit(String(jobId), reason, checkpoints, deps, logger));
  const handler = (job: Job): Promise<void> => handleJob(job, context);
  queue.process(config.concurrency, handler).catch((err: unknown) => {
    logger.error({ err: toError(err) }, 'queue processing stopped');
  });
  await queue.isReady();

  const stats = config.statsIntervalMs > 0 ? setInterval(() => void logStats(queue, logger), config.statsIntervalMs) : undefined;
  stats?.unref();
  logger.info({ queue: config.queueName, concurrency: config.concurrency }, 'ready');
  const untrack = track('worker', config.queueName);

  let closing: Promise<void> | undefined;
  const close = (): Promise<void> =>
    (closing ??= (async () => {
      shuttingDown = true;
      const started = Date.now();
      if (stats) clearInterval(stats);
      logger.info({ timeoutMs: config.shutdownTimeoutMs }, 'shutting down: no new jobs, finishing in-flight ones');
      const finished = await finishInFlight(queue, config.shutdownTimeoutMs);
      if (!finished) {
        hardStop.abort();
        // Give the aborted handlers a moment to hand their jobs back to the queue.
        await Promise.race([Promise.all(handBacks), timeLimit(2000)]);
      }
      for (const { name, release } of releasers.reverse()) {
        try {
          await Promise.race([release(), timeLimit(RELEASE_LIMIT_MS)]);
        } catch (err) {
          logger.warn({ resource: name, err: errorSummary(err) }, 'release failed');
        }
      }
      logger.info({ durationMs: Date.now() - started, finishedInFlight: finished }, 'shutdown complete');
      untrack();
    })());

  return { queue, close };
}

/** Pauses this worker (no new jobs; Bull stops fetching the next job on completion) and waits for the active ones. */
async function finishInFlight(queue: Queue, timeoutMs: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const timedOut = new Promise<false>((resolve) => {
    timer = setTimeout(() => resolve(false), timeoutMs);
  });
  const finished = queue.pause(true).then(
    () => true,
    () => true,
  );
  const result = await Promise.race([finished, timedOut]);
  clearTimeout(timer);
  return result;
}

function watchQueue(queue: Queue, logger: Logger): void {
  let lastErrorLog = 0;
  queue.on('error', (err: Error) => {
    // Bull reports each failed poll while Redis is away; the connection itself is logged by ioredis' watcher.
    if (Date.now() - lastErrorLog < 30_000) return;
    lastErrorLog = Date.now();
    logger.warn({ component: 'queue', err: { message: err.message } }, 'queue error');
  });
  queue.on('stalled', (job: Job) => logger.warn({ jobId: String(job.id) }, 'job stalled: its worker died or blocked; it runs again'));
  queue.on('lock-extension-failed', (job: Job, err: Error) =>
    logger.warn({ jobId: String(job.id), err: { message: err.message } }, 'job lock not extended'),
  );
}

async function logStats(queue: Queue, logger: Logger): Promise<void> {
  try {
    const counts = await queue.getJobCounts();
    logger.info({ queue: queue.name, counts }, 'queue stats');
  } catch (err) {
    logger.warn({ err: errorSummary(err) }, 'queue stats unavailable');
  }
}
