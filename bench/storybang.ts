import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import Bull from 'bull';
import { io } from 'socket.io-client';
import { startStorybangJwt, StorybangJwt } from '../__tests__/support/storybangJwt';
import { BenchChild } from './benchChild';
import type { Build } from './builds';
import type { StorybangPlan } from './plan';
import { commandCounts, commandDelta } from './redisFootprint';
import type { BenchSystem } from './system';
import { ROOM_SUFFIX, StoryServer, WaitPage, Watch } from './waitPage';
import { Delay, delays, describeDelay, meanDelayMs, XaiBehaviour, XaiCounters } from './xaiServer';
import { mergeCounts, WorkerProcess } from './workerProcess';
import { PRODUCER_DEFAULTS } from '../src/producer';

/** Of the requests the API received, the share it answered 429. */
export const share429 = (api: ApiFigures): number => (api.requests > 0 ? api.limited / api.requests : 0);

/**
 * "StoryBang at xAI's real speed": built workers (`node dist/index.js`) started exactly as StoryBang deploys them,
 * from the original worker's `.env` alone (plus GROK_API for the stand-in and a fresh QUEUE_NAME), against a
 * stand-in image API that takes 6-12 s and admits 5 requests per rolling second, StoryBang's JWT service and
 * notification service as they answer, and its wait pages (join once, ask every page at once, ask again at once
 * on Status false). Everything is read from outside: what the browsers receive, what the API saw, Redis INFO and
 * the workers' `job end` lines. Figures only: nothing here fails a run.
 */

const TEAM_LIMIT = { max: 5, windowMs: 1000 };
/** Requests per second the team may send. */
const TEAM_RATE = TEAM_LIMIT.max / (TEAM_LIMIT.windowMs / 1000);
const IMAGE_BYTES = 2000;
const REFUSED_MARK = 'a scene the moderation refuses';
/** StoryBang's server does not cut or trim what the person typed: a blank page prompt reaches the queue as is. */
const BLANK_PROMPT = '   ';

/** What the stand-in API saw during a run (requests per prompt left out). */
export type ApiFigures = Omit<XaiCounters, 'byPrompt'>;

interface Common {
  build: string;
  rev: string;
  workers: number;
  latency: Delay;
  api: ApiFigures;
  /** From the workers' `job end` lines. */
  outcomes: Record<string, number>;
  codes: Record<string, number>;
  /** Image requests StoryBang's server received: each one a Redis connection it opens and never closes. */
  asks: number;
  /** From the first ask to the end condition (or the cap). */
  durationMs: number;
  timedOut: boolean;
}

export interface StoriesRun extends Common {
  stories: number;
  pagesPerStory: number;
  storiesCompleted: number;
  delivered: number;
  /** Asking to the last page of the slowest story (the cap for a story not complete). */
  slowestMs: number;
  /** All pages at the team's 5/s, plus one mean latency. */
  idealMs: number;
  /** Mean over stories of asking to complete (the cap for a story not complete). */
  meanCompleteMs: number;
  /** The same mean if stories were served one after another at 5/s: story k complete at pages x k / 5 s + latency. */
  serialIdealMs: number;
  /**
   * The same, with the stand-in's very latencies: request i sent at i / 5 s and answered after the i-th delay the
   * stand-in draws; a story is complete at its slowest page. What a perfect story-after-story scheduler reaches.
   */
  serialSameDrawsMs: number;
  firstCompleteMs?: number;
  /** Status false seen by the wait pages, each one asked again at once. */
  failuresSeen: number;
  /** Pictures delivered again for a page that had one. */
  duplicates: number;
}

interface LoopSample {
  /** Seconds since the loops started, at the end of the interval. */
  atS: number;
  intervalS: number;
  /** All Redis commands in the interval, the producer's estimated share, and the worker's rate (the rest) per minute. */
  commands: number;
  producerCommands: number;
  workerPerMin: number;
  asks: { refused: number; blank: number };
  answers: { refused: number; blank: number };
  /** Token checks the JWT service answered. */
  jwtVerifies: number;
}

