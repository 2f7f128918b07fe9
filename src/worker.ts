import { setMaxListeners } from 'node:events';
import Bull, { Queue } from 'bull';
import { Cluster } from 'ioredis';
import { Bill } from './capacity/bill';
import { IMAGE_MEMORY_BUDGET_BYTES, ImageMemory } from './capacity/imageMemory';
import { InFlightLimit } from './capacity/inFlight';
import { paceIntervalMs, PROMISE_MS, RedisPacer } from './capacity/pacer';
import { listPriceUsd } from './capacity/prices';
import { redactUrl } from './base/urls';
import { Config, describeConfig } from './config';
import { abortError, errorSummary } from './base/errors';
import { WorkerEvents } from './events/workerEvents';
import { logJobEnd } from './events/jobEnd';
import { GrokImageProvider } from './pipeline/steps/grokProvider';
import { LocalImageProvider } from './pipeline/steps/localProvider';
import type { Logger } from './base/logger';
import type { PipelineDeps } from './pipeline/runJob';
import { Checkpoints } from './queue/checkpoints';
import { Claims } from './queue/claims';
import { Dispatcher } from './queue/dispatcher';
import { handBack } from './queue/ending';
import { FairQueue } from './queue/fairQueue';
import { BULL_SETTINGS, BullIntake } from './queue/intake';
import { Pictures } from './queue/pictures';
import { bullLockMs, Keeper } from './queue/keeper';
import { WorkerPresence } from './queue/presence';
import { runClaim, RunContext } from './queue/run';
import { jobVetting } from './queue/vetting';
import { redisClientFactory } from './redis/connections';
import type { RedisClient } from './redis/scripts';
import { RedisRefusalMemory } from './pipeline/steps/refusalMemory';
import { Releasers } from './base/releasers';
import { sleep } from './base/sleep';
import { SocketNotifier } from './pipeline/steps/socketNotifier';
import { Throttle } from './base/throttle';
import { JwtTokenVerifier, RemoteTokenVerifier } from './pipeline/steps/tokenVerifier';
import { rememberVerified } from './pipeline/steps/verifiedTokens';
import type { ImageProvider, Notifier, TokenVerifier } from './pipeline/ports';

/**
 * How long start waits for the notification service, so the first jobs' progress events have a connection. It
 * answers in milliseconds when it is up; when it is away, jobs start anyway and their deliveries wait for it.
 */
const NOTIFIER_START_WAIT_MS = 1000;
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
  /** Where the worker's events go: a listener on it hears every event from the start, `worker:ready` included. */
  events?: WorkerEvents;
}

export interface RunningWorker {
  queue: Queue;
  /** What the worker does, as it does it (the JSON log is one listener). */
  events: WorkerEvents;
  /**
   * Stop taking jobs, let running ones finish within SHUTDOWN_TIMEOUT_MS, hand the rest back, close. Resolves
   * true when every job finished or was handed back, false when some could not be (Redis hung): their claims
   * lapse and another worker runs them. Safe to call twice.
   */
  close(): Promise<boolean>;
}

function createProvider(config: Config): ImageProvider {
  if (config.imageProvider === 'local') return new LocalImageProvider({ delayMs: config.localImageDelayMs });
  const { apiUrl, apiKey, model, timeoutMs, aspectRatio, resolution, quality } = config.grok;
  return new GrokImageProvider({ apiUrl, apiKey, model, timeoutMs, aspectRatio, resolution, quality, listPriceUsd: listPriceUsd(model, quality, resolution) });
}

