import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import Bull from 'bull';
import { BenchChild } from './benchChild';
import { Browsers } from './browsers';
import type { Build } from './builds';
import type { CapacityPlan } from './plan';
import { commandCounts, commandDelta } from './redisFootprint';
import type { BenchSystem } from './system';
import type { XaiBehaviour, XaiCounters } from './xaiServer';
import { CONFIG_REFUSED, mergeCounts, WorkerProcess } from './workerProcess';

/**
 * Issue 9's capacity scenarios, each run against every build (the baseline commit and the current tree) in the
 * same bench run: built workers as child processes, driven only by the contract's environment variables, a stand-in
 * image API enforcing xAI's 5 requests/s team limit, StoryBang's relay and its browsers (which re-ask at once).
 */

const CAPACITY_JWT_SECRET = 'bench-capacity-secret-0123456789abcdef';
const TEAM_LIMIT = { max: 5, windowMs: 1000 };
const MODERATED_MARK = 'a scene the moderation refuses';

/** One way of running a build: its environment on top of the common one. */
export interface Variant {
  name: string;
  build: string;
  rev: string;
  env: Record<string, string>;
  /** Set when the build refused part of `env` and ran without it. */
  note?: string;
}

interface Common {
  variant: Variant;
  workers: number;
  api: XaiCounters;
  /** From the workers' `job end` lines. */
  outcomes: Record<string, number>;
  codes: Record<string, number>;
  /** From the first ask to the end condition (or the cap). */
  durationMs: number;
  timedOut: boolean;
}

interface RateLimitRun extends Common {
  pages: number;
  delivered: number;
  imagesPerS: number;
  share429: number;
  usersFailed: number;
  failuresSeen: number;
}
interface FairnessRun extends Common {
  limiter: 'off' | 'on';
  latencyMs: number;
  /** Enqueue to delivery of the light user's one image; undefined if it did not come within the cap. */
  lightWaitMs?: number;
  heavyDeliveredFirst: number;
}
interface LoneRun extends Common {
  jobs: number;
  delivered: number;
  imagesPerS: number;
}
interface StoryRun extends Common {
  stories: number;
  pagesPerStory: number;
  storiesCompleted: number;
  /** Longest time from asking to the last page of a story (the moderated page left out). */
  slowestMs: number;
  idealMs: number;
  delivered: number;
  /** Status false seen by browsers, the moderated page left out; and the users who saw one. */
  failuresSeen: number;
  usersFailed: number;
  moderatedAsks: number;
  duplicates: number;
}
interface CostRun extends Common {
  jobs: number;
  delivered: number;
  /** Redis commands per job: everything, what the producer alone sends, and the workers' share (the difference). */
  commandsPerJob: { total: number; producer: number; worker: number };
  topCommands: Record<string, number>;
  cpuMsPerJob: number;
}

export interface CapacityResults {
  builds: Array<{ label: string; rev: string }>;
  rateLimit: RateLimitRun[];
  fairness: FairnessRun[];
  lone: LoneRun[];
  story: StoryRun[];
  cost: CostRun[];
}

interface Context {
  system: BenchSystem;
  relayUrl: string;
  logDir: string;
  say: (line: string) => void;
}

/** Variants per build: defaults, the limiter explicitly off, and for the baseline its Bull job limiter at 5/s. */
function variantsOf(builds: Build[]): { defaults: Variant[]; limiterOff: Variant[]; limiterOn: Variant[] } {
  const v = (b: Build, suffix: string, env: Record<string, string>): Variant => ({ name: `${b.label}${suffix}`, build: b.label, rev: b.rev, env });
  const defaults: Variant[] = [];
  const limiterOff: Variant[] = [];
  const limiterOn: Variant[] = [];
  for (const b of builds) {
    if (b.label === 'baseline') {
      // The baseline has no limiter by default and refuses GROK_RATE_LIMIT=0; its Bull limiter is the issue's variant.
      const limited = v(b, ' + GROK_RATE_LIMIT=5', { GROK_RATE_LIMIT: '5', GROK_RATE_WINDOW_MS: '1000' });
      defaults.push(v(b, '', {}), limited);
      limiterOff.push(v(b, '', {}));
      limiterOn.push(limited);
    } else {
      defaults.push(v(b, '', {}));
      limiterOff.push(v(b, ', GROK_RATE_LIMIT=0', { GROK_RATE_LIMIT: '0' }));
      limiterOn.push(v(b, '', {}));
    }
  }
  return { defaults, limiterOff, limiterOn };
}