export interface LoopsRun extends Common {
  seconds: number;
  /** What one ask costs Redis on the producer's side (Bull's add), measured alone before the run. */
  producerCommandsPerAsk: number;
  /** The worker's Redis commands per minute while it waited with nothing to do, before the loops. */
  idlePerMin: number;
  samples: LoopSample[];
  refused: { answers: number; asks: number; apiRequests: number; apiAdmitted: number };
  blank: { answers: number; asks: number; apiRequests: number };
  jwtVerifies: number;
}

interface ReloadPage {
  number: number;
  /** The stand-in's requests for this page's prompt, and those admitted (worked on and billed). */
  requests: number;
  admitted: number;
  /** The room had its picture before the new page asked: a second purchase is then expected. */
  doneBeforeNewAsk: boolean;
  /** Pictures of this page the new page received. */
  deliveriesToNew: number;
}

interface ReloadRun extends Common {
  pages: number;
  /** Pages the old page had when it reloaded; when (ms from its ask). */
  deliveredBeforeReload: number[];
  reloadAtMs: number;
  /** The new page's ask to its last page. */
  newCompleteMs?: number;
  perPage: ReloadPage[];
  /** Admitted calls beyond one per page still waiting or running when the new page asked (beyond two for a page already done). */
  boughtTwice: number;
  /** Pictures the new page received once it had all its pages (StoryBang reads them as the story-saving call's answer). */
  afterComplete: number;
  newFailures: number;
  /** Every job ended before the cap (Bull's counts at zero, the API idle). */
  settled: boolean;
}

interface BurstRun extends Common {
  heavyJobs: number;
  /** The light user's ask to its picture. */
  lightWaitMs?: number;
  heavyBeforeLight: number;
  heavyDelivered: number;
  heavyLastMs?: number;
  /** The heavy user's pages at 5/s plus one mean latency. */
  heavyIdealMs: number;
}

export interface StorybangResults {
  builds: Array<{ label: string; rev: string }>;
  stories: StoriesRun[];
  threeWorkers: StoriesRun[];
  loops: LoopsRun[];
  reload: ReloadRun[];
  burst: BurstRun[];
  /** Runs that could not be measured (a worker that did not start, ...). */
  errors: Array<{ scenario: string; build: string; error: string }>;
}

interface Context {
  system: BenchSystem;
  relayUrl: string;
  jwt: StorybangJwt;
  logDir: string;
  /** An empty directory the workers run in: no stray `.env` adds a variable StoryBang's does not have. */
  cwd: string;
}

type Say = (line: string) => void;

