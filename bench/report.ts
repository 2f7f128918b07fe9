import fs from 'node:fs';
import path from 'node:path';
import type { CheckpointWriteCost } from './checkpointMicro';
import { cpuPerJob, RunResult, TMP_DIR } from './measureRun';
import type { Plan, WhatIf } from './plan';
import type { MachineInfo } from './procStats';
import { formatSummary, ProfileSummary, SelfTime } from './profileSummary';
import { WAITED_MS } from './workerLog';

export interface BenchResults {
  plan: Plan;
  machine: MachineInfo;
  /** bufferutil's version as the consumers resolve it (ws masks natively with it), or null when absent. */
  bufferutil: string | null;
  date: string;
  durationS: number;
  overhead: {
    rounds: Array<{ bare: RunResult; worker: RunResult; whatIf: Record<WhatIf, RunResult> }>;
    /** src's checkpoint `save` (and the `forget` after it), measured alone. */
    checkpointWrite: CheckpointWriteCost[];
  };
  latency: { worker: RunResult; bare: RunResult };
  memory: {
    bare: RunResult;
    worker: RunResult;
    saturated: { bare: RunResult; worker: RunResult };
    /** The saturated runs again, with the relay frozen for a few seconds. */
    stalledRelay: { worker: RunResult; bare: RunResult };
  };
  leak: { worker: RunResult; bare: RunResult };
  scaleOut: RunResult[];
  profile: Record<'worker' | 'bare', { run: RunResult; summary?: ProfileSummary }>;
}

const GOALS = { overhead: 0.9, latency: 0.95, peakRss: 1.2, growthBytesPerJob: 1024, scaleOut: 0.9 };
const REPO = path.resolve(TMP_DIR, '..', '..');
/** Rows of each profile table in the report (the summaries keep more, for the worker-minus-bare comparison). */
const PROFILE_ROWS = 15;

/**
 * Figures of earlier runs of this benchmark, before the changes that have since landed in src/ and
 * package.json; the "what landed" section sets them against this run's.
 */
const EARLIER = {
  /** Worker CPU per 200 KB job with every image checkpointed as a string before delivery (before 45c70d6). */
  stringCheckpointCpuMs: 4.36,
  /** The full run at 45c70d6 (checkpoint as one Buffer, only when delivery waits; no bufferutil, no backpressure). */
  commit: '45c70d6',
  cpuMs: { worker: 3.99, bare: 3.54 },
  /** The same code with bufferutil on NODE_PATH. */
  bufferutilCpuMs: { worker: 3.17, bare: 2.72 },
  maskShare: 0.21,
  latencyRatio: 0.93,
  latencyCycleMs: 321.3,
  /** Peak RSS in the memory goal's run (1 MB images, 500 ms API). */
  memory: { worker: 250, bare: 255 },
  frozen: { forS: 3, peakRssMb: 595, peakExternalMb: 438, saturatedPeakRssMb: 246, meanNotifyMs: 7.5 },
};

const MB = (bytes: number): string => (bytes / 1e6).toFixed(0);
const n1 = (x: number): string => x.toFixed(1);
const n2 = (x: number): string => x.toFixed(2);
const pct = (x: number): string => `${(x * 100).toFixed(0)}%`;
const verdict = (ok: boolean): string => (ok ? 'pass' : '**miss**');
/** A ratio for the goals table: a third decimal when two would look equal to the target. */
const ratio = (x: number, target: number): string => (Math.abs(x - target) < 0.005 ? x.toFixed(3) : n2(x));
const median = (xs: number[]): number => {
  const sorted = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
};
const mean = (xs: number[]): number => xs.reduce((a, b) => a + b, 0) / Math.max(xs.length, 1);
/** Cores' worth of CPU the rest of the machine used while the run's jobs ran. */
const otherCores = (r: RunResult): number => (r.usage.wallMs > 0 ? r.usage.cpuMs.otherOnMachine / r.usage.wallMs : 0);
const ourCores = (r: RunResult): number => {
  const { consumers, relay, harness, redis } = r.usage.cpuMs;
  return r.usage.wallMs > 0 ? (consumers + relay + harness + redis) / r.usage.wallMs : 0;
};
/** Consumer CPU ms per job over several runs, weighted by jobs. */
const consumerCpu = (runs: RunResult[]): number =>
  runs.reduce((sum, r) => sum + r.usage.cpuMs.consumers, 0) / Math.max(1, runs.reduce((sum, r) => sum + r.jobs, 0));
const spread = (xs: number[]): number => Math.max(...xs) - Math.min(...xs);
const sentKb = (runs: RunResult[]): number => mean(runs.map((r) => r.redis.inputBytesPerJob)) / 1000;

/** The overhead runs: the two consumers and the worker's what-if variants. */
type Consumer = 'bare' | 'worker' | WhatIf;
const WHAT_IF_LABELS: Record<WhatIf, string> = {
  noCheckpoint: 'worker without checkpoints (what-if)',
  noProgress: 'worker, NOTIFY_PROGRESS=false (what-if)',
  quietLog: 'worker, LOG_LEVEL=warn (what-if)',
};
const WHAT_IFS = Object.keys(WHAT_IF_LABELS) as WhatIf[];

interface Figures {
  overhead: {
    ratio: number;
    cpuRatio: number;
    throughput: Record<Consumer, number>;
    cpu: Record<Consumer, number>;
    busy: Record<Consumer, number>;
    sentKb: Record<Consumer, number>;
    /** What each what-if saves against the worker of the same round, ms of CPU per job: lowest and highest round. */
    savedRange: Record<WhatIf, { min: number; max: number }>;
    relayCpu: number;
    otherCores: number;
  };
  latency: { ceiling: number; ratio: number; bareRatio: number; cycleMs: number; bareCycleMs: number; allowedMs: number };
  memory: { peakRatio: number; growthPerJob: number; bareGrowthPerJob: number };
  /** Least-squares slope of heap used after GC against jobs done, from the end of the first batch on. */
  leak: { worker: number; bare: number };
  scaleOut: Array<{ processes: number; throughput: number; efficiency: number; ofCeiling: number }>;
  redis: { perJobBytes: number; perJobKeys: number };
  /** The frozen-relay runs: images checkpointed (from the bytes sent to Redis) and the notify step. */
  stall: { checkpointedShare: number; bareCheckpointedShare: number };
}