export async function runCapacity(
  system: BenchSystem,
  builds: Build[],
  plan: CapacityPlan,
  tmpDir: string,
  say: (line: string) => void,
): Promise<CapacityResults> {
  const logDir = path.join(tmpDir, 'logs', 'capacity');
  fs.mkdirSync(logDir, { recursive: true });
  const relay = new BenchChild('storyRelay', { env: {}, logFile: path.join(logDir, 'story-relay.log') });
  const ready = await relay.ready;
  if (ready.type !== 'relay') throw new Error('the StoryBang relay did not say its URL');
  const ctx: Context = { system, relayUrl: ready.url, logDir, say };
  const entries = new Map(builds.map((b) => [b.label, b.entry]));
  const { defaults, limiterOff, limiterOn } = variantsOf(builds);
  const results: CapacityResults = { builds: builds.map(({ label, rev }) => ({ label, rev })), rateLimit: [], fairness: [], lone: [], story: [], cost: [] };
  const show = (r: Common, text: string): void =>
    say(
      `  ${r.variant.name}${r.workers > 1 ? `, ${r.workers} workers` : ''}: ${text}${r.timedOut ? ' (capped)' : ''}${r.variant.note ? ` [${r.variant.note}]` : ''}`,
    );
  try {
    const p = plan;
    say(`capacity a) rate limit: ${p.rateLimit.workers} workers, ${p.rateLimit.jobs} users x 1 image, ${p.rateLimit.latencyMs} ms API, 5/s team limit`);
    for (const v of defaults) {
      const r = await rateLimitRun(ctx, entries, v, p.rateLimit);
      results.rateLimit.push(r);
      show(r, `${r.imagesPerS.toFixed(2)} images/s, ${(r.share429 * 100).toFixed(1)}% 429, ${r.usersFailed} users saw a failure`);
    }
    say(`capacity b) fairness: "heavy" queues ${p.fairness.heavyJobs}, then "light" 1; ${p.fairness.latencyMs} ms API`);
    for (const [limiter, variants] of [
      ['off', limiterOff],
      ['on', limiterOn],
    ] as const) {
      for (const workers of p.fairness.workers) {
        for (const v of variants) {
          const r = await fairnessRun(ctx, entries, v, workers, limiter, p.fairness);
          results.fairness.push(r);
          show(
            r,
            `limiter ${limiter}: light waited ${r.lightWaitMs === undefined ? 'beyond the cap' : `${(r.lightWaitMs / r.latencyMs).toFixed(1)} x API latency`}`,
          );
        }
      }
    }
    say(`capacity b) a lone user's ${p.fairness.loneJobs} jobs, 1 worker, limiter off`);
    for (const v of limiterOff) {
      const r = await loneRun(ctx, entries, v, p.fairness);
      results.lone.push(r);
      show(r, `${r.imagesPerS.toFixed(2)} images/s`);
    }
    say(`capacity c) StoryBang: ${p.story.users} users x ${p.story.pages} pages at once, ${p.story.latencyMs} ms API, 5/s, one page moderated`);
    for (const v of defaults) {
      const r = await storyRun(ctx, entries, v, p.story);
      results.story.push(r);
      show(
        r,
        `slowest story ${(r.slowestMs / 1000).toFixed(1)} s (ideal ${(r.idealMs / 1000).toFixed(1)} s), ${r.failuresSeen} failures seen, ${r.api.requests} API calls for ${r.delivered} pages`,
      );
    }
    say(`capacity d) cost: ${p.cost.jobs} jobs, 1 worker, API at once, limiter off`);
    for (const v of limiterOff) {
      const r = await costRun(ctx, entries, v, p.cost);
      results.cost.push(r);
      show(r, `${r.commandsPerJob.worker.toFixed(1)} Redis commands/job, ${r.cpuMsPerJob.toFixed(2)} CPU ms/job`);
    }
  } finally {
    await relay.stop();
  }
  return results;
}