export async function runStorybang(system: BenchSystem, builds: Build[], plan: StorybangPlan, tmpDir: string, say: Say): Promise<StorybangResults> {
  const logDir = path.join(tmpDir, 'logs', 'storybang');
  const cwd = path.join(tmpDir, 'storybang-cwd');
  fs.mkdirSync(logDir, { recursive: true });
  fs.rmSync(cwd, { recursive: true, force: true });
  fs.mkdirSync(cwd, { recursive: true });
  const relay = new BenchChild('storyRelay', { env: {}, logFile: path.join(logDir, 'story-relay.log') });
  const jwt = await startStorybangJwt();
  const results: StorybangResults = {
    builds: builds.map(({ label, rev }) => ({ label, rev })),
    stories: [],
    threeWorkers: [],
    loops: [],
    reload: [],
    burst: [],
    errors: [],
  };
  try {
    const ready = await relay.ready;
    if (ready.type !== 'relay') throw new Error('the StoryBang relay did not say its URL');
    const ctx: Context = { system, relayUrl: ready.url, jwt, logDir, cwd };
    const attempt = async <T>(scenario: string, build: Build, run: () => Promise<T>, show: (r: T) => string, into: T[]): Promise<void> => {
      try {
        const r = await run();
        into.push(r);
        say(`  ${build.label} (${build.rev}): ${show(r)}`);
      } catch (err) {
        const error = err instanceof Error ? err.message : String(err);
        results.errors.push({ scenario, build: build.label, error });
        say(`  ${build.label} (${build.rev}): not measured: ${error}`);
      }
    };
    const s = (ms: number | undefined): string => (ms === undefined ? '-' : `${(ms / 1000).toFixed(1)} s`);
    const capped = (r: Common): string => (r.timedOut ? ' (capped)' : '');
    const storyLine = (r: StoriesRun): string =>
      `${r.storiesCompleted}/${r.stories} stories, slowest ${s(r.slowestMs)} = ${(r.slowestMs / r.idealMs).toFixed(2)} x ideal, mean ${(r.meanCompleteMs / r.serialIdealMs).toFixed(2)} x story-after-story (${(r.meanCompleteMs / r.serialSameDrawsMs).toFixed(2)} x with the same latencies), ` +
      `${pct(share429(r.api))} 429, ${(r.api.requests / Math.max(1, r.delivered)).toFixed(2)} calls/page, peak ${r.api.peakInFlight} in flight${capped(r)}`;

    const { stories, threeWorkers, loops, reload, burst } = plan;
    for (const latency of stories.latencies) {
      say(`storybang 1) stories: ${stories.users} users x ${stories.pages} pages at once, 1 worker, ${describeDelay(latency)} API, 5/s`);
      for (const b of builds) {
        await attempt('stories', b, () => storiesRun(ctx, b, 1, stories.users, stories.pages, latency, stories.capMs), storyLine, results.stories);
      }
    }
    say(
      `storybang 2) ${threeWorkers.workers} workers: ${threeWorkers.users} users x ${threeWorkers.pages} pages, ${describeDelay(threeWorkers.latency)} API, 5/s`,
    );
    for (const b of builds) {
      await attempt(
        'three workers',
        b,
        () => storiesRun(ctx, b, threeWorkers.workers, threeWorkers.users, threeWorkers.pages, threeWorkers.latency, threeWorkers.capMs),
        storyLine,
        results.threeWorkers,
      );
    }
    say(`storybang 3) a refused and a blank prompt, each asked again at once for ${loops.seconds} s`);
    for (const b of builds) {
      await attempt(
        'loops',
        b,
        () => loopsRun(ctx, b, loops),
        (r) =>
          `refused: ${r.refused.answers} answers, ${r.refused.apiRequests} API calls; blank: ${r.blank.answers} answers; ${r.asks} asks (Redis connections leaked); ` +
          `worker Redis commands/min ${r.samples.map((x) => x.workerPerMin.toFixed(0)).join(' -> ')} (idle ${r.idlePerMin.toFixed(0)})`,
        results.loops,
      );
    }
    say(`storybang 4) reload after the 2nd picture: ${reload.pages} pages, ${describeDelay(reload.latency)} API`);
    for (const b of builds) {
      await attempt(
        'reload',
        b,
        () => reloadRun(ctx, b, reload),
        (r) =>
          `${r.api.requests} API calls (${r.api.requests - r.api.limited} admitted), ${r.boughtTwice} bought twice while waiting or running, deliveries to the new page ${r.perPage.map((p) => p.deliveriesToNew).join(' ')}, ` +
          `${r.afterComplete} after it was complete${r.settled ? '' : ' (not settled)'}${capped(r)}`,
        results.reload,
      );
    }
    say(`storybang 5) "heavy" queues ${burst.heavyJobs}, then "light" 1; ${describeDelay(burst.latency)} API, 5/s`);
    for (const b of builds) {
      await attempt(
        'burst',
        b,
        () => burstRun(ctx, b, burst),
        (r) =>
          `light waited ${s(r.lightWaitMs)} = ${r.lightWaitMs === undefined ? '-' : (r.lightWaitMs / meanDelayMs(r.latency)).toFixed(1)} x mean latency; heavy's last image ${s(r.heavyLastMs)} (ideal ${s(r.heavyIdealMs)})${capped(r)}`,
        results.burst,
      );
    }
  } finally {
    await relay.stop();
    await jwt.close();
  }
  return results;
}

const pct = (x: number): string => `${(x * 100).toFixed(1)}%`;
const sum = (xs: number[]): number => xs.reduce((a, b) => a + b, 0);
const mean = (xs: number[]): number => sum(xs) / Math.max(1, xs.length);
const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, Math.max(0, ms)));
const storyPages = (user: string, pages: number): Array<{ number: number; prompt: string }> =>
  Array.from({ length: pages }, (_, n) => ({ number: n, prompt: `A paper boat sails down a rainy street, for ${user}, page ${n}` }));