function figures(res: BenchResults): Figures {
  const { rounds } = res.overhead;
  const bares = rounds.map((r) => r.bare);
  const workers = rounds.map((r) => r.worker);
  const runsOf = (c: Consumer): RunResult[] => rounds.map((r) => (c === 'bare' ? r.bare : c === 'worker' ? r.worker : r.whatIf[c]));
  const byConsumer = (fn: (runs: RunResult[]) => number): Record<Consumer, number> =>
    Object.fromEntries((['bare', 'worker', ...WHAT_IFS] as Consumer[]).map((c) => [c, fn(runsOf(c))])) as Record<Consumer, number>;
  const ceiling = (res.plan.concurrency * 1000) / res.plan.latency.delayMs;
  const cycle = (r: RunResult): number => (res.plan.concurrency * r.activeMs) / Math.max(r.jobs, 1);
  const growth = (r: RunResult): number => {
    const snaps = r.memory.snapshots;
    const last = res.plan.memory.batches.at(-1) ?? 1;
    return snaps.length >= 3 ? (snaps[snaps.length - 1].heapUsed - snaps[snaps.length - 2].heapUsed) / last : NaN;
  };
  const single = res.scaleOut[0]?.throughput ?? 0;
  const workerRuns = [...workers, res.latency.worker, res.memory.worker, res.memory.saturated.worker, res.memory.stalledRelay.worker, ...res.scaleOut];
  const base64Kb = (res.plan.memory.imageBytes * 4) / 3 / 1000;
  const checkpointed = (r: RunResult, saturated: RunResult): number => Math.max(0, (r.redis.inputBytesPerJob - saturated.redis.inputBytesPerJob) / 1000 / base64Kb);
  return {
    overhead: {
      ratio: median(rounds.map((r) => r.worker.throughput / r.bare.throughput)),
      cpuRatio: consumerCpu(bares) / consumerCpu(workers),
      throughput: byConsumer((runs) => median(runs.map((r) => r.throughput))),
      cpu: byConsumer(consumerCpu),
      busy: byConsumer((runs) => mean(runs.map((r) => r.usage.loopBusy.consumers))),
      sentKb: byConsumer(sentKb),
      savedRange: Object.fromEntries(
        WHAT_IFS.map((w) => {
          const perRound = rounds.map((r) => cpuPerJob(r.worker).consumers - cpuPerJob(r.whatIf[w]).consumers);
          return [w, { min: Math.min(...perRound), max: Math.max(...perRound) }];
        }),
      ) as Record<WhatIf, { min: number; max: number }>,
      relayCpu: mean([...bares, ...workers].map((r) => cpuPerJob(r).relay)),
      otherCores: mean(rounds.flatMap((r) => [r.bare, r.worker, ...Object.values(r.whatIf)]).map(otherCores)),
    },
    latency: {
      ceiling,
      ratio: res.latency.worker.throughput / ceiling,
      bareRatio: res.latency.bare.throughput / ceiling,
      cycleMs: cycle(res.latency.worker),
      bareCycleMs: cycle(res.latency.bare),
      allowedMs: res.plan.latency.delayMs / GOALS.latency,
    },
    memory: {
      peakRatio: res.memory.worker.memory.peakRss / res.memory.bare.memory.peakRss,
      growthPerJob: growth(res.memory.worker),
      bareGrowthPerJob: growth(res.memory.bare),
    },
    leak: { worker: heapSlope(res.leak.worker), bare: heapSlope(res.leak.bare) },
    scaleOut: res.scaleOut.map((r) => ({
      processes: r.spec.processes,
      throughput: r.throughput,
      efficiency: single > 0 ? r.throughput / (r.spec.processes * single) : 0,
      ofCeiling: r.throughput / (r.spec.processes * ceiling),
    })),
    redis: {
      perJobBytes: Math.max(...workerRuns.map((r) => r.redis.perJobBytes)),
      perJobKeys: Math.max(...workerRuns.map((r) => r.redis.perJobKeys)),
    },
    stall: {
      checkpointedShare: checkpointed(res.memory.stalledRelay.worker, res.memory.saturated.worker),
      bareCheckpointedShare: checkpointed(res.memory.stalledRelay.bare, res.memory.saturated.bare),
    },
  };
}

/** The goals table, as printed at the end of a run and at the top of results.md. */
export function renderSummaryTable(res: BenchResults): string {
  const f = figures(res);
  const o = f.overhead;
  const rows = [
    ['Overhead: worker jobs/s / bare jobs/s (200 KB, API at once, C=20)', `${ratio(o.ratio, GOALS.overhead)} (${n1(o.throughput.worker)} vs ${n1(o.throughput.bare)} jobs/s, median of ${res.overhead.rounds.length})`, `>= ${GOALS.overhead}`, verdict(o.ratio >= GOALS.overhead)],
    ['Overhead, CPU: bare CPU per job / worker CPU per job', `${ratio(o.cpuRatio, GOALS.overhead)} (${n2(o.cpu.bare)} vs ${n2(o.cpu.worker)} ms/job)`, `>= ${GOALS.overhead}`, verdict(o.cpuRatio >= GOALS.overhead)],
    ['Latency-bound: jobs/s / C/L ceiling (300 ms API, C=20)', `${ratio(f.latency.ratio, GOALS.latency)} (${n1(res.latency.worker.throughput)} of ${n1(f.latency.ceiling)} jobs/s)`, `>= ${GOALS.latency}`, verdict(f.latency.ratio >= GOALS.latency)],
    ['Memory: peak RSS worker / bare (1 MB images, C=20)', `${ratio(f.memory.peakRatio, GOALS.peakRss)} (${MB(res.memory.worker.memory.peakRss)} vs ${MB(res.memory.bare.memory.peakRss)} MB)`, `<= ${GOALS.peakRss}`, verdict(f.memory.peakRatio <= GOALS.peakRss)],
    [`Memory: heap kept after a full GC, growth per job (${res.leak.worker.jobs} small jobs in ${res.leak.worker.spec.batches.length} batches)`, fmtGrowth(f.leak.worker), `<= ${GOALS.growthBytesPerJob} B/job`, verdict(!(f.leak.worker > GOALS.growthBytesPerJob))],
    ...f.scaleOut
      .filter((s) => s.processes > 1)
      .map((s) => [`Scale-out: ${s.processes} processes, jobs/s / (${s.processes} x 1 process)`, `${ratio(s.efficiency, GOALS.scaleOut)} (${n1(s.throughput)} jobs/s)`, `>= ${GOALS.scaleOut}`, verdict(s.efficiency >= GOALS.scaleOut)]),
    ['Redis: bytes left per completed job', `${n1(f.redis.perJobBytes)} B, ${n2(f.redis.perJobKeys)} keys`, '0', verdict(f.redis.perJobBytes === 0 && f.redis.perJobKeys === 0)],
  ];
  return table(['goal', 'measured', 'target', 'result'], rows);
}

function heapSlope(r: RunResult): number {
  const points: Array<[number, number]> = [];
  let jobs = 0;
  r.spec.batches.forEach((size, i) => {
    jobs += size;
    const snap = r.memory.snapshots[i + 1];
    if (snap) points.push([jobs, snap.heapUsed]);
  });
  if (points.length < 2) return NaN;
  const mx = mean(points.map((p) => p[0]));
  const my = mean(points.map((p) => p[1]));
  const num = points.reduce((sum, [x, y]) => sum + (x - mx) * (y - my), 0);
  const den = points.reduce((sum, [x]) => sum + (x - mx) ** 2, 0);
  return num / den;
}

function table(header: string[], rows: string[][]): string {
  return [`| ${header.join(' | ')} |`, `| ${header.map(() => '---').join(' | ')} |`, ...rows.map((r) => `| ${r.join(' | ')} |`)].join('\n');
}

function runRow(label: string, r: RunResult): string[] {
  const c = cpuPerJob(r);
  return [
    label,
    String(r.jobs),
    r.error ? `${n1(r.throughput)} (${r.error})` : n1(r.throughput),
    n2(c.consumers),
    pct(r.usage.loopBusy.consumers),
    n2(c.relay),
    n1(r.redis.inputBytesPerJob / 1000),
    MB(r.memory.peakRss),
    n2(otherCores(r)),
  ];
}

const RUN_HEADER = ['run', 'jobs', 'jobs/s', 'consumer CPU ms/job', 'consumer loop busy', 'relay CPU ms/job', 'sent to Redis KB/job', 'peak RSS MB', 'other load (cores)'];

/** `file:line` of the first of `needles` found in the file as it is now: src/ changes under the benchmark. */
function lineOf(relative: string, ...needles: string[]): string {
  try {
    const lines = fs.readFileSync(path.join(REPO, relative), 'utf8').split('\n');
    for (const needle of needles) {
      const index = lines.findIndex((l) => l.includes(needle));
      if (index >= 0) return `${relative}:${index + 1}`;
    }
  } catch {
    // Reported without a line.
  }
  return relative;
}