/** A fresh queue, `workers` processes of the variant's build ready on it, browsers on the relay; torn down after `body`. */
async function withWorkers<T>(
  ctx: Context,
  entries: Map<string, string>,
  variant: Variant,
  workers: number,
  api: XaiBehaviour,
  body: (s: { queue: Bull.Queue; browsers: Browsers; procs: WorkerProcess[]; queueName: string }) => Promise<T>,
): Promise<T & Omit<Common, 'durationMs' | 'timedOut'>> {
  const { system } = ctx;
  const queueName = `cap_${randomBytes(4).toString('hex')}`;
  system.xai.configure(api);
  const env: Record<string, string> = {
    REDIS_URL: system.redisServer.url,
    QUEUE_NAME: queueName,
    IMAGE_PROVIDER: 'grok',
    GROK_API: system.xai.url,
    GROK_API_KEY: 'x',
    JWT_SECRET: CAPACITY_JWT_SECRET,
    PORT_MESSAGES_USERS: ctx.relayUrl,
    NOTIFY_FORMAT: 'legacy',
    CONCURRENCY: '5',
    LOG_LEVEL: 'info',
    SHUTDOWN_TIMEOUT_MS: '3000',
    ...variant.env,
  };
  const start = (e: Record<string, string>): WorkerProcess[] =>
    Array.from(
      { length: workers },
      (_, i) => new WorkerProcess(entries.get(variant.build)!, e, path.join(ctx.logDir, `${queueName}-${variant.build}-${i}.log`)),
    );
  let procs = start(env);
  const started = await Promise.allSettled(procs.map((w) => w.ready));
  const refused = started.some((s) => s.status === 'rejected' && (s.reason as { code?: number }).code === CONFIG_REFUSED);
  if (refused && env.GROK_RATE_LIMIT === '0') {
    // A build without the shared limiter refuses 0 (it had no way to turn off what it did not have): run it without.
    await Promise.all(procs.map((w) => w.stop()));
    delete env.GROK_RATE_LIMIT;
    variant.note = 'GROK_RATE_LIMIT=0 refused by this build: ran without it';
    procs = start(env);
    await Promise.all(procs.map((w) => w.ready));
  } else {
    const failed = started.find((s) => s.status === 'rejected') as PromiseRejectedResult | undefined;
    if (failed) {
      await Promise.all(procs.map((w) => w.stop()));
      throw failed.reason;
    }
  }
  // The front end's producer: a plain Bull queue with Bull's own prefix.
  const queue = new Bull(queueName, system.redisServer.url);
  await queue.isReady();
  const browsers = new Browsers(ctx.relayUrl, queue, CAPACITY_JWT_SECRET);
  let out: T;
  let counters: XaiCounters;
  try {
    out = await body({ queue, browsers, procs, queueName });
    counters = system.xai.counters();
  } finally {
    browsers.close();
    await Promise.all(procs.map((w) => w.stop()));
    await queue.obliterate({ force: true }).catch(() => undefined);
    await queue.close();
  }
  // Read after the workers stopped: jobs that were still running when the end condition held have ended too.
  const logs = procs.map((w) => w.outcomes());
  return { ...out, variant, workers, api: counters, outcomes: mergeCounts(logs.map((l) => l.outcomes)), codes: mergeCounts(logs.map((l) => l.codes)) };
}

const users = (prefix: string, n: number): string[] => Array.from({ length: n }, (_, i) => `${prefix}${i}`);
const prompt = (user: string, n: number): string => `A lighthouse at dawn in watercolour for ${user}, page ${n}`;