interface Session {
  queue: Bull.Queue;
  server: StoryServer;
  watch: Watch;
  /** Unique to the run: user Ids carry it, so nothing a worker remembers from an earlier run applies. */
  tag: string;
  /** Opens wait pages (each joins its room once) and leaves the relay a moment to handle the joins. */
  openPages(users: string[]): Promise<WaitPage[]>;
}

/**
 * A fresh queue and `workers` processes of `build` started from StoryBang's original `.env` only; StoryBang's
 * server and wait pages on it; everything torn down after `body`.
 */
async function withWorkers<T extends { durationMs: number; timedOut: boolean }>(
  ctx: Context,
  build: Build,
  workers: number,
  api: XaiBehaviour,
  body: (s: Session) => Promise<T>,
): Promise<T & Common> {
  const { system } = ctx;
  const tag = randomBytes(3).toString('hex');
  const queueName = `storybang_${tag}`;
  const redisPort = system.redisServer.port;
  system.xai.configure(api);
  ctx.jwt.verifyRequests.length = 0;
  const env: Record<string, string> = {
    // The original worker's .env, as StoryBang bakes it into the image...
    BULL_GENERATOR_HOST: '127.0.0.1',
    BULL_GENERATOR_PORT: String(redisPort),
    PORT_MESSAGES_USERS: ctx.relayUrl,
    API_JWT: ctx.jwt.baseUrl,
    API_GROK: 'xai-bench-key',
    PORT: '4000',
    // ...the stand-in instead of api.x.ai, a queue of this run's own, and the bench's log and stop settings.
    GROK_API: system.xai.url,
    QUEUE_NAME: queueName,
    LOG_LEVEL: 'info',
    SHUTDOWN_TIMEOUT_MS: '3000',
  };
  const procs = Array.from(
    { length: workers },
    (_, i) => new WorkerProcess(build.entry, env, path.join(ctx.logDir, `${queueName}-${build.label}-${i}.log`), ctx.cwd),
  );
  const started = await Promise.allSettled(procs.map((w) => w.ready));
  const failed = started.find((r) => r.status === 'rejected') as PromiseRejectedResult | undefined;
  if (failed) {
    await Promise.all(procs.map((w) => w.stop()));
    throw failed.reason;
  }
  // StoryBang's server: Bull with its own default prefix, the Redis of the .env.
  const queue = new Bull(queueName, { redis: { host: '127.0.0.1', port: redisPort } });
  const pages: WaitPage[] = [];
  const watch = new Watch();
  const server = new StoryServer(queue, (id) => ctx.jwt.create(id));
  const session: Session = {
    queue,
    server,
    watch,
    tag,
    async openPages(users) {
      const opened = users.map((user) => new WaitPage(user, ctx.relayUrl, server, watch.changed));
      pages.push(...opened);
      await Promise.all(opened.map((p) => p.open()));
      // The relay never acknowledges a join: give it a moment before anything is asked.
      await sleep(300);
      return opened;
    },
  };
  let out: T;
  let counters: XaiCounters;
  try {
    await queue.isReady();
    out = await body(session);
    counters = system.xai.counters();
  } finally {
    for (const p of pages) p.close();
    await Promise.all(procs.map((w) => w.stop()));
    await queue.obliterate({ force: true }).catch(() => undefined);
    await queue.close();
  }
  const logs = procs.map((w) => w.outcomes());
  const { byPrompt: _byPrompt, ...apiFigures } = counters;
  return {
    ...out,
    build: build.label,
    rev: build.rev,
    workers,
    latency: api.delayMs,
    api: apiFigures,
    outcomes: mergeCounts(logs.map((l) => l.outcomes)),
    codes: mergeCounts(logs.map((l) => l.codes)),
    asks: server.asks,
  };
}

