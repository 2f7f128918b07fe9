import type Bull from 'bull';
import { PRODUCER_DEFAULTS } from '../src/producer';
import type { Child, ForwardedEvent } from './child';
import { fmt, Row } from './report';
import { Rig, sleep } from './rig';

/** What Redis and the CPU pay: an idle worker, waking it, and a job's commands and CPU. */

/** Redis commands per second over `seconds` (everything but the bench's own INFO). */
async function commandRate(rig: Rig, seconds: number): Promise<number> {
  const before = await rig.commands();
  const t0 = performance.now();
  await sleep(seconds * 1000);
  const after = await rig.commands();
  return (after - before) / ((performance.now() - t0) / 1000);
}

/** Ends of jobs a child reported (`job:end`), by Bull job id, when (the child's Date.now()). */
class Ends {
  readonly at = new Map<string, number>();
  private waiters: Array<() => void> = [];

  constructor(child: Child, name = 'job:end') {
    child.events.on(name, (e: ForwardedEvent) => {
      if (name === 'job:end' && e.data.outcome !== 'completed' && e.data.outcome !== 'failed') return;
      this.at.set(String(e.data.jobId), e.at);
      for (const wake of this.waiters) wake();
    });
  }

  until(done: () => boolean, timeoutMs = 60_000): Promise<void> {
    if (done()) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`timed out after ${timeoutMs} ms with ${this.at.size} jobs ended`)), timeoutMs);
      const check = (): void => {
        if (!done()) return;
        clearTimeout(timer);
        this.waiters = this.waiters.filter((w) => w !== check);
        resolve();
      };
      this.waiters.push(check);
    });
  }
}

const data = (rig: Rig, n: number): { Id: string; Prompt: string; Token: string; Number: number } => ({
  Id: `c${n % 10}`,
  Prompt: `A paper boat on a rainy street, study ${n}`,
  Token: rig.token(`c${n % 10}`),
  Number: n,
});

/**
 * Idle: Redis commands per second of one worker with no job (and of a plain Bull worker); then wake: with the fleet
 * idle, a job added every few seconds, `queue.add` resolving to the worker's `job:started`.
 */
export async function idle(rig: Rig): Promise<Row[]> {
  const seconds = rig.quick ? 20 : 60;
  const wakes = 20;
  rig.xai.configure({ imageBytes: 2000, delayMs: 0 });
  const name = rig.queueName('idle');
  const worker = await rig.worker(name, rig.contractEnv(name, { BENCH_EVENTS: 'worker:ready,job:started,job:end' }));
  let workerRate: number;
  const wakeMs: number[] = [];
  const queue = rig.producer(name);
  try {
    await sleep(rig.quick ? 2000 : 5000);
    workerRate = await commandRate(rig, seconds);
    const started = new Ends(worker.child, 'job:started');
    const ended = new Ends(worker.child);
    await queue.isReady();
    for (let n = 0; n < wakes; n++) {
      await sleep(rig.quick ? 1000 : 3000);
      const job = await queue.add(data(rig, n), PRODUCER_DEFAULTS);
      const addedAt = Date.now();
      const id = String(job.id);
      await started.until(() => started.at.has(id), 10_000);
      wakeMs.push(started.at.get(id)! - addedAt);
      await ended.until(() => ended.at.has(id), 10_000);
    }
  } finally {
    await rig.stop(worker.child);
    await queue.obliterate({ force: true }).catch(() => undefined);
    await queue.close();
  }
  const bullName = rig.queueName('idle_bull');
  const bull = await rig.bare(bullName, rig.contractEnv(bullName, { BARE_NOOP: '1' }));
  let bullRate: number;
  try {
    await sleep(rig.quick ? 2000 : 5000);
    bullRate = await commandRate(rig, seconds);
  } finally {
    await rig.stop(bull);
  }
  const sorted = [...wakeMs].sort((a, b) => a - b);
  const median = sorted[Math.floor(sorted.length / 2)];
  const max = sorted[sorted.length - 1];
  return [
    { scenario: 'idle', figure: `Redis commands/s, one idle worker, ${seconds} s`, value: workerRate.toFixed(2), goal: '<= 1', met: workerRate <= 1 },
    { scenario: 'idle', figure: 'Redis commands/s, one idle plain Bull worker (queue.process doing nothing)', value: bullRate.toFixed(2) },
    {
      scenario: 'idle',
      figure: `wake: queue.add resolved -> job:started, ${wakes} jobs into an idle fleet: median / max`,
      value: `${median} ms / ${max} ms`,
      goal: '<= 50 ms',
      met: max <= 50,
    },
  ];
}

interface CostFigures {
  commandsPerJob: number;
  cpuMsPerJob: number;
}