function createVerifier(config: Config): TokenVerifier {
  const { jwt } = config;
  if (jwt.mode === 'remote') {
    // Vetting at intake and the run both check a token: the service is asked once.
    return rememberVerified(new RemoteTokenVerifier({ url: jwt.verifyUrl!, timeoutMs: jwt.verifyTimeoutMs, userClaim: jwt.userClaim }));
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
  const redis = redisClientFactory(
    { url: config.redisUrl, clusterNodes: config.redisClusterNodes, tlsRejectUnauthorized: config.redisTlsRejectUnauthorized },
    logger,
  );
  releasers.add('redis', () => redis.closeAll());
  // Bull is the way in (producers add to it) and what producers and operators read; the fair queue runs the jobs.
  const queue = new Bull(config.queueName, {
    prefix: config.queuePrefix,
    createClient: (type) => redis.create(type) as never,
    settings: BULL_SETTINGS,
  });
  releasers.add('queue', () => queue.close(true));
  watchQueue(queue, logger);
  const client = redis.create('client');
  await waitForRedis(client, config.redisUrl, logger, signal);

  const notifier = overrides.notifier ?? new SocketNotifier({ ...config.notify, logger });
  releasers.add('notifier', () => notifier.close());
  // The first jobs' progress events need a connection; a service that is away does not stop the start.
  await notifier.waitForConnection?.(NOTIFIER_START_WAIT_MS);
  if (signal?.aborted) throw abortError();

  const prefix = `${config.queuePrefix}:${config.queueName}:`;
  const paced = config.rateLimit !== null;
  const fair = new FairQueue(client, prefix, {
    leaseMs: config.lockDurationMs,
    userConcurrency: config.userConcurrency,
    paced,
    promiseMs: PROMISE_MS,
    lockMs: bullLockMs(config.stalledIntervalMs),
    remember: config.pictures.rememberS > 0,
  });
  const pacer = config.rateLimit ? new RedisPacer(client, fair.keys.pace, paceIntervalMs(config.rateLimit)) : null;
  const images = new ImageMemory(IMAGE_MEMORY_BUDGET_BYTES);
  // The daily bill is kept only when a cap is set: otherwise the drop-in costs Redis nothing more.
  const bill = config.bill.userDailyImages > 0 || config.bill.dailyBudgetUsd > 0 ? new Bill(client, fair.keys.bill, config.bill) : undefined;
  const { model, quality, resolution } = config.grok;
  const inFlight = new InFlightLimit(pacer?.intervalMs ?? null, config.concurrency, images);
  const verifier = overrides.verifier ?? createVerifier(config);
  const refusals = config.refusalMemoryS > 0 ? new RedisRefusalMemory(client, prefix, config.refusalMemoryS, fair.keys.refusedChannel) : undefined;
  const deps: PipelineDeps = {
    verifier,
    provider: overrides.provider ?? createProvider(config),
    notifier,
    // Each run gets its job's own store (see Checkpoints.forJob).
    checkpoints: { load: async () => null, save: async () => undefined },
    refusals,
    images,
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

  const events = overrides.events ?? new WorkerEvents();
  events.on('job:end', (end) => logJobEnd(logger, end));
  // Aborted only when shutdown runs out of time: running jobs stop waiting and are handed back.
  const hardStop = new AbortController();
  // Every running job's waits listen to it: as many as are in flight, which may be above Node's warning level.
  setMaxListeners(0, hardStop.signal);
  const wake = redis.create('wake');
  const claims = new Claims(fair, config.lockDurationMs, logger, {
    self: () => ({ presence: presence.presence, worker: presence.worker }),
    onLost: (claim) => events.emit('claim:lost', { jobId: claim.job.id, fid: claim.job.fid, claim: claim.token }),
    // ioredis connects again by itself and subscribes again; presence then trusts confirmations again.
    onAbsent: () => wake.disconnect(true),
  });
  const presence = new WorkerPresence(
    wake,
    (worker) => fair.keys.workerChannel(worker),
    { onDown: () => claims.distrust(), onUp: () => claims.trust(), busy: (): boolean => dispatcher.inFlight > 0 },
    logger,
  );
  const keeper = new Keeper(
    fair,
    claims,
    {
      stalledIntervalMs: config.stalledIntervalMs,
      maxStalledCount: config.maxStalledCount,
      worker: presence.worker,
      presence: () => presence.presence,
      known: () => dispatcher.known,
    },
    logger,
  );
  const context: RunContext = {
    fair,
    claims,
    checkpoints: new Checkpoints(client, fair, config.checkpointTtlS),
    deps,
    capacity: { pacer, images, bill: bill && { bill, priceUsd: listPriceUsd(model, quality, resolution) }, logger },
    pictures: config.pictures.rememberS > 0 ? new Pictures(client, fair.keys, config.pictures.rememberS, config.pictures.rememberMb) : undefined,
    inFlight,
    hardStop: hardStop.signal,
    maxStalledCount: config.maxStalledCount,
    notifier,
    logger,
    events,
    promoteAfter: (delayMs) => keeper.promoteAfter(delayMs),
  };
  const dispatcher = new Dispatcher({
    fair,
    token: () => presence.token(),
    run: (claim, onSlot, next) => runClaim(claim, context, onSlot, next),
    handBack: (claim) => handBack(claim, { startedAt: Date.now(), askedApi: false }, context),
    limit: (running) => inFlight.limitFor(running),
    paced,
    events,
    logger,
  });

  // The fleet's wake messages, its refusals and this worker's presence, on one subscription.
  await wake.subscribe(fair.keys.wakeChannel);
  wake.on('message', (channel: string, message: string) => {
    if (channel === fair.keys.wakeChannel) dispatcher.wake(message === 'answers' ? 'answers' : 'line');
    else if (channel === fair.keys.refusedChannel) refusals?.heard(message);
  });
  // A message may have been lost while the subscription was down.
  wake.on('ready', () => dispatcher.wake('answers'));
  if (refusals && !(client instanceof Cluster)) {
    await wake.subscribe(fair.keys.refusedChannel);
    await refusals.reload();
    wake.on(
      'ready',
      () => void refusals.reload().catch((err: unknown) => logger.warn({ err: errorSummary(err) }, 'refusal memory not reloaded: Redis failed')),
    );
  }
  await presence.start();
  const vet = jobVetting(fair, verifier, logger);
  const intake = new BullIntake(fair, queue, redis.create('intake'), client, logger, {
    lined: (jobs) => void vet(jobs),
    ready: (where) => dispatcher.wake(where),
    room: () => dispatcher.room,
  });

  // A reply lost with the connection: the client sends the command again, and a claim may be left behind.
  client.on('close', () => keeper.suspectOrphans());
  // The epoch before the first claim: a job a plain Bull worker may have run meanwhile is checked when claimed.
  await fair.learnEpoch();
  intake.start();
  claims.start();
  keeper.start();
  dispatcher.start();

  const here = (): WorkerGauges => ({
    inFlight: dispatcher.inFlight,
    inFlightLimit: inFlight.limit,
    limitedBy: inFlight.limitedBy,
    apiLatencyMs: inFlight.observedLatencyMs,
    imageMB: Math.round(images.used / 104857.6) / 10,
    imageBudgetMB: Math.round(images.budgetBytes / 1048576),
  });
  const stats = config.statsIntervalMs > 0 ? setInterval(() => void logStats(queue.name, fair, bill, here, logger), config.statsIntervalMs) : undefined;
  stats?.unref();
  const { inFlightLimit, limitedBy, imageBudgetMB } = here();
  logger.info({ queue: config.queueName, concurrency: config.concurrency ?? 'auto', inFlightLimit, limitedBy, imageBudgetMB }, 'ready');
  events.emit('worker:ready', { queue: config.queueName, inFlightLimit, limitedBy });

  let closing: Promise<boolean> | undefined;
  const close = (): Promise<boolean> =>
    (closing ??= (async () => {
      const started = Date.now();
      clearInterval(stats);
      logger.info({ timeoutMs: config.shutdownTimeoutMs }, 'shutting down: no new jobs, finishing running ones');
      events.emit('worker:gracefulShutdown', { timeoutMs: config.shutdownTimeoutMs });
      // No new jobs from Bull, none claimed from the fair queue; running ones keep their claims renewed.
      const intakeStopped = intake.stop(HAND_BACK_LIMIT_MS);
      const finished = await dispatcher.drain(config.shutdownTimeoutMs);
      let settled = true;
      if (!finished) {
        events.emit('worker:forcefulShutdown', { running: dispatcher.inFlight });
        hardStop.abort();
        settled = await dispatcher.settled(HAND_BACK_LIMIT_MS);
        if (!settled)
          logger.error({ running: dispatcher.inFlight }, 'jobs not handed back (Redis does not answer): their claims lapse and another worker runs them');
      }
      claims.stop();
      presence.stop();
      keeper.stop();
      // Bounded by its own limit.
      await intakeStopped;
      await releasers.releaseAll();
      const durationMs = Date.now() - started;
      logger.info({ durationMs, finishedInFlight: finished, handedBack: settled }, 'shutdown complete');
      events.emit('worker:stopped', { durationMs, finishedInFlight: finished, handedBack: settled });
      return settled;
    })());
  return { queue, events, close };
}

/** Resolves once Redis answers; until then says what it waits for, once at first and every 30 s after. */
async function waitForRedis(client: RedisClient, url: string, logger: Logger, signal?: AbortSignal): Promise<void> {
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
}

/** This process, as the stats line shows it. */
interface WorkerGauges {
  inFlight: number;
  inFlightLimit: number;
  limitedBy: string;
  apiLatencyMs: number;
  imageMB: number;
  imageBudgetMB: number;
}

async function logStats(queue: string, fair: FairQueue, bill: Bill | undefined, here: () => WorkerGauges, logger: Logger): Promise<void> {
  try {
    const [{ bull, fair: fairCounts }, today] = await Promise.all([fair.counts(), bill?.today()]);
    logger.info({ queue, counts: bull, fair: fairCounts, worker: here(), bill: today }, 'queue stats');
  } catch (err) {
    logger.warn({ err: errorSummary(err) }, 'queue stats unavailable');
  }
}