/** 1 and 2: every user's story asked at once; until every story is complete. */
function storiesRun(ctx: Context, build: Build, workers: number, users: number, pagesPer: number, latency: Delay, capMs: number): Promise<StoriesRun> {
  return withWorkers(ctx, build, workers, { imageBytes: IMAGE_BYTES, delayMs: latency, limit: TEAM_LIMIT }, async (s) => {
    const waits = await s.openPages(Array.from({ length: users }, (_, i) => `${s.tag}-story${i}`));
    const t0 = performance.now();
    await Promise.all(waits.map((w) => w.ask(storyPages(w.user, pagesPer))));
    const done = await s.watch.until(() => waits.every((w) => w.completedAt !== undefined), capMs - (performance.now() - t0));
    const end = performance.now();
    const times = waits.map((w) => (w.completedAt ?? end) - t0);
    const completed = waits.filter((w) => w.completedAt !== undefined).map((w) => w.completedAt! - t0);
    const latencyMs = meanDelayMs(latency);
    const perStoryMs = (pagesPer * 1000) / TEAM_RATE;
    return {
      stories: users,
      pagesPerStory: pagesPer,
      storiesCompleted: completed.length,
      delivered: sum(waits.map((w) => w.delivered().length)),
      slowestMs: Math.max(...times),
      idealMs: users * perStoryMs + latencyMs,
      meanCompleteMs: mean(times),
      serialIdealMs: mean(waits.map((_, k) => (k + 1) * perStoryMs + latencyMs)),
      serialSameDrawsMs: serialSameDraws(users, pagesPer, latency),
      firstCompleteMs: completed.length > 0 ? Math.min(...completed) : undefined,
      failuresSeen: sum(waits.map((w) => w.failures())),
      duplicates: sum(waits.flatMap((w) => [...w.pages.values()].map((p) => Math.max(0, p.deliveries - 1)))),
      durationMs: end - t0,
      timedOut: !done,
    };
  });
}

function serialSameDraws(users: number, pagesPer: number, latency: Delay): number {
  const draw = delays(latency);
  const slotMs = 1000 / TEAM_RATE;
  const done = Array.from({ length: users }, (_, k) => Math.max(...Array.from({ length: pagesPer }, (_, j) => (k * pagesPer + j) * slotMs + draw())));
  return mean(done);
}

/** What one `queue.add` of StoryBang's server costs Redis (commands inside Bull's script included), on a queue nobody consumes. */
async function producerCommandsPerAsk(ctx: Context): Promise<number> {
  const { admin, redisServer } = ctx.system;
  const probe = new Bull(`storybang_probe_${randomBytes(3).toString('hex')}`, { redis: { host: '127.0.0.1', port: redisServer.port } });
  await probe.isReady();
  const add = (n: number): Promise<unknown> => probe.add({ Id: 'probe', Prompt: BLANK_PROMPT, Token: 'x', Number: n }, PRODUCER_DEFAULTS);
  for (let n = 0; n < 5; n++) await add(n);
  const N = 200;
  const before = await commandCounts(admin);
  for (let n = 0; n < N; n++) await add(n);
  const total = commandDelta(before, await commandCounts(admin)).total;
  await probe.obliterate({ force: true });
  await probe.close();
  return total / N;
}