export function renderReport(res: BenchResults): string {
  const f = figures(res);
  const m = res.machine;
  const o = f.overhead;
  const failures = collectRuns(res).filter((r) => r.error || r.failed > 0 || r.duplicates > 0);
  const out: string[] = [];
  const push = (...lines: string[]): void => void out.push(...lines);

  push(
    '# Benchmarks',
    '',
    `Written by \`npm run bench\`${res.plan.quick ? ' with BENCH_QUICK=1' : ''} on ${res.date.slice(0, 10)} (${res.date.slice(11, 16)} UTC); the run took ${(res.durationS / 60).toFixed(1)} min.`,
    '',
    table(['machine', ''], [
      ['CPUs (nproc)', String(m.cpus)],
      ['model', m.model],
      ['RAM', `${m.memoryGb} GB`],
      ['OS', m.os],
      ['node', m.node],
      ['redis-server', m.redis],
      ['bufferutil', res.bufferutil ? `${res.bufferutil} (ws masks frames natively, in the worker and in bare)` : 'not installed (ws masks frames in JavaScript)'],
      ['code measured', m.source],
    ]),
    '',
    'Everything runs on this one machine: a private redis-server on a free port, a local server speaking xAI\'s images',
    'contract (its answers encoded once, sent as one buffer), the socket.io relay of `src/demo` in its own process, and',
    'each consumer in its own process. Jobs are queued exactly as the front end queues them (`attempts: 1,',
    'removeOnComplete, removeOnFail`, a real HS256 token) while the queue is paused; the clock starts when it is',
    'resumed and stops at the last final notification the relay receives. "bare" is the same three steps (jsonwebtoken,',
    'node-fetch, socket.io-client emit, on a Bull consumer) and nothing else. The "what-if" rows are the worker with one',
    'thing taken away, to show what it costs a job: its checkpoint store, turned into no-ops by the benchmark',
    '(`bench/checkpointVariants.ts`), or, through its own settings, the progress event or the info-level log lines. The',
    'benchmark never edits src/.',
    '',
    `"other load" is CPU used by processes outside the benchmark while jobs ran, in cores: this machine is shared, and on 2`,
    `cores any of it slows whichever part is waiting for a core. During the overhead runs it averaged ${n2(o.otherCores)} cores.`,
    '',
    '## Goals',
    '',
    renderSummaryTable(res),
    '',
  );
  if (failures.length > 0) {
    push(
      `Runs with errors, failed or repeated notifications: ${failures.map((r) => `${r.spec.name} (${r.error ?? `${r.failed} failed, ${r.duplicates} repeated`})`).join('; ')}.`,
      '',
    );
  }

  push(...overheadSection(res, f));
  push(...latencySection(res, f));
  push(...memorySection(res, f));
  push(...scaleOutSection(res, f));
  push(...redisSection(res, f));
  push(...profileSection(res));
  push(...landedSection(res, f));
  push(...findings(res, f));
  push(
    '## How to run',
    '',
    '```',
    'npm ci',
    'npm run bench                 # full run, a few minutes on 2 cores; writes bench/results.md',
    'BENCH_QUICK=1 npm run bench   # smoke run, about a minute; writes bench/.tmp/results-quick.md',
    '```',
    '',
    'Needs `redis-server` on PATH (a private one is started on a free port; the machine\'s Redis is never touched).',
    'Logs of every consumer, the raw figures (`results.json`) and the CPU profiles are kept in `bench/.tmp/`;',
    '`node bench/.tmp/build/bench/report.js bench/.tmp/results.json bench/results.md` writes the report again from them.',
    '',
  );
  return out.join('\n');
}

function overheadSection(res: BenchResults, f: Figures): string[] {
  const o = f.overhead;
  const extraMs = o.cpu.worker - o.cpu.bare;
  const saved = (w: WhatIf): number => o.cpu.worker - o.cpu[w];
  const rest = extraMs - WHAT_IFS.reduce((sum, w) => sum + saved(w), 0);
  const signed = (x: number): string => `${x >= 0 ? '+' : ''}${n2(x)}`;
  // Both loops saturated: jobs/s follows CPU per job, so the goal bounds the worker's extra CPU per job.
  const cpuBound = o.busy.worker > 0.9 && o.busy.bare > 0.9;
  const allowedMs = o.cpu.bare / GOALS.overhead - o.cpu.bare;
  const WHAT_IF_PARTS: Record<WhatIf, string> = {
    noCheckpoint: 'the checkpoint store: one pipelined round trip to open a job (owner SET, checkpoint GET), one DEL at its end',
    noProgress: 'the progress event: a second emit per job, and a second message for the relay',
    quietLog: 'the info-level log lines: the job-end line, serialised, redacted and written synchronously',
  };
  const lines = [
    '## Overhead',
    '',
    table(RUN_HEADER, res.overhead.rounds.flatMap((r, i) => [
      runRow(`bare, round ${i + 1}`, r.bare),
      runRow(`worker, round ${i + 1}`, r.worker),
      ...WHAT_IFS.map((w) => runRow(`${WHAT_IF_LABELS[w]}, round ${i + 1}`, r.whatIf[w])),
    ])),
    '',
    `**What limits it.** Each consumer is a single event loop, and with the API answering at once it has all the work`,
    `it can take: loops were busy ${pct(o.busy.bare)} (bare) and ${pct(o.busy.worker)} (worker) of the time. So jobs/s is about 1000 / (CPU ms per job),`,
    `times the share of a core the process got while sharing 2 cores with the relay (${n2(o.relayCpu)} ms of CPU per job to parse and`,
    `re-broadcast each 270 KB message), the API server, redis-server and whatever else ran. The worker spends ${n2(o.cpu.worker)} ms`,
    `of CPU per job against ${n2(o.cpu.bare)} ms for bare (${signed(extraMs)} ms). It sends ${n1(o.sentKb.worker)} KB to Redis per job (bare: ${n1(o.sentKb.bare)} KB): no image`,
    `is written when delivery succeeds at once.`,
    '',
    `Where the ${n2(extraMs)} ms go, from the what-if runs, each of which takes one thing away (CPU per job over all rounds):`,
    '',
    table(
      ['taken away', 'worker CPU ms/job without it', 'saves, ms/job', 'saves, per round (lowest to highest)', 'jobs/s (median)'],
      [
        ...WHAT_IFS.map((w) => [WHAT_IF_PARTS[w], n2(o.cpu[w]), signed(saved(w)), `${signed(o.savedRange[w].min)} to ${signed(o.savedRange[w].max)}`, n1(o.throughput[w])]),
        ['everything else: job validation, a timer and an AbortController per request, the pipeline\'s promises and timings, the garbage all of it leaves; and noise', '', signed(rest), '', ''],
      ],
    ),
    '',
    ...(res.overhead.rounds.length > 1
      ? [
          `Each saving is measured against the worker run of the same round. The worker's own CPU per job moved by ${n2(spread(res.overhead.rounds.map((r) => cpuPerJob(r.worker).consumers)))} ms`,
          `between rounds, so a saving whose rounds straddle zero is below what this run can resolve. ${resolvedText(o, res.overhead.rounds.length)}`,
        ]
      : ['With one round the run-to-run noise cannot be told apart from the savings: take them as indicative only.']),
  ];
  if (o.ratio < GOALS.overhead || o.cpuRatio < GOALS.overhead) {
    const e = EARLIER.cpuMs;
    const best = WHAT_IFS.reduce((a, b) => (o.cpu[b] < o.cpu[a] ? b : a));
    const bestWhatIf = o.cpu.bare / o.cpu[best];
    lines.push(
      '',
      `**The miss.** The extra is a fixed cost per job, not a share of it, and bufferutil made bare's own work cheaper: at`,
      `${EARLIER.commit}, with ws masking in JavaScript, the worker spent +${n2(e.worker - e.bare)} ms on bare's ${n2(e.bare)} ms (CPU ratio ${n2(e.bare / e.worker)}); here +${n2(extraMs)} ms on`,
      `${n2(o.cpu.bare)} ms (CPU ratio ${n2(o.cpuRatio)}, jobs/s ratio ${n2(o.ratio)}). For the worker to stay within ${GOALS.overhead} of bare${cpuBound ? ' on a CPU-bound consumer' : ''} its`,
      `extra may be at most ${n2(allowedMs)} ms per job (bare's ${n2(o.cpu.bare)} ms / ${GOALS.overhead} - ${n2(o.cpu.bare)} ms). The earlier single run with bufferutil on`,
      `NODE_PATH measured +${n2(EARLIER.bufferutilCpuMs.worker - EARLIER.bufferutilCpuMs.bare)} ms on ${n2(EARLIER.bufferutilCpuMs.bare)} ms; on this path src/ has since gained only the backpressure check (a few property`,
      `reads per delivery), so the difference between the two extras is run-to-run variation, not a regression.`,
      bestWhatIf >= GOALS.overhead
        ? `Without ${WHAT_IF_LABELS[best].replace(/^worker,? /, '').replace(' (what-if)', '')} the worker would reach a CPU ratio of ${n2(bestWhatIf)}.`
        : `Taking away any one of the three would not be enough: the best what-if reaches a CPU ratio of ${n2(bestWhatIf)}.`,
    );
  }
  lines.push(
    `The CPU ratio is the steadier figure: jobs/s moves with the other load on the machine from run to run.`,
    '',
    `The checkpoint write alone, as a job whose delivery has to wait pays it (src's \`save\`, one Buffer, and the \`forget\`),`,
    `20 in flight, CPU of the writing process per job:`,
    '',
    table(['image', 'CPU per save and forget, µs'], res.overhead.checkpointWrite.map((c) => [`${c.imageBytes / 1000} KB`, c.saveUs.toFixed(0)])),
    '',
  );
  return lines;
}