/** Redis commands (less the producer's) and consumer CPU per job, the jobs added in a burst, then one after another. */
async function costOf(
  rig: Rig,
  consumer: Child,
  queue: Bull.Queue,
  jobs: number,
  addCost: { burst: number; trickle: number },
): Promise<{ burst: CostFigures; trickle: CostFigures }> {
  const ends = new Ends(consumer);
  await queue.isReady();
  await sleep(2000);
  const measure = async (add: (from: number) => Promise<void>, from: number, perAdd: number): Promise<CostFigures> => {
    const c0 = await rig.commands();
    const cpu0 = consumer.cpuMs();
    await add(from);
    const commands = (await rig.commands()) - c0 - perAdd * jobs;
    return { commandsPerJob: commands / jobs, cpuMsPerJob: (consumer.cpuMs() - cpu0) / jobs };
  };
  const burst = await measure(
    async (from) => {
      const added = await Promise.all(Array.from({ length: jobs }, (_, k) => queue.add(data(rig, from + k), PRODUCER_DEFAULTS)));
      await ends.until(() => added.every((j) => ends.at.has(String(j.id))));
    },
    0,
    addCost.burst,
  );
  const trickle = await measure(
    async (from) => {
      for (let k = 0; k < jobs; k++) {
        const id = String((await queue.add(data(rig, from + k), PRODUCER_DEFAULTS)).id);
        await ends.until(() => ends.at.has(id));
      }
    },
    jobs,
    addCost.trickle,
  );
  return { burst, trickle };
}

/**
 * Cost: 300 jobs, the API answering at once, the pace off, for the worker and for the bare pipeline; Redis commands
 * per job less what the producer's `queue.add` costs alone (measured first, both ways), consumer CPU per job.
 */
export async function cost(rig: Rig): Promise<Row[]> {
  const jobs = 300;
  rig.xai.configure({ imageBytes: 2000, delayMs: 0 });
  // The producer alone, on a queue nobody consumes.
  const alone = rig.producer(rig.queueName('cost_producer'));
  await alone.isReady();
  let c0 = await rig.commands();
  await Promise.all(Array.from({ length: jobs }, (_, k) => alone.add(data(rig, k), PRODUCER_DEFAULTS)));
  const burst = ((await rig.commands()) - c0) / jobs;
  c0 = await rig.commands();
  for (let k = 0; k < jobs; k++) await alone.add(data(rig, k), PRODUCER_DEFAULTS);
  const trickle = ((await rig.commands()) - c0) / jobs;
  await alone.obliterate({ force: true });
  await alone.close();
  const addCost = { burst, trickle };

  const run = async (kind: 'worker' | 'bare'): Promise<{ burst: CostFigures; trickle: CostFigures }> => {
    const name = rig.queueName(`cost_${kind}`);
    const env = rig.contractEnv(name, kind === 'worker' ? { GROK_RATE_LIMIT: '0', BENCH_EVENTS: 'worker:ready,job:end' } : { CONCURRENCY: '100' });
    const child = kind === 'worker' ? (await rig.worker(name, env)).child : await rig.bare(name, env);
    const queue = rig.producer(name);
    try {
      return await costOf(rig, child, queue, jobs, addCost);
    } finally {
      await rig.stop(child);
      await queue.obliterate({ force: true }).catch(() => undefined);
      await queue.close();
    }
  };
  const w = await run('worker');
  const b = await run('bare');
  const rows: Row[] = [
    {
      scenario: 'cost',
      figure: "the producer's queue.add alone, commands per job: burst / one after another",
      value: `${burst.toFixed(1)} / ${trickle.toFixed(1)}`,
    },
  ];
  for (const mode of ['burst', 'trickle'] as const) {
    const label = mode === 'burst' ? `${jobs} jobs added at once` : `${jobs} jobs, each added once the previous ended`;
    const ratio = w[mode].commandsPerJob / b[mode].commandsPerJob;
    rows.push(
      {
        scenario: 'cost',
        figure: `${label}: Redis commands per job, worker / bare`,
        value: `${w[mode].commandsPerJob.toFixed(1)} / ${b[mode].commandsPerJob.toFixed(1)} (${fmt.ratio(ratio)} x)`,
        goal: '<= 1.4 x',
        met: ratio <= 1.4,
      },
      {
        scenario: 'cost',
        figure: `${label}: CPU ms per job, worker / bare`,
        value: `${w[mode].cpuMsPerJob.toFixed(2)} / ${b[mode].cpuMsPerJob.toFixed(2)} (${fmt.ratio(w[mode].cpuMsPerJob / b[mode].cpuMsPerJob)} x)`,
      },
    );
  }
  return rows;
}