/** 3: a refused prompt and a blank one, each asked again at once on every Status false, for `seconds`. */
async function loopsRun(ctx: Context, build: Build, plan: StorybangPlan['loops']): Promise<LoopsRun> {
  const perAsk = await producerCommandsPerAsk(ctx);
  const api: XaiBehaviour = { imageBytes: IMAGE_BYTES, delayMs: plan.latency, limit: TEAM_LIMIT, moderated: [REFUSED_MARK], countPrompts: true };
  return withWorkers(ctx, build, 1, api, async (s) => {
    const { admin, xai } = ctx.system;
    const [refused, blank] = await s.openPages([`${s.tag}-refused`, `${s.tag}-blank`]);
    const refusedPrompt = `${REFUSED_MARK}: a dragon and a knight`;

    const idleFrom = await commandCounts(admin);
    await sleep(plan.idleS * 1000);
    const idle = commandDelta(idleFrom, await commandCounts(admin)).total;

    const asksOf = (w: WaitPage): number => w.pages.get(0)?.asks ?? 0;
    let last = { at: performance.now(), counts: await commandCounts(admin), refusedAsks: 0, blankAsks: 0, refusedAnswers: 0, blankAnswers: 0 };
    const t0 = last.at;
    const samples: LoopSample[] = [];
    let jwtVerifies = 0;
    await Promise.all([refused.ask([{ number: 0, prompt: refusedPrompt }]), blank.ask([{ number: 0, prompt: BLANK_PROMPT }])]);
    const endAt = t0 + plan.seconds * 1000;
    for (let k = 1; last.at < endAt - 1; k++) {
      await sleep(Math.min(t0 + k * plan.sampleS * 1000, endAt) - performance.now());
      const now = {
        at: performance.now(),
        counts: await commandCounts(admin),
        refusedAsks: asksOf(refused),
        blankAsks: asksOf(blank),
        refusedAnswers: refused.answers,
        blankAnswers: blank.answers,
      };
      const verifies = ctx.jwt.verifyRequests.length;
      ctx.jwt.verifyRequests.length = 0;
      jwtVerifies += verifies;
      const intervalS = (now.at - last.at) / 1000;
      const commands = commandDelta(last.counts, now.counts).total;
      const asks = { refused: now.refusedAsks - last.refusedAsks, blank: now.blankAsks - last.blankAsks };
      const producerCommands = perAsk * (asks.refused + asks.blank);
      samples.push({
        atS: (now.at - t0) / 1000,
        intervalS,
        commands,
        producerCommands,
        workerPerMin: ((commands - producerCommands) * 60) / intervalS,
        asks,
        answers: { refused: now.refusedAnswers - last.refusedAnswers, blank: now.blankAnswers - last.blankAnswers },
        jwtVerifies: verifies,
      });
      last = now;
    }
    refused.close();
    blank.close();
    const byPrompt = Object.entries(xai.counters().byPrompt);
    const refusedCalls = byPrompt.filter(([p]) => p.includes(REFUSED_MARK)).map(([, c]) => c);
    const blankCalls = byPrompt.filter(([p]) => p.trim() === '').map(([, c]) => c);
    return {
      seconds: plan.seconds,
      producerCommandsPerAsk: perAsk,
      idlePerMin: (idle * 60) / plan.idleS,
      samples,
      refused: {
        answers: refused.answers,
        asks: asksOf(refused),
        apiRequests: sum(refusedCalls.map((c) => c.requests)),
        apiAdmitted: sum(refusedCalls.map((c) => c.admitted)),
      },
      blank: { answers: blank.answers, asks: asksOf(blank), apiRequests: sum(blankCalls.map((c) => c.requests)) },
      jwtVerifies,
      durationMs: performance.now() - t0,
      timedOut: false,
    };
  });
}

/**
 * 4: a story asked; after its 2nd picture the tab reloads: the old page is gone (its socket closed), a new one
 * joins the room once and asks for every page again, same prompts and Numbers. Then every job is let end, to count
 * what the new page receives after it is complete. A silent observer in the room (no browser does this) tells
 * which pages were done before the new page asked.
 */
function reloadRun(ctx: Context, build: Build, plan: StorybangPlan['reload']): Promise<ReloadRun> {
  const api: XaiBehaviour = { imageBytes: IMAGE_BYTES, delayMs: plan.latency, limit: TEAM_LIMIT, countPrompts: true };
  return withWorkers(ctx, build, 1, api, async (s) => {
    const user = `${s.tag}-reader`;
    const pages = storyPages(user, plan.pages);
    const observer = await observeRoom(ctx.relayUrl, user + ROOM_SUFFIX);
    try {
      const [old] = await s.openPages([user]);
      const t0 = performance.now();
      const deadline = t0 + plan.capMs;
      await old.ask(pages);
      const reached = await s.watch.until(() => old.delivered().length >= 2, deadline - performance.now());
      const reloadAt = performance.now();
      const deliveredBeforeReload = old.delivered().map((p) => p.number);
      old.close();
      const [fresh] = await s.openPages([user]);
      const freshAskAt = performance.now();
      const doneBefore = new Set(observer.delivered.filter((d) => d.at < freshAskAt).map((d) => d.number));
      await fresh.ask(pages);
      const complete = await s.watch.until(() => fresh.completedAt !== undefined, deadline - performance.now());
      const settled = await settle(s.queue, ctx, deadline);
      const byPrompt = Object.entries(ctx.system.xai.counters().byPrompt);
      const perPage = pages.map(({ number, prompt }): ReloadPage => {
        const calls = byPrompt.filter(([p]) => p.endsWith(prompt)).map(([, c]) => c);
        return {
          number,
          requests: sum(calls.map((c) => c.requests)),
          admitted: sum(calls.map((c) => c.admitted)),
          doneBeforeNewAsk: doneBefore.has(number),
          deliveriesToNew: fresh.pages.get(number)?.deliveries ?? 0,
        };
      });
      return {
        pages: plan.pages,
        deliveredBeforeReload,
        reloadAtMs: reloadAt - t0,
        newCompleteMs: fresh.completedAt === undefined ? undefined : fresh.completedAt - freshAskAt,
        perPage,
        boughtTwice: sum(perPage.map((p) => Math.max(0, p.admitted - (p.doneBeforeNewAsk ? 2 : 1)))),
        afterComplete: fresh.afterComplete,
        newFailures: fresh.failures(),
        settled,
        durationMs: performance.now() - t0,
        timedOut: !reached || !complete,
      };
    } finally {
      observer.close();
    }
  });
}