async function rateLimitRun(ctx: Context, entries: Map<string, string>, v: Variant, plan: CapacityPlan['rateLimit']): Promise<RateLimitRun> {
  const latency = { imageBytes: 2000, delayMs: plan.latencyMs, limit: TEAM_LIMIT };
  return withWorkers(ctx, entries, v, plan.workers, latency, async ({ browsers }) => {
    const ids = users('u', plan.jobs);
    await browsers.join(ids);
    const t0 = performance.now();
    await browsers.ask(ids.map((user) => ({ user, number: 0, prompt: prompt(user, 0) })));
    const done = await browsers.until((b) => b.delivered().length === plan.jobs, plan.capMs);
    const delivered = browsers.delivered();
    const lastAt = Math.max(t0, ...delivered.map((p) => p.deliveredAt!));
    const api = ctx.system.xai.counters();
    const pages = browsers.pages();
    return {
      pages: plan.jobs,
      delivered: delivered.length,
      durationMs: (done ? lastAt : performance.now()) - t0,
      timedOut: !done,
      imagesPerS: (delivered.length * 1000) / Math.max(1, (done ? lastAt : performance.now()) - t0),
      share429: api.requests > 0 ? api.limited / api.requests : 0,
      usersFailed: new Set(pages.filter((p) => p.failures > 0).map((p) => p.user)).size,
      failuresSeen: pages.reduce((s, p) => s + p.failures, 0),
    };
  });
}

async function fairnessRun(
  ctx: Context,
  entries: Map<string, string>,
  v: Variant,
  workers: number,
  limiter: 'off' | 'on',
  plan: CapacityPlan['fairness'],
): Promise<FairnessRun> {
  const api = { imageBytes: 2000, delayMs: plan.latencyMs, limit: limiter === 'on' ? TEAM_LIMIT : undefined };
  return withWorkers(ctx, entries, v, workers, api, async ({ browsers }) => {
    await browsers.join(['heavy', 'light']);
    const t0 = performance.now();
    await browsers.ask(Array.from({ length: plan.heavyJobs }, (_, n) => ({ user: 'heavy', number: n, prompt: prompt('heavy', n) })));
    await browsers.ask([{ user: 'light', number: 0, prompt: prompt('light', 0) }]);
    const done = await browsers.until((b) => b.delivered((p) => p.user === 'light').length === 1, plan.capMs);
    const light = browsers.delivered((p) => p.user === 'light')[0];
    return {
      limiter,
      latencyMs: plan.latencyMs,
      lightWaitMs: light ? light.deliveredAt! - light.askedAt : undefined,
      heavyDeliveredFirst: browsers.delivered((p) => p.user === 'heavy' && (!light || p.deliveredAt! < light.deliveredAt!)).length,
      durationMs: performance.now() - t0,
      timedOut: !done,
    };
  });
}

async function loneRun(ctx: Context, entries: Map<string, string>, v: Variant, plan: CapacityPlan['fairness']): Promise<LoneRun> {
  return withWorkers(ctx, entries, v, 1, { imageBytes: 2000, delayMs: plan.latencyMs }, async ({ browsers }) => {
    await browsers.join(['lone']);
    const t0 = performance.now();
    await browsers.ask(Array.from({ length: plan.loneJobs }, (_, n) => ({ user: 'lone', number: n, prompt: prompt('lone', n) })));
    const done = await browsers.until((b) => b.delivered().length === plan.loneJobs, plan.capMs);
    const delivered = browsers.delivered();
    const ms = (done ? Math.max(...delivered.map((p) => p.deliveredAt!)) : performance.now()) - t0;
    return { jobs: plan.loneJobs, delivered: delivered.length, imagesPerS: (delivered.length * 1000) / ms, durationMs: ms, timedOut: !done };
  });
}

