import type Bull from 'bull';
import { PRODUCER_DEFAULTS } from '../src/producer';
import type { Child } from './child';
import { fmt, Row } from './report';
import { Rig, sleep } from './rig';
import type { XaiBehaviour } from './xaiServer';

/**
 * Throughput and memory at the worker's own in-flight count: deliveries are counted by the relay (no browsers),
 * jobs enqueued with `addBulk` before the worker starts.
 */

const USERS = 200;

/** `jobs` jobs of StoryBang's shape, spread over USERS users, queued in bulk. */
async function enqueue(rig: Rig, queue: Bull.Queue, jobs: number): Promise<void> {
  const tokens = Array.from({ length: USERS }, (_, u) => rig.token(`u${u}`));
  for (let start = 0; start < jobs; start += 500) {
    const batch = Array.from({ length: Math.min(500, jobs - start) }, (_, k) => {
      const n = start + k;
      return {
        data: { Id: `u${n % USERS}`, Prompt: `A lighthouse at dawn in watercolour, study ${n}`, Token: tokens[n % USERS], Number: n },
        opts: PRODUCER_DEFAULTS,
      };
    });
    await queue.addBulk(batch);
  }
}

interface RateRun {
  perS: number;
  share429: number;
  peakInFlight: number;
  peakRss: number;
  inFlightLimit: number;
  limitedBy: string;
}

/** One worker on a full queue: images delivered per second over [warmS, warmS + windowS] after it was ready. */
async function rateRun(
  rig: Rig,
  scenario: string,
  api: XaiBehaviour,
  env: Record<string, string>,
  warmS: number,
  windowS: number,
  perS: number,
): Promise<RateRun> {
  rig.xai.configure(api);
  const name = rig.queueName(scenario);
  const queue = rig.producer(name);
  await enqueue(rig, queue, Math.ceil(perS * (warmS + windowS + 10)));
  const worker = await rig.worker(name, rig.contractEnv(name, { ...env, BENCH_EVENTS: 'worker:ready' }));
  try {
    await sleep(warmS * 1000);
    const from = performance.now();
    await sleep(windowS * 1000);
    const to = performance.now();
    await sleep(300); // the relay's last report of the window
    const api = rig.xai.counters();
    return {
      perS: rig.deliveredBetween(from, to) / ((to - from) / 1000),
      share429: api.limited / Math.max(1, api.requests),
      peakInFlight: api.peakInFlight,
      peakRss: worker.child.peakRss(),
      inFlightLimit: worker.inFlightLimit,
      limitedBy: worker.limitedBy,
    };
  } finally {
    await rig.stop(worker.child);
    rig.xai.drop();
    await queue.obliterate({ force: true }).catch(() => undefined);
    await queue.close();
  }
}

/** A team whose limit xAI raised to 50/s: one worker, GROK_RATE_LIMIT=50, 6-12 s, no CONCURRENCY. */
export async function limit(rig: Rig): Promise<Row[]> {
  const [warmS, windowS] = rig.quick ? [15, 15] : [20, 40];
  const api: XaiBehaviour = { imageBytes: 2000, delayMs: [6000, 12000], limit: { max: 50, windowMs: 1000 } };
  const r = await rateRun(rig, 'limit', api, { GROK_RATE_LIMIT: '50' }, warmS, windowS, 50);
  const s = 'limit';
  return [
    {
      scenario: s,
      figure: `delivered images/s over ${windowS} s after ${warmS} s / 50`,
      value: `${fmt.ratio(r.perS / 50)} (${r.perS.toFixed(1)}/s)`,
      goal: '>= 0.9',
      met: r.perS / 50 >= 0.9,
    },
    { scenario: s, figure: 'requests answered 429', value: fmt.pct(r.share429), goal: '<= 5%', met: r.share429 <= 0.05 },
    { scenario: s, figure: 'peak RSS of the worker', value: fmt.mb(r.peakRss) },
    {
      scenario: s,
      figure: 'worker:ready inFlightLimit (limitedBy); peak requests in flight at the API',
      value: `${r.inFlightLimit} (${r.limitedBy}); ${r.peakInFlight}`,
    },
  ];
}