/** Which what-if savings every round agrees on (all rounds save something), in words. */
function resolvedText(o: Figures['overhead'], rounds: number): string {
  if (rounds < 2) return 'One round only: none of the savings can be told apart from noise.';
  const resolved = WHAT_IFS.filter((w) => o.savedRange[w].min > 0);
  const unresolved = WHAT_IFS.filter((w) => o.savedRange[w].min <= 0);
  const name: Record<WhatIf, string> = { noCheckpoint: 'the checkpoint store', noProgress: 'the progress event', quietLog: 'the log lines' };
  const list = (ws: WhatIf[]): string => ws.map((w) => `${name[w]} (${n2(o.cpu.worker - o.cpu[w])} ms)`).join(', ');
  if (resolved.length === 0) return 'None of the three is: each costs less than the noise.';
  return `Resolved: ${list(resolved)}${unresolved.length ? `; below the noise: ${list(unresolved)}` : ''}.`;
}

function latencySection(res: BenchResults, f: Figures): string[] {
  const lw = res.latency.worker;
  const lb = res.latency.bare;
  const log = lw.workerLog;
  const missed = f.latency.ratio < GOALS.latency;
  return [
    '## Latency-bound',
    '',
    table([...RUN_HEADER, 'of C/L ceiling'], [
      [...runRow('worker', lw), n2(f.latency.ratio)],
      [...runRow('bare', lb), n2(f.latency.bareRatio)],
    ]),
    '',
    `**What limits it.** Each of the 20 slots turns over one job per API answer plus the job's own work plus Bull's`,
    `move-to-completed and fetch of the next job. Measured per slot: ${n1(f.latency.cycleMs)} ms per job (worker) and ${n1(f.latency.bareCycleMs)} ms`,
    `(bare), against the API's ${res.plan.latency.delayMs} ms; the goal allows ${n1(f.latency.allowedMs)} ms.${log ? ` The worker's job-end lines put a job at ${n1(log.meanDurationMs)} ms (token ${n1(log.meanStepsMs.token)}, generate ${n1(log.meanStepsMs.generate)}, notify ${n1(log.meanStepsMs.notify)} ms); the other ${n1(f.latency.cycleMs - log.meanDurationMs)} ms is between jobs.` : ''}`,
    `The stand-in answers every request after exactly ${res.plan.latency.delayMs} ms, so the 20 slots stay in step: their answers come`,
    `together and are handled one after another (by the API server, then on the consumer's one event loop and Redis connection); a slot`,
    `waits for its place in a burst of 20 jobs' work (${n2(cpuPerJob(lw).consumers)} ms of CPU per job for the worker, ${n2(cpuPerJob(lb).consumers)} ms for bare, spent as`,
    `wakeups, Redis round trips and emits rather than as throughput). So the figure moves with the consumer's CPU per job and`,
    `by a few ms from run to run; a real API's varying latency spreads the bursts out. The CPU (${n2(ourCores(lw))} cores used) and Redis`,
    `are far from their limits; HTTP keep-alive serves ${lw.api.requests} requests on ${lw.api.connections} connections.`,
    ...(missed
      ? [
          `The miss is ${n1(f.latency.cycleMs - f.latency.allowedMs)} ms per slot and job over what the goal allows; bare, with none of the worker's steps, reaches`,
          `${n2(f.latency.bareRatio)} of the ceiling in the same setting${f.latency.bareRatio < GOALS.latency ? ' and misses it too' : ''}: ${n1(f.latency.bareCycleMs - res.plan.latency.delayMs)} of the ${n1(f.latency.cycleMs - res.plan.latency.delayMs)} ms above the API's ${res.plan.latency.delayMs} ms are Bull's turnaround`,
          `and the burst, which any consumer on this queue pays; the worker's own share is the other ${n1(f.latency.cycleMs - f.latency.bareCycleMs)} ms.`,
        ]
      : [
          `The goal is met with ${n1(f.latency.allowedMs - f.latency.cycleMs)} ms per slot to spare${f.latency.ratio - GOALS.latency < 0.01 ? `, which is within run-to-run variation: the full run at ${EARLIER.commit} measured ${n2(EARLIER.latencyRatio)} (${n1(EARLIER.latencyCycleMs)} ms per slot), a miss` : ''}.`,
          `Bare reaches ${n2(f.latency.bareRatio)}: ${n1(f.latency.bareCycleMs - res.plan.latency.delayMs)} of the worker's ${n1(f.latency.cycleMs - res.plan.latency.delayMs)} ms above the API's ${res.plan.latency.delayMs} ms are Bull's turnaround and the burst, which any consumer`,
          `on this queue pays; the worker's own share is the other ${n1(f.latency.cycleMs - f.latency.bareCycleMs)} ms.`,
        ]),
    '',
  ];
}