async function storyRun(ctx: Context, entries: Map<string, string>, v: Variant, plan: CapacityPlan['story']): Promise<StoryRun> {
  const api = { imageBytes: 2000, delayMs: plan.latencyMs, limit: TEAM_LIMIT, moderated: [MODERATED_MARK] };
  return withWorkers(ctx, entries, v, plan.workers, api, async ({ browsers }) => {
    const ids = users('story', plan.users);
    await browsers.join(ids);
    // One page of one story is refused by moderation, whatever is asked.
    const isModerated = (user: string, n: number): boolean => user === ids[Math.floor(plan.users / 2)] && n === 2;
    const pages = ids.flatMap((user) =>
      Array.from({ length: plan.pages }, (_, n) => ({ user, number: n, prompt: isModerated(user, n) ? `${MODERATED_MARK}, page ${n}` : prompt(user, n) })),
    );
    const t0 = performance.now();
    await browsers.ask(pages);
    const wanted = pages.length - 1;
    const done = await browsers.until((b) => b.delivered((p) => !isModerated(p.user, p.number)).length === wanted, plan.capMs);
    const end = performance.now();
    const all = browsers.pages();
    const normal = all.filter((p) => !isModerated(p.user, p.number));
    let completed = 0;
    let slowest = 0;
    for (const user of ids) {
      const own = normal.filter((p) => p.user === user);
      if (own.every((p) => p.deliveredAt !== undefined)) completed++;
      slowest = Math.max(slowest, ...own.map((p) => (p.deliveredAt ?? end) - t0));
    }
    return {
      stories: plan.users,
      pagesPerStory: plan.pages,
      storiesCompleted: completed,
      slowestMs: slowest,
      idealMs: (pages.length * 1000) / TEAM_LIMIT.max,
      delivered: normal.filter((p) => p.deliveredAt !== undefined).length,
      failuresSeen: normal.reduce((s, p) => s + p.failures, 0),
      usersFailed: new Set(normal.filter((p) => p.failures > 0).map((p) => p.user)).size,
      moderatedAsks: all.filter((p) => isModerated(p.user, p.number)).reduce((s, p) => s + p.asks, 0),
      duplicates: browsers.duplicates,
      durationMs: end - t0,
      timedOut: !done,
    };
  });
}

async function costRun(ctx: Context, entries: Map<string, string>, v: Variant, plan: CapacityPlan['cost']): Promise<CostRun> {
  const { admin } = ctx.system;
  const ids = users('c', plan.users);
  const jobsOf = (): Array<{ user: string; number: number; prompt: string }> =>
    Array.from({ length: plan.jobs }, (_, n) => ({ user: ids[n % ids.length], number: n, prompt: prompt(ids[n % ids.length], n) }));
  // The producer alone: the same adds on a queue nobody consumes.
  const alone = new Bull(`cap_producer_${randomBytes(4).toString('hex')}`, ctx.system.redisServer.url);
  await alone.isReady();
  const lone = new Browsers(ctx.relayUrl, alone, CAPACITY_JWT_SECRET);
  const p0 = await commandCounts(admin);
  await lone.ask(jobsOf());
  const producer = commandDelta(p0, await commandCounts(admin)).total;
  await alone.obliterate({ force: true });
  await alone.close();

  return withWorkers(ctx, entries, v, 1, { imageBytes: 2000, delayMs: 0 }, async ({ browsers, procs }) => {
    await browsers.join(ids);
    const before = await commandCounts(admin);
    const cpuBefore = procs[0].cpuMs();
    const t0 = performance.now();
    await browsers.ask(jobsOf());
    const done = await browsers.until((b) => b.delivered().length === plan.jobs, plan.capMs);
    const durationMs = performance.now() - t0;
    const cpu = procs[0].cpuMs() - cpuBefore;
    const delta = commandDelta(before, await commandCounts(admin));
    const top = Object.entries(delta.byCommand)
      .sort((a, b) => b[1] - a[1])
      .slice(0, 6)
      .map(([cmd, n]) => [cmd, n / plan.jobs] as const);
    return {
      jobs: plan.jobs,
      delivered: browsers.delivered().length,
      commandsPerJob: { total: delta.total / plan.jobs, producer: producer / plan.jobs, worker: (delta.total - producer) / plan.jobs },
      topCommands: Object.fromEntries(top),
      cpuMsPerJob: cpu / plan.jobs,
      durationMs,
      timedOut: !done,
    };
  });
}