/** Pictures (Status true) that reach a room, with when; for the bench's own bookkeeping. */
async function observeRoom(relayUrl: string, room: string): Promise<{ delivered: Array<{ number: number; at: number }>; close: () => void }> {
  const socket = io(relayUrl, { transports: ['websocket'] });
  const delivered: Array<{ number: number; at: number }> = [];
  socket.on('Profile_Response', (m: { Status?: unknown; Number?: unknown }) => {
    if (m.Status === true) delivered.push({ number: Number(m.Number), at: performance.now() });
  });
  await new Promise<void>((resolve, reject) => {
    socket.once('connect_error', reject);
    socket.once('connect', () => {
      socket.emit('joinRoom', room);
      resolve();
    });
  });
  return { delivered, close: () => void socket.disconnect() };
}

/**
 * Waits until every job has ended: Bull counts nothing waiting, active or delayed, and the API has answered
 * everything and seen nothing new, for 3 s in a row. False at the deadline.
 */
async function settle(queue: Bull.Queue, ctx: Context, deadline: number): Promise<boolean> {
  const QUIET_MS = 3000;
  let quietSince: number | undefined;
  let lastRequests = -1;
  while (performance.now() < deadline) {
    const counts = await queue.getJobCounts();
    const api = ctx.system.xai.counters();
    const busy = counts.waiting + counts.active + counts.delayed > 0 || api.inFlight > 0 || api.requests !== lastRequests;
    lastRequests = api.requests;
    if (busy) quietSince = undefined;
    else quietSince ??= performance.now();
    if (quietSince !== undefined && performance.now() - quietSince >= QUIET_MS) return true;
    await sleep(250);
  }
  return false;
}

/** 5: a heavy user queues a burst, then a light user asks for one picture. */
function burstRun(ctx: Context, build: Build, plan: StorybangPlan['burst']): Promise<BurstRun> {
  return withWorkers(ctx, build, 1, { imageBytes: IMAGE_BYTES, delayMs: plan.latency, limit: TEAM_LIMIT }, async (s) => {
    const [heavy, light] = await s.openPages([`${s.tag}-heavy`, `${s.tag}-light`]);
    const t0 = performance.now();
    const deadline = t0 + plan.capMs;
    await heavy.ask(Array.from({ length: plan.heavyJobs }, (_, n) => ({ number: n, prompt: `A lighthouse at dawn in watercolour, study ${n}` })));
    await light.ask([{ number: 0, prompt: 'A fox asleep under a red umbrella' }]);
    const lightDone = await s.watch.until(() => light.completedAt !== undefined, deadline - performance.now());
    const heavyDone = await s.watch.until(() => heavy.completedAt !== undefined, deadline - performance.now());
    const lightPage = light.pages.get(0)!;
    return {
      heavyJobs: plan.heavyJobs,
      lightWaitMs: light.completedAt === undefined ? undefined : light.completedAt - lightPage.askedAt,
      heavyBeforeLight: heavy.delivered().filter((p) => light.completedAt === undefined || p.deliveredAt! < light.completedAt).length,
      heavyDelivered: heavy.delivered().length,
      heavyLastMs: heavy.completedAt === undefined ? undefined : heavy.completedAt - t0,
      heavyIdealMs: (plan.heavyJobs * 1000) / TEAM_RATE + meanDelayMs(plan.latency),
      durationMs: performance.now() - t0,
      timedOut: !lightDone || !heavyDone,
    };
  });
}