function memorySection(res: BenchResults, f: Figures): string[] {
  const mem = res.memory;
  const stalled = mem.stalledRelay;
  const snapshotRow = (label: string, r: RunResult): string[] => {
    const s = r.memory.snapshots;
    const peak = s.at(-1)?.peak;
    return [
      label,
      String(r.jobs),
      MB(r.memory.peakRss),
      peak ? `${MB(peak.heapUsed)} / ${MB(peak.heapTotal)}` : '',
      peak ? MB(peak.external) : '',
      s.map((x) => MB(x.rss)).join(' / '),
      s.map((x) => n1(x.heapUsed / 1e6)).join(' / '),
      n2(cpuPerJob(r).consumers),
      n2(otherCores(r)),
    ];
  };
  const stallRow = (label: string, r: RunResult): string[] => [
    label,
    String(r.jobs),
    r.error ? `${n1(r.throughput)} (${r.error})` : n1(r.throughput),
    MB(r.memory.peakRss),
    `${MB(peakOf(r).heapUsed)} / ${MB(peakOf(r).heapTotal)}`,
    MB(peakOf(r).external),
    r.memory.snapshots.map((x) => MB(x.rss)).join(' / '),
    n1(r.redis.inputBytesPerJob / 1000),
    r.workerLog ? `${n1(r.workerLog.meanStepsMs.notify)} ms / ${fmtMs(r.workerLog.maxNotifyMs)}` : '',
    n2(cpuPerJob(r).consumers),
    n2(otherCores(r)),
  ];
  const batches = res.plan.memory.batches;
  const stallS = res.plan.memory.stall.forMs / 1000;
  const w = stalled.worker;
  const log = w.workerLog;
  const budgetMb = 8;
  const stallAdded = w.memory.peakRss > mem.saturated.worker.memory.peakRss * 1.05;
  const base64Mb = (res.plan.memory.imageBytes * 4) / 3 / 1e6;
  return [
    '## Memory',
    '',
    `1 MB images (1.33 MB of base64), C=20, an API taking ${res.plan.memory.delayMs} ms so that neither the consumer nor the relay is saturated. Memory after`,
    `a full GC is read before the first batch and after each batch of ${batches.join(' + ')} jobs.`,
    '',
    table(
      ['run', 'jobs', 'peak RSS MB (VmHWM)', 'peak V8 heap MB: in use / reserved', 'peak external MB', 'RSS after GC MB: before / after each batch', 'heap used after GC MB', 'consumer CPU ms/job', 'other load (cores)'],
      [snapshotRow('bare', mem.bare), snapshotRow('worker', mem.worker)],
    ),
    '',
    `Growth with the number of jobs: ${res.plan.leak.batches.join(' + ')} small jobs as fast as they go, heap used after a full GC`,
    `read before and after each batch (MB):`,
    '',
    table(
      ['run', 'heap used after GC, MB', 'slope from the first batch on', 'RSS after GC, MB'],
      (['worker', 'bare'] as const).map((kind) => [
        kind,
        res.leak[kind].memory.snapshots.map((s) => n2(s.heapUsed / 1e6)).join(' / '),
        fmtGrowth(f.leak[kind]),
        res.leak[kind].memory.snapshots.map((s) => MB(s.rss)).join(' / '),
      ]),
    ),
    '',
    `**What limits it.** The peak is how many copies of an image are alive at once, times 20 jobs, plus garbage not yet`,
    `collected. Per job both consumers allocate the same image-sized buffers and strings (the HTTP body, its text, the parsed`,
    `base64, the encoded packet, the frame), and the worker writes none of them to Redis when delivery succeeds at once.`,
    `Peak V8 heap in use (sampled every 50 ms, garbage included): ${MB(peakOf(mem.worker).heapUsed)} MB (worker) against ${MB(peakOf(mem.bare).heapUsed)} MB (bare); peak heap`,
    `reserved ${MB(peakOf(mem.worker).heapTotal)} against ${MB(peakOf(mem.bare).heapTotal)} MB; peak external ${MB(peakOf(mem.worker).external)} against ${MB(peakOf(mem.bare).external)} MB. After a full GC the two heaps are within`,
    `${n1(Math.abs((mem.worker.memory.snapshots.at(-1)?.heapUsed ?? 0) - (mem.bare.memory.snapshots.at(-1)?.heapUsed ?? 0)) / 1e6)} MB of each other, which points to image-sized garbage waiting longer for a major collection in the worker (strings`,
    `of a megabyte live in V8's large-object space, which only a major GC frees) rather than to memory it keeps. Which`,
    `consumer peaks higher moves from run to run: the full run at ${EARLIER.commit} measured ${EARLIER.memory.worker} MB (worker) against ${EARLIER.memory.bare} MB (bare),`,
    `here ${n2(f.memory.peakRatio)} against a limit of ${GOALS.peakRss}.`,
    `RSS after the run stays above RSS before because the allocator keeps freed pages and the first jobs warm up code and`,
    `connection buffers; what would show a leak is heap used after a full GC climbing from batch to batch. Over the 1 MB`,
    `batches it moved ${fmtGrowth(f.memory.growthPerJob)} (worker) and ${fmtGrowth(f.memory.bareGrowthPerJob)} (bare), warm-up included; over the small-job batches the slope is`,
    `${fmtGrowth(f.leak.worker)} for the worker and ${fmtGrowth(f.leak.bare)} for bare.`,
    '',
    '### Saturated, and a frozen notification service',
    '',
    `The API answers at once (not the goal's setting). In the "relay frozen" runs the relay process is stopped (SIGSTOP)`,
    `${res.plan.memory.stall.afterMs / 1000} s into the run for ${stallS} s: a notification service that stops reading.`,
    '',
    table(
      ['run', 'jobs', 'jobs/s', 'peak RSS MB (VmHWM)', 'peak V8 heap MB: in use / reserved', 'peak external MB', 'RSS after GC MB: before / after', 'sent to Redis KB/job', 'notify step: mean ms / longest', 'consumer CPU ms/job', 'other load (cores)'],
      [
        stallRow('bare, saturated', mem.saturated.bare),
        stallRow('worker, saturated', mem.saturated.worker),
        stallRow(`bare, relay frozen ${stallS} s`, stalled.bare),
        stallRow(`worker, relay frozen ${stallS} s`, w),
      ],
    ),
    '',
    `**The frozen relay.** socket.io emits without backpressure: what the relay does not read waits in the sender's`,
    `memory, in ws's send buffer ("peak external"). Bare shows what that does: it kept taking jobs and emitting, and its peak`,
    `went to ${MB(stalled.bare.memory.peakRss)} MB (peak external ${MB(peakOf(stalled.bare).external)} MB) against ${MB(mem.saturated.bare.memory.peakRss)} MB without the stall. The worker now waits instead:`,
    `a delivery goes out at once only while the websocket holds at most ${budgetMb} MB unsent (\`maxUnsentBytes\` in`,
    `\`${lineOf('src/socketNotifier.ts', 'private ready()')}\`); above that its job checkpoints the image in Redis and retries on the notifier's`,
    `backoff until there is room. So at most about ${budgetMb} MB of frames plus the images of the ${res.plan.concurrency} jobs in flight are held, and`,
    `the worker stops taking jobs while its slots wait. Its peak RSS was ${MB(w.memory.peakRss)} MB (peak external ${MB(peakOf(w).external)} MB) against ${MB(mem.saturated.worker.memory.peakRss)} MB in`,
    `the saturated run without the stall${stallAdded ? '' : ': the stall added nothing to it'}; before backpressure landed the same scenario reached ${EARLIER.frozen.peakRssMb} MB (peak`,
    `external ${EARLIER.frozen.peakExternalMb} MB; the full run at ${EARLIER.commit}, relay frozen ${EARLIER.frozen.forS} s), which is what bare shows here.`,
    `${stallAdded ? 'What the stall added is in the V8 heap' : 'Inside that peak, the V8 heap'} (in use at most ${MB(peakOf(w).heapUsed)} against ${MB(peakOf(mem.saturated.worker).heapUsed)} MB saturated) holds the waiting`,
    `jobs' images (${res.plan.concurrency} x ${n1(base64Mb)} MB of base64) until they are delivered, and the deliveries of all ${res.plan.concurrency} slots are encoded close together`,
    `once there is room again; peak external, where unsent frames wait, was ${MB(peakOf(w).external)} MB against ${MB(peakOf(mem.saturated.worker).external)} MB saturated.`,
    `Saturated, without a stall, the worker's peak is above bare's (${MB(mem.saturated.worker.memory.peakRss)} against ${MB(mem.saturated.bare.memory.peakRss)} MB; heap in use at most ${MB(peakOf(mem.saturated.worker).heapUsed)} against`,
    `${MB(peakOf(mem.saturated.bare).heapUsed)} MB), as in the goal's setting above and for the same reason; it is not the goal's setting.`,
    `It sent ${n1(w.redis.inputBytesPerJob / 1000)} KB to Redis per job against ${n1(mem.saturated.worker.redis.inputBytesPerJob / 1000)} KB saturated: about ${pct(f.stall.checkpointedShare)} of its ${w.jobs} jobs`,
    `(${n1(f.stall.checkpointedShare * w.jobs)} images of ${n1(base64Mb)} MB) were checkpointed because their delivery had to wait, which is the price of not`,
    `holding them in memory: ${res.overhead.checkpointWrite.at(-1) ? `${res.overhead.checkpointWrite.at(-1)!.saveUs.toFixed(0)} µs of CPU per ${res.overhead.checkpointWrite.at(-1)!.imageBytes / 1e6} MB save in the measurement above` : 'one save each'}.`,
    ...(log
      ? [
          `The job-end lines show the wait where it belongs, in the notify step: ${n1(log.meanStepsMs.notify)} ms on average and ${n1(log.maxNotifyMs / 1000)} s at most, where before`,
          `backpressure they reported ${EARLIER.frozen.meanNotifyMs} ms while the frames piled up behind them.`,
        ]
      : []),
    ...stallTimingLines(res),
    '',
  ];
}