/** The pace off: CONCURRENCY=200, 1.5 s per image, GROK_RATE_LIMIT=0. */
export async function paceoff(rig: Rig): Promise<Row[]> {
  const ideal = 200 / 1.5;
  const [warmS, windowS] = rig.quick ? [5, 12] : [8, 30];
  const r = await rateRun(rig, 'paceoff', { imageBytes: 2000, delayMs: 1500 }, { CONCURRENCY: '200', GROK_RATE_LIMIT: '0' }, warmS, windowS, ideal);
  return [
    {
      scenario: 'paceoff',
      figure: `delivered images/s over ${windowS} s / (200 / 1.5 s)`,
      value: `${fmt.ratio(r.perS / ideal)} (${r.perS.toFixed(1)}/s)`,
      goal: '>= 0.95',
      met: r.perS / ideal >= 0.95,
    },
    {
      scenario: 'paceoff',
      figure: 'worker:ready inFlightLimit (limitedBy); peak in flight at the API',
      value: `${r.inFlightLimit} (${r.limitedBy}); ${r.peakInFlight}`,
    },
  ];
}

interface MemoryRun {
  peakRss: number;
  delivered: number;
  peakInFlight: number;
}

/** 1 MB images through `consumer`; the relay frozen (SIGSTOP) from `stopAtS` for `stopForS`; until all delivered. */
async function memoryRun(rig: Rig, name: string, queue: Bull.Queue, consumer: () => Promise<Child>, jobs: number): Promise<MemoryRun> {
  const [stopAtS, stopForS, capS] = rig.quick ? [5, 5, 90] : [10, 15, 180];
  await enqueue(rig, queue, jobs);
  rig.xai.configure({ imageBytes: 1024 * 1024, delayMs: [6000, 12000] });
  const child = await consumer();
  const t0 = performance.now();
  const relay = rig.relay.pid;
  try {
    await sleep(stopAtS * 1000);
    process.kill(relay, 'SIGSTOP');
    await sleep(stopForS * 1000);
    process.kill(relay, 'SIGCONT');
    while (rig.deliveredBetween(t0) < jobs && performance.now() - t0 < capS * 1000) await sleep(250);
    return { peakRss: child.peakRss(), delivered: rig.deliveredBetween(t0), peakInFlight: rig.xai.counters().peakInFlight };
  } finally {
    process.kill(relay, 'SIGCONT');
    await rig.stop(child);
    rig.xai.drop();
    await queue.obliterate({ force: true }).catch(() => undefined);
    await queue.close();
  }
}

/**
 * Memory: 1 MB images at the in-flight count the worker chooses at a 50/s limit (its limit scenario's settings;
 * the stand-in does not limit, the worker paces itself), the relay frozen a while; then the bare pipeline with
 * CONCURRENCY = the worker's peak in flight, same jobs.
 */
export async function memory(rig: Rig): Promise<Row[]> {
  const jobs = rig.quick ? 400 : 1500;
  const wName = rig.queueName('memory_worker');
  const w = await memoryRun(
    rig,
    wName,
    rig.producer(wName),
    async () => (await rig.worker(wName, rig.contractEnv(wName, { GROK_RATE_LIMIT: '50', BENCH_EVENTS: 'worker:ready' }))).child,
    jobs,
  );
  const bName = rig.queueName('memory_bare');
  const concurrency = String(Math.max(1, w.peakInFlight));
  const b = await memoryRun(rig, bName, rig.producer(bName), () => rig.bare(bName, rig.contractEnv(bName, { CONCURRENCY: concurrency })), jobs);
  const s = 'memory';
  return [
    {
      scenario: s,
      figure: `peak RSS, ${jobs} jobs of 1 MB, relay frozen a while: worker / bare`,
      value: `${fmt.mb(w.peakRss)} / ${fmt.mb(b.peakRss)} (${fmt.ratio(w.peakRss / b.peakRss)})`,
    },
    {
      scenario: s,
      figure: 'requests in flight at the API, peak: worker / bare (CONCURRENCY)',
      value: `${w.peakInFlight} / ${b.peakInFlight} (${concurrency})`,
    },
    {
      scenario: s,
      figure: 'pictures relayed: worker / bare',
      value: `${w.delivered} / ${b.delivered} of ${jobs}`,
      goal: 'all',
      met: w.delivered >= jobs && b.delivered >= jobs,
    },
  ];
}