/** The frozen-relay runs after the relay was resumed: when the worker's waiting deliveries went out, and how bare caught up. */
interface StallTiming {
  stallS: number;
  /** Deliveries whose notify step waited: how many went out while the relay was stopped, how many after, and when (s after the resume). */
  waited: number;
  waitedDuringStall: number;
  firstWaitedS: number;
  lastWaitedS: number;
  /** The worker's remaining jobs after the resume: how long they took, and how long at its saturated rate. */
  workerAfterResume: number;
  workerLastS: number;
  workerExpectedS: number;
  /** Bare: final notifications after the resume, and when the last came (s after the resume). */
  bareAfterResume: number;
  bareLastS: number;
}

function stallTiming(res: BenchResults): StallTiming | undefined {
  const { worker, bare } = res.memory.stalledRelay;
  const t = worker.stall;
  const b = bare.stall;
  const ends = worker.workerLog?.waitedEndsAt ?? [];
  if (!t || !b || !t.resumedAtEpochMs || ends.length === 0) return undefined;
  const relative = ends.map((at) => (at - t.resumedAtEpochMs) / 1000);
  const after = relative.filter((s) => s >= 0);
  if (after.length === 0) return undefined;
  const saturated = res.memory.saturated.worker.throughput;
  return {
    stallS: (t.resumedAtMs - t.stoppedAtMs) / 1000,
    waited: ends.length,
    waitedDuringStall: relative.length - after.length,
    firstWaitedS: Math.min(...after),
    lastWaitedS: Math.max(...after),
    workerAfterResume: t.deliveredAfterResume,
    workerLastS: (t.lastMs - t.resumedAtMs) / 1000,
    workerExpectedS: saturated > 0 ? t.deliveredAfterResume / saturated : NaN,
    bareAfterResume: b.deliveredAfterResume,
    bareLastS: (b.lastMs - b.resumedAtMs) / 1000,
  };
}

/** Waiting deliveries that go out well after the relay is reading again: slots idle on the retry backoff. */
const backoffShows = (s: StallTiming | undefined): s is StallTiming => s !== undefined && s.lastWaitedS > 0.5 && s.lastWaitedS > s.bareLastS;

function stallTimingLines(res: BenchResults): string[] {
  const t = res.memory.stalledRelay.worker.stall;
  const s = stallTiming(res);
  if (!t || !s) return [];
  const lines = [
    `Timeline (worker): the relay was stopped ${n1(t.stoppedAtMs / 1000)} s into the run with ${t.deliveredBeforeStop} jobs delivered, and resumed at ${n1(t.resumedAtMs / 1000)} s.`,
    `${s.waited} deliveries had to wait (notify step of ${WAITED_MS} ms or more)${s.waitedDuringStall ? `; ${s.waitedDuringStall} went out while the relay was still stopped (the kernel's socket buffers took more), the other ${s.waited - s.waitedDuringStall}` : ', and they'}`,
    `went out between ${n2(s.firstWaitedS)} and ${n2(s.lastWaitedS)} s after the resume. The worker's remaining ${s.workerAfterResume} jobs took ${n2(s.workerLastS)} s after the resume, ${n2(s.workerExpectedS)} s at its saturated rate.`,
    `The relay was reading at full speed as soon as it was resumed: bare's remaining ${s.bareAfterResume} messages, its backlog included, reached it within ${n2(s.bareLastS)} s, and the`,
    `worker's own backlog is at most 8 MB, a few messages.`,
  ];
  if (backoffShows(s)) {
    lines.push(
      `So the waiting slots sat idle for up to ${n1(s.lastWaitedS)} s after there was room again: a delivery that found the buffer over budget sleeps`,
      `on the notifier's retry backoff (\`${lineOf('src/socketNotifier.ts', 'const delay = Math.min(backoffDelayMs(')}\`: 125-250 ms, doubling per attempt up to 5 s) and nothing`,
      `wakes it when the buffer drains (see Findings). Saturated, other slots keep the consumer busy meanwhile; with a slow API those`,
      `slots would be throughput lost.`,
    );
  }
  return lines;
}

function scaleOutSection(res: BenchResults, f: Figures): string[] {
  const last = res.scaleOut.at(-1);
  const worst = f.scaleOut.filter((s) => s.processes > 1).reduce((a, b) => (b.efficiency < a.efficiency ? b : a), { processes: 0, throughput: 0, efficiency: Infinity, ofCeiling: 0 });
  return [
    '## Scale-out',
    '',
    table(
      ['processes', 'jobs', 'jobs/s', 'of n x 1 process', 'of n x C/L ceiling', 'CPU used by the system (cores)', 'consumer CPU ms/job', 'relay CPU ms/job', 'other load (cores)'],
      res.scaleOut.map((r, i) => [
        String(r.spec.processes),
        String(r.jobs),
        r.error ? `${n1(r.throughput)} (${r.error})` : n1(r.throughput),
        n2(f.scaleOut[i].efficiency),
        n2(f.scaleOut[i].ofCeiling),
        n2(ourCores(r)),
        n2(cpuPerJob(r).consumers),
        n2(cpuPerJob(r).relay),
        n2(otherCores(r)),
      ]),
    ),
    '',
    `**What limits it.** With a 300 ms API each process is latency-bound (its own ceiling is ${n1(f.latency.ceiling)} jobs/s) and they share`,
    `nothing but Redis and the relay, so throughput adds up as long as the machine has CPU to spare: at ${last?.spec.processes ?? '?'} processes`,
    `the system used ${last ? n2(ourCores(last)) : '?'} of 2 cores. Bull hands each job to one process (no repeated notification was seen).`,
    ...(worst.processes > 0 && worst.efficiency < GOALS.scaleOut
      ? [`At ${worst.processes} processes the sum fell to ${n2(worst.efficiency)} of ${worst.processes} x 1 process: look at the other load and the cores used in that row.`]
      : []),
    `Each process stays at the single process's share of the C/L ceiling (see Latency-bound for why that share is below 1).`,
    '',
  ];
}

function redisSection(res: BenchResults, f: Figures): string[] {
  const lat = res.latency.worker.redis;
  return [
    '## Redis footprint',
    '',
    `After each run (consumers stopped) every key under the queue's prefix is listed with \`MEMORY USAGE\`. Keys of a job`,
    `(its hash, lock, logs, the worker's checkpoint and owner record) and entries left in wait/active/completed/failed`,
    `count as left by jobs.`,
    `Largest over all worker runs, the frozen-relay run (where images were checkpointed) included: ${n1(f.redis.perJobBytes)} bytes and ${n2(f.redis.perJobKeys)} keys per job. The producer`,
    `asked Bull to keep nothing (removeOnComplete, removeOnFail), so that is the goal. What stays is per queue, not per job (latency run):`,
    '',
    table(['key', 'type', 'bytes'], lat.keys.map((k) => [`\`${k.key.replace(/bull:[^:]+:/, 'bull:<queue>:')}\``, k.type, String(k.bytes)])),
    '',
    `\`used_memory\` moved by ${n1(lat.usedMemoryDeltaPerJob)} bytes per job over the same run (allocator noise; no keys behind it).`,
    '',
  ];
}

function profileSection(res: BenchResults): string[] {
  const lines = [
    '## Profile',
    '',
    `\`node --cpu-prof\` on each consumer in the overhead setting (${res.plan.profileJobs} jobs of 200 KB), counting only samples taken while jobs ran.`,
    `Self time is time in the function itself; "on behalf of" is the nearest package or project function above it,`,
    `which names native entries such as \`writeUtf8String\`. Samples are wall-clock: on a shared machine time spent`,
    `waiting for a core lands on whatever was running, so the profile says where to look and the variant runs above`,
    `(CPU from /proc) say how much a change saves. Profiles: \`bench/.tmp/profiles/\`; summarise one with`,
    '`node bench/.tmp/build/bench/profileSummary.js <file>`.',
    '',
  ];
  for (const kind of ['worker', 'bare'] as const) {
    const p = res.profile[kind];
    if (p.summary) lines.push(formatSummary(p.summary, `### ${kind}`, PROFILE_ROWS), '');
  }
  const diff = profileDiff(res);
  if (diff.length > 0) {
    lines.push(
      'Worker minus bare, self time by package per job (both profiles cover the same number of jobs; packages whose',
      'difference is under 0.02 ms left out):',
      '',
      table(['package', 'worker ms/job', 'bare ms/job', 'difference'], diff.map((d) => [d.name, n2(d.worker), n2(d.bare), `${d.diff >= 0 ? '+' : ''}${n2(d.diff)}`])),
      '',
      'src/grokProvider\'s time is `JSON.parse` of the API\'s answer (`parseSuccess`), which bare spends inside node-fetch\'s',
      '`json()`: those two rows are the same work. The profile samples the main thread only, so it shows less than the CPU',
      'difference measured from /proc, which also counts V8\'s background GC threads.',
      '',
    );
  }
  return lines;
}

/** Self time per package and job, worker against bare, largest differences first. */
function profileDiff(res: BenchResults): Array<{ name: string; worker: number; bare: number; diff: number }> {
  const w = res.profile.worker;
  const b = res.profile.bare;
  if (!w.summary || !b.summary) return [];
  const perJob = (areas: SelfTime[], jobs: number): Map<string, number> => new Map(areas.map((a) => [a.name, a.ms / Math.max(jobs, 1)]));
  const wm = perJob(w.summary.areas, w.run.jobs);
  const bm = perJob(b.summary.areas, b.run.jobs);
  // An area missing from a summary's top list is below that list's last entry: count it as that, not as 0.
  const floorOf = (areas: SelfTime[], jobs: number): number => (areas.at(-1)?.ms ?? 0) / Math.max(jobs, 1);
  const wFloor = floorOf(w.summary.areas, w.run.jobs);
  const bFloor = floorOf(b.summary.areas, b.run.jobs);
  return [...new Set([...wm.keys(), ...bm.keys()])]
    .map((name) => {
      const worker = wm.get(name) ?? wFloor;
      const bare = bm.get(name) ?? bFloor;
      return { name, worker, bare, diff: worker - bare };
    })
    .filter((d) => Math.abs(d.diff) >= 0.02)
    .sort((x, y) => y.diff - x.diff);
}

function landedSection(res: BenchResults, f: Figures): string[] {
  const o = f.overhead;
  const w = res.memory.stalledRelay.worker;
  const mask = maskShare(res);
  return [
    '## What landed in src/ since the earlier results',
    '',
    `The earlier results proposed three changes; all three are in the code measured here. Earlier figures are from the`,
    `same benchmark on this machine (the full run at ${EARLIER.commit} unless said otherwise).`,
    '',
    `1. **Checkpoint as one Buffer, written only when delivery has to wait** (\`${lineOf('src/checkpointStore.ts', 'async save(')}\`, \`${lineOf('src/pipeline.ts', 'tryDeliver(completed)')}\`).`,
    `   With every image checkpointed as a string before delivery the worker spent ${EARLIER.stringCheckpointCpuMs} ms of CPU per 200 KB job; once the`,
    `   checkpoint was written as one Buffer and only for deliveries that wait, ${EARLIER.cpuMs.worker} ms (bare ${EARLIER.cpuMs.bare} ms), sending 1.2 KB to`,
    `   Redis per job instead of the image. Here: ${n2(o.cpu.worker)} ms (bare ${n2(o.cpu.bare)} ms, both with bufferutil), ${n1(o.sentKb.worker)} KB to Redis per job;`,
    `   a job whose delivery waits pays the write: ${res.overhead.checkpointWrite.map((c) => `${c.saveUs.toFixed(0)} µs of CPU at ${c.imageBytes / 1000} KB`).join(', ')} (save and forget).`,
    `2. **bufferutil as an optionalDependency** (package.json): ws masks outgoing frames natively. \`_mask\` in`,
    `   ws/lib/buffer-util.js was ${pct(EARLIER.maskShare)} of the worker's busy time; measured with bufferutil on NODE_PATH the worker went`,
    `   from ${EARLIER.cpuMs.worker} to ${EARLIER.bufferutilCpuMs.worker} ms of CPU per job (bare ${EARLIER.cpuMs.bare} -> ${EARLIER.bufferutilCpuMs.bare} ms). Here${res.bufferutil ? ` (bufferutil ${res.bufferutil} installed)` : ' (bufferutil NOT installed)'}: ${n2(o.cpu.worker)} ms for the worker, ${n2(o.cpu.bare)} ms for bare;`,
    `   JavaScript masking is ${mask === 0 ? 'gone from the profile' : `still ${pct(mask)} of the worker's busy time`}.`,
    `3. **Backpressure for notifications** (\`${lineOf('src/socketNotifier.ts', 'maxUnsentBytes?:')}\`, ${DEFAULT_BUDGET}): with the relay frozen`,
    `   ${EARLIER.frozen.forS} s at 1 MB the worker's peak RSS was ${EARLIER.frozen.peakRssMb} MB (peak external ${EARLIER.frozen.peakExternalMb} MB, ${EARLIER.frozen.saturatedPeakRssMb} MB without the stall);`,
    `   here ${MB(w.memory.peakRss)} MB (peak external ${MB(peakOf(w).external)} MB, ${MB(res.memory.saturated.worker.memory.peakRss)} MB without the stall), while bare, which has no backpressure,`,
    `   reached ${MB(res.memory.stalledRelay.bare.memory.peakRss)} MB in the same run.`,
    '',
  ];
}

const DEFAULT_BUDGET = 'deliveries wait while more than 8 MB are unsent';

function maskShare(res: BenchResults): number {
  const p = res.profile.worker.summary;
  return p ? p.functions.filter((s) => s.name.startsWith('_mask ')).reduce((sum, s) => sum + s.share, 0) : 0;
}

function findings(res: BenchResults, f: Figures): string[] {
  const o = f.overhead;
  const workerProfile = res.profile.worker.summary;
  const share = (fn: (s: SelfTime) => boolean): number =>
    workerProfile ? workerProfile.functions.filter(fn).reduce((sum, s) => sum + s.share, 0) : 0;
  const firstWrite = share((s) => s.name === '(anonymous)' && (s.mainCaller ?? '').startsWith('doWrite engine.io-client'));
  const extraMs = o.cpu.worker - o.cpu.bare;
  const saved = (w: WhatIf): number => o.cpu.worker - o.cpu[w];
  const stall = stallTiming(res);
  const bigImageWarnings = Object.entries(res.memory.worker.workerLog?.problems ?? {}).find(([msg]) => msg.includes('over 1 MB'))?.[1] ?? 0;
  const lines = ['## Findings in src/ (from this run; proposed, not applied)', ''];
  let n = 0;
  if (o.ratio < GOALS.overhead || o.cpuRatio < GOALS.overhead) {
    const allowed = o.cpu.bare / GOALS.overhead - o.cpu.bare;
    const store = saved('noCheckpoint');
    const withoutStore = o.cpu.bare / o.cpu.noCheckpoint;
    lines.push(
      `${++n}. **The overhead goal is missed by a fixed cost per job**: +${n2(extraMs)} ms of CPU over bare's ${n2(o.cpu.bare)} ms where the goal allows`,
      `   ${n2(allowed)} ms (see Overhead). ${resolvedText(o, res.overhead.rounds.length)}`,
    );
    if (res.overhead.rounds.length > 1 && o.savedRange.noCheckpoint.min > 0) {
      lines.push(
        `   The checkpoint store's ${n2(store)} ms is two more writes on the shared Redis connection per job, each a system call on the`,
        `   event loop, and their replies: \`open\` (\`${lineOf('src/checkpointStore.ts', 'async open(')}\`) sends its SET and GET as one ioredis pipeline, and`,
        `   building a Pipeline copies every Lua command Bull defined on that client onto it; \`forget\` (\`${lineOf('src/checkpointStore.ts', 'async forget(')}\`) sends`,
        '   a DEL when Bull reports the job complete. In the profile: `writeUtf8String` under ioredis\'s `Pipeline.write`, `writeBuffer`',
        '   under `sendCommand` well above bare\'s, and the Pipeline constructor. Proposed: collect the ids `forget` receives and',
        '   send one DEL per event-loop turn for all of them (jobs finish in bursts of up to CONCURRENCY), and measure',
        '   `enableAutoPipelining` on the shared command connection (`src/redis.ts`; not on the blocking one), which coalesces',
        '   the commands of concurrent jobs, Bull\'s included, into fewer writes.',
        `   Even a free store would leave the worker at ${n2(withoutStore)} of bare by CPU: the rest of the extra is spread over many small`,
        '   items (the worker-minus-bare table under Profile), with none to remove on its own.',
      );
    }
  }
  if (backoffShows(stall)) {
    lines.push(
      `${++n}. **Deliveries waiting for room wake on the retry backoff, not when the buffer drains** (\`${lineOf('src/socketNotifier.ts', 'const delay = Math.min(backoffDelayMs(')}\`).`,
      '   While connected but over `maxUnsentBytes`, `deliver()` sleeps 125-250 ms, then twice as long per attempt up to',
      `   \`retryMaxMs\` (5 s). After the ${n1(stall.stallS)} s stall the ${stall.waited - stall.waitedDuringStall} deliveries still waiting went out ${n2(stall.firstWaitedS)} to ${n2(stall.lastWaitedS)} s after the relay was`,
      `   resumed, though it was reading again at once (bare's remaining ${stall.bareAfterResume} messages, backlog included, arrived within ${n2(stall.bareLastS)} s): up to`,
      `   ${n1(stall.lastWaitedS)} s of idle slots after each stall (the remaining ${stall.workerAfterResume} jobs took ${n2(stall.workerLastS)} s, ${n2(stall.workerExpectedS)} s at the saturated rate; a`,
      '   latency-bound worker would lose the idle slots outright). Proposed: when the socket is connected and',
      '   only the budget is in the way, wait for the websocket\'s underlying socket to drain (its `drain` event) or poll',
      '   `bufferedAmount` every ~50 ms, and keep the exponential backoff for failed or unacknowledged deliveries.',
    );
  }
  if (firstWrite > 0.03) {
    lines.push(
      `${++n}. Minor: **each outgoing message is measured for compression that is never negotiated** (\`(anonymous)\` on behalf of`,
      `   \`doWrite\` in engine.io-client's websocket transport, ${pct(firstWrite)} of the worker's busy time, as much in bare). engine.io-client`,
      '   offers permessage-deflate by default and calls `Buffer.byteLength` on every string packet to apply its threshold,',
      '   though a socket.io server does not enable compression by default (the relay here does not). Most of that time is',
      '   the first flatten of the concatenated packet, which ws would do anyway; what `perMessageDeflate: false` in the',
      `   \`io()\` options (\`${lineOf('src/socketNotifier.ts', 'this.socket = io(')}\`) saves is one UTF-8 length scan per message, a small share. Only worth`,
      '   it if the service is known not to compress.',
    );
  }
  if (bigImageWarnings > 0) {
    lines.push(
      `${++n}. Minor: with images over 1 MB **every job logs a warning** (\`${lineOf('src/socketNotifier.ts', 'private warnIfTooLarge(')}\`): ${bigImageWarnings} warnings for`,
      `   ${res.memory.worker.jobs} jobs in the 1 MB memory run, though the relay accepts them (its maxHttpBufferSize is raised). Proposed: warn once`,
      '   per process (or when a delivery of a large payload is not acknowledged) and count the rest.',
    );
  }
  if (n === 0) lines.push('Nothing stands out in this run.');
  lines.push('');
  return lines;
}

function peakOf(r: RunResult): { rss: number; heapTotal: number; heapUsed: number; external: number } {
  return r.memory.snapshots.at(-1)?.peak ?? { rss: 0, heapTotal: 0, heapUsed: 0, external: 0 };
}

function fmtMs(ms: number): string {
  return ms >= 1000 ? `${n1(ms / 1000)} s` : `${ms.toFixed(0)} ms`;
}

function fmtGrowth(bytesPerJob: number): string {
  return Number.isNaN(bytesPerJob) ? 'n/a' : `${bytesPerJob >= 0 ? '+' : ''}${n1(bytesPerJob)} B/job`;
}

function collectRuns(res: BenchResults): RunResult[] {
  return [
    ...res.overhead.rounds.flatMap((r) => [r.bare, r.worker, ...Object.values(r.whatIf)]),
    res.latency.worker,
    res.latency.bare,
    res.memory.bare,
    res.memory.worker,
    res.memory.saturated.bare,
    res.memory.saturated.worker,
    res.memory.stalledRelay.worker,
    res.memory.stalledRelay.bare,
    res.leak.worker,
    res.leak.bare,
    ...res.scaleOut,
    res.profile.worker.run,
    res.profile.bare.run,
  ];
}

if (require.main === module) {
  const [input, output] = process.argv.slice(2);
  if (!input) {
    process.stderr.write('usage: node report.js <results.json> [results.md]\n');
    process.exit(2);
  }
  const report = renderReport(JSON.parse(fs.readFileSync(input, 'utf8')) as BenchResults);
  if (output) fs.writeFileSync(output, report);
  else process.stdout.write(report);
}
