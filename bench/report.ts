import fs from 'node:fs';
import type { CapacityResults, Variant } from './capacity';
import type { CheckpointWriteCost } from './checkpointMicro';
import { cpuPerJob, RunResult } from './measureRun';
import { Plan, WHAT_IF, WhatIf } from './plan';
import type { MachineInfo } from './procStats';
import { formatSummary, ProfileSummary, SelfTime } from './profileSummary';
import type { StorybangResults } from './storybang';
import { storybangGoals, storybangSection } from './storybangReport';

/** Everything one `npm run bench` measured; `report.js <results.json>` renders it again. */
export interface BenchResults {
  plan: Plan;
  machine: MachineInfo;
  /** bufferutil's version as the consumers resolve it (ws masks natively with it), or null when absent. */
  bufferutil: string | null;
  date: string;
  durationS: number;
  /** Which scenarios ran (BENCH_ONLY); absent parts were not run. */
  only?: string;
  overhead?: {
    rounds: Array<{ bare: RunResult; worker: RunResult; whatIf: Record<WhatIf, RunResult> }>;
    /** src's checkpoint `save` (and the `forget` after it), measured alone. */
    checkpointWrite: CheckpointWriteCost[];
  };
  latency?: { worker: RunResult; bare: RunResult };
  memory?: {
    bare: RunResult;
    worker: RunResult;
    saturated: { bare: RunResult; worker: RunResult };
    /** The saturated runs again, with the relay frozen for a few seconds. */
    stalledRelay: { worker: RunResult; bare: RunResult };
  };
  leak?: { worker: RunResult; bare: RunResult };
  scaleOut?: RunResult[];
  profile?: Record<'worker' | 'bare', { run: RunResult; summary?: ProfileSummary }>;
  capacity?: CapacityResults;
  storybang?: StorybangResults;
}

const GOALS = {
  overhead: 0.9,
  latency: 0.95,
  peakRss: 1.2,
  growthBytesPerJob: 1024,
  scaleOut: 0.9,
  rateLimitShare: 0.9,
  max429: 0.05,
  lightWaitX: 3,
  loneThroughput: 0.9,
  storyX: 1.5,
  redisCommandsX: 1.5,
};

const MB = (bytes: number): string => (bytes / 1e6).toFixed(0);
const n1 = (x: number): string => (Number.isFinite(x) ? x.toFixed(1) : '-');
const n2 = (x: number): string => (Number.isFinite(x) ? x.toFixed(2) : '-');
/** A ratio next to its target: a third decimal when two would look equal to it. */
const near = (x: number, target: number): string => (Math.abs(x - target) < 0.005 ? x.toFixed(3) : n2(x));
const pct = (x: number): string => `${(x * 100).toFixed(1)}%`;
const verdict = (ok: boolean | undefined): string => (ok === undefined ? 'n/a' : ok ? 'pass' : '**miss**');
const mean = (xs: number[]): number => xs.reduce((a, b) => a + b, 0) / Math.max(xs.length, 1);
const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
};
/** Cores' worth of CPU the rest of the machine used while the run's jobs ran. */
const otherCores = (r: RunResult): number => (r.usage.wallMs > 0 ? r.usage.cpuMs.otherOnMachine / r.usage.wallMs : 0);
const ourCores = (r: RunResult): number => {
  const { consumers, relay, harness, redis } = r.usage.cpuMs;
  return r.usage.wallMs > 0 ? (consumers + relay + harness + redis) / r.usage.wallMs : 0;
};
/** Consumer CPU ms per job over several runs, weighted by jobs. */
const consumerCpu = (runs: RunResult[]): number =>
  runs.reduce((s, r) => s + r.usage.cpuMs.consumers, 0) /
  Math.max(
    1,
    runs.reduce((s, r) => s + r.jobs, 0),
  );
const jobsPerS = (r: RunResult): string => (r.error ? `${n1(r.throughput)} (${r.error})` : n1(r.throughput));

function table(header: string[], rows: string[][]): string {
  return [`| ${header.join(' | ')} |`, `| ${header.map(() => '---').join(' | ')} |`, ...rows.map((r) => `| ${r.join(' | ')} |`)].join('\n');
}

const RUN_HEADER = [
  'run',
  'jobs',
  'jobs/s',
  'consumer CPU ms/job',
  'consumer loop busy',
  'relay CPU ms/job',
  'sent to Redis KB/job',
  'peak RSS MB',
  'other load (cores)',
];
function runRow(r: RunResult): string[] {
  const c = cpuPerJob(r);
  return [
    r.spec.name,
    String(r.jobs),
    jobsPerS(r),
    n2(c.consumers),
    pct(r.usage.loopBusy.consumers),
    n2(c.relay),
    n1(r.redis.inputBytesPerJob / 1000),
    MB(r.memory.peakRss),
    n2(otherCores(r)),
  ];
}

/** Least-squares slope of heap used after a full GC against jobs done: bytes kept per job. */
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
  return points.reduce((s, [x, y]) => s + (x - mx) * (y - my), 0) / points.reduce((s, [x]) => s + (x - mx) ** 2, 0);
}

/** One row per goal: what, measured, target, pass or miss. */
type Goal = [string, string, string, boolean | undefined];

function goals(res: BenchResults): Goal[] {
  const out: Goal[] = [];
  const o = res.overhead;
  if (o) {
    const ratio = median(o.rounds.map((r) => r.worker.throughput / r.bare.throughput));
    const cpuRatio = consumerCpu(o.rounds.map((r) => r.bare)) / consumerCpu(o.rounds.map((r) => r.worker));
    out.push(['Overhead: worker jobs/s / bare jobs/s (median of rounds)', near(ratio, GOALS.overhead), `>= ${GOALS.overhead}`, ratio >= GOALS.overhead]);
    out.push(['Overhead, CPU: bare CPU per job / worker CPU per job', near(cpuRatio, GOALS.overhead), `>= ${GOALS.overhead}`, cpuRatio >= GOALS.overhead]);
  }
  if (res.latency) {
    const ceiling = (res.plan.concurrency * 1000) / res.plan.latency.delayMs;
    const ratio = res.latency.worker.throughput / ceiling;
    out.push([`Latency-bound: jobs/s / C/L ceiling (${n1(ceiling)} jobs/s)`, near(ratio, GOALS.latency), `>= ${GOALS.latency}`, ratio >= GOALS.latency]);
  }
  if (res.memory) {
    const ratio = res.memory.worker.memory.peakRss / res.memory.bare.memory.peakRss;
    out.push(['Memory: peak RSS worker / bare (1 MB images)', near(ratio, GOALS.peakRss), `<= ${GOALS.peakRss}`, ratio <= GOALS.peakRss]);
  }
  if (res.leak) {
    const slope = heapSlope(res.leak.worker);
    out.push(['Memory: heap kept after a full GC, bytes per job', n1(slope), `<= ${GOALS.growthBytesPerJob}`, !(slope > GOALS.growthBytesPerJob)]);
  }
  for (const r of res.scaleOut ?? []) {
    if (r.spec.processes === 1) continue;
    const eff = r.throughput / (r.spec.processes * res.scaleOut![0].throughput);
    out.push([
      `Scale-out: ${r.spec.processes} processes, jobs/s / (${r.spec.processes} x 1 process)`,
      near(eff, GOALS.scaleOut),
      `>= ${GOALS.scaleOut}`,
      eff >= GOALS.scaleOut,
    ]);
  }
  const workerRuns = collectRuns(res).filter((r) => r.spec.kind === 'worker');
  if (workerRuns.length > 0) {
    const bytes = Math.max(...workerRuns.map((r) => r.redis.perJobBytes));
    const keys = Math.max(...workerRuns.map((r) => r.redis.perJobKeys));
    out.push(['Redis: bytes and keys left per completed job (worst run)', `${n1(bytes)} B, ${n2(keys)} keys`, '0', bytes === 0 && keys === 0]);
  }
  if (res.capacity) out.push(...capacityGoals(res.capacity));
  if (res.storybang) out.push(...storybangGoals(res.storybang));
  return out;
}

/** Issue 9's "Done when", judged on the current tree; ratios against the baseline of the same run. */
function capacityGoals(c: CapacityResults): Goal[] {
  const out: Goal[] = [];
  const current = (v: Variant): boolean => v.build === 'current';
  const baseline = (v: Variant): boolean => v.build === 'baseline' && !v.env.GROK_RATE_LIMIT;
  const rl = c.rateLimit.find((r) => current(r.variant));
  if (rl) {
    out.push(['Rate limit: users who saw a failure', String(rl.usersFailed), '0', rl.usersFailed === 0]);
    out.push([
      'Rate limit: delivered images/s / 5',
      near(rl.imagesPerS / 5, GOALS.rateLimitShare),
      `>= ${GOALS.rateLimitShare}`,
      rl.imagesPerS / 5 >= GOALS.rateLimitShare,
    ]);
    out.push(['Rate limit: requests answered 429', pct(rl.share429), `<= ${pct(GOALS.max429)}`, rl.share429 <= GOALS.max429]);
  }
  for (const f of c.fairness.filter((r) => current(r.variant))) {
    const x = f.lightWaitMs === undefined ? Infinity : f.lightWaitMs / f.latencyMs;
    out.push([
      `Fairness: light user's wait / API latency, ${f.workers} worker(s), limiter ${f.limiter}`,
      n1(x),
      `<= ${GOALS.lightWaitX}`,
      x <= GOALS.lightWaitX,
    ]);
  }
  const lone = c.lone.find((r) => current(r.variant));
  const loneBase = c.lone.find((r) => baseline(r.variant));
  const loneRatio = lone && loneBase ? lone.imagesPerS / loneBase.imagesPerS : NaN;
  if (lone)
    out.push([
      `Fairness: a lone user's ${lone.jobs} jobs, images/s current / baseline`,
      near(loneRatio, GOALS.loneThroughput),
      `>= ${GOALS.loneThroughput}`,
      loneBase ? loneRatio >= GOALS.loneThroughput : undefined,
    ]);
  const st = c.story.find((r) => current(r.variant));
  if (st) {
    out.push(['StoryBang: stories complete (moderated page apart)', `${st.storiesCompleted} of ${st.stories}`, 'all', st.storiesCompleted === st.stories]);
    out.push(['StoryBang: failures seen by browsers (moderated page apart)', String(st.failuresSeen), '0', st.failuresSeen === 0]);
    out.push([
      'StoryBang: slowest story / ideal',
      near(st.slowestMs / st.idealMs, GOALS.storyX),
      `<= ${GOALS.storyX}`,
      st.slowestMs / st.idealMs <= GOALS.storyX,
    ]);
    out.push([
      'StoryBang: image API calls vs delivered pages + moderated',
      `${st.api.requests} vs ${st.delivered} + 1`,
      '<=',
      st.api.requests <= st.delivered + 1,
    ]);
  }
  const cost = c.cost.find((r) => current(r.variant));
  const costBase = c.cost.find((r) => baseline(r.variant));
  const costRatio = cost && costBase ? cost.commandsPerJob.worker / costBase.commandsPerJob.worker : NaN;
  if (cost)
    out.push([
      'Cost: worker Redis commands per job, current / baseline',
      near(costRatio, GOALS.redisCommandsX),
      `<= ${GOALS.redisCommandsX}`,
      costBase ? costRatio <= GOALS.redisCommandsX : undefined,
    ]);
  return out;
}

/** The goals table, as printed at the end of a run and at the top of results.md. */
export function renderSummaryTable(res: BenchResults): string {
  return table(
    ['goal', 'measured', 'target', 'result'],
    goals(res).map(([g, m, t, ok]) => [g, m, t, verdict(ok)]),
  );
}

function overheadSection(o: NonNullable<BenchResults['overhead']>): string[] {
  const runsOf = (c: 'bare' | 'worker' | WhatIf): RunResult[] => o.rounds.map((r) => (c === 'bare' ? r.bare : c === 'worker' ? r.worker : r.whatIf[c]));
  const consumers = ['bare', 'worker', ...(Object.keys(WHAT_IF) as WhatIf[])] as const;
  const saved = (w: WhatIf): number[] => o.rounds.map((r) => cpuPerJob(r.worker).consumers - cpuPerJob(r.whatIf[w]).consumers);
  return [
    '## Overhead',
    '',
    table(
      ['consumer', 'jobs/s (median)', 'CPU ms/job', 'loop busy', 'sent to Redis KB/job', 'CPU ms/job saved vs worker (lowest..highest round)'],
      consumers.map((c) => {
        const runs = runsOf(c);
        const s = c === 'bare' || c === 'worker' ? '' : `${n2(Math.min(...saved(c)))}..${n2(Math.max(...saved(c)))}`;
        return [
          c === 'bare' || c === 'worker'
            ? c
            : `worker, ${Object.entries(WHAT_IF[c])
                .map(([k, v]) => `${k}=${v}`)
                .join(' ')}`,
          n1(median(runs.map((r) => r.throughput))),
          n2(consumerCpu(runs)),
          pct(mean(runs.map((r) => r.usage.loopBusy.consumers))),
          n1(mean(runs.map((r) => r.redis.inputBytesPerJob)) / 1000),
          s,
        ];
      }),
    ),
    '',
    table(RUN_HEADER, o.rounds.flatMap((r) => [r.bare, r.worker, ...Object.values(r.whatIf)]).map(runRow)),
    '',
    table(
      ['checkpoint save + forget alone', 'saves', 'CPU us per save'],
      o.checkpointWrite.map((c) => [`${c.imageBytes / 1000} KB`, String(c.saves), n1(c.saveUs)]),
    ),
    '',
  ];
}

function latencySection(res: BenchResults, l: NonNullable<BenchResults['latency']>): string[] {
  const cycle = (r: RunResult): number => (res.plan.concurrency * r.activeMs) / Math.max(r.jobs, 1);
  return [
    '## Latency-bound',
    '',
    table(
      [...RUN_HEADER, 'ms per slot per job', 'API requests / connections'],
      [l.worker, l.bare].map((r) => [...runRow(r), n1(cycle(r)), `${r.api.requests} / ${r.api.connections}`]),
    ),
    '',
  ];
}

function memorySection(m: NonNullable<BenchResults['memory']>, leak: BenchResults['leak']): string[] {
  const row = (r: RunResult): string[] => {
    const s = r.memory.snapshots;
    const peak = s.at(-1)?.peak;
    return [
      r.spec.name,
      String(r.jobs),
      MB(r.memory.peakRss),
      peak ? `${MB(peak.heapUsed)} / ${MB(peak.heapTotal)}` : '',
      peak ? MB(peak.external) : '',
      s.map((x) => MB(x.rss)).join(' / '),
      s.map((x) => n1(x.heapUsed / 1e6)).join(' / '),
      n2(cpuPerJob(r).consumers),
      n1(r.redis.inputBytesPerJob / 1000),
      n2(otherCores(r)),
    ];
  };
  const runs = [m.bare, m.worker, m.saturated.bare, m.saturated.worker, m.stalledRelay.bare, m.stalledRelay.worker, ...(leak ? [leak.bare, leak.worker] : [])];
  const stall = (r: RunResult): string[] => {
    const t = r.stall;
    const log = r.workerLog;
    if (!t) return [r.spec.name, 'no stall recorded', '', '', '', '', ''];
    return [
      r.spec.name,
      `${n1(t.stoppedAtMs / 1000)}..${n1(t.resumedAtMs / 1000)}`,
      String(t.deliveredBeforeStop),
      String(t.deliveredAfterResume),
      n2((t.firstAfterResumeMs - t.resumedAtMs) / 1000),
      n2((t.lastMs - t.resumedAtMs) / 1000),
      log ? `${n1(log.maxNotifyMs)} ms, ${log.waitedEndsAt.length} waited` : '',
    ];
  };
  return [
    '## Memory',
    '',
    table(
      [
        'run',
        'jobs',
        'peak RSS MB',
        'peak heap used / total MB',
        'peak external MB',
        'RSS after GC MB (start / batches)',
        'heap used after GC MB',
        'consumer CPU ms/job',
        'sent to Redis KB/job',
        'other load (cores)',
      ],
      runs.map(row),
    ),
    '',
    ...(leak
      ? [`Heap kept per job after a full GC (slope over batches): worker ${n1(heapSlope(leak.worker))} B, bare ${n1(heapSlope(leak.bare))} B.`, '']
      : []),
    '### Frozen relay',
    '',
    table(
      ['run', 'relay stopped (s)', 'delivered before stop', 'after resume', 'first after resume (s)', 'last after resume (s)', 'longest notify step'],
      [m.stalledRelay.bare, m.stalledRelay.worker].map(stall),
    ),
    '',
  ];
}

function scaleOutSection(scale: RunResult[], res: BenchResults): string[] {
  const one = scale[0]?.throughput ?? 0;
  const ceiling = (res.plan.concurrency * 1000) / res.plan.scaleOut.delayMs;
  return [
    '## Scale-out',
    '',
    table(
      [
        'processes',
        'jobs',
        'jobs/s',
        'of n x 1 process',
        'of n x C/L ceiling',
        'CPU used by the system (cores)',
        'consumer CPU ms/job',
        'relay CPU ms/job',
        'other load (cores)',
      ],
      scale.map((r) => {
        const n = r.spec.processes;
        return [
          String(n),
          String(r.jobs),
          jobsPerS(r),
          n2(r.throughput / (n * one)),
          n2(r.throughput / (n * ceiling)),
          n2(ourCores(r)),
          n2(cpuPerJob(r).consumers),
          n2(cpuPerJob(r).relay),
          n2(otherCores(r)),
        ];
      }),
    ),
    '',
  ];
}

function redisAndLogSection(res: BenchResults): string[] {
  const runs = collectRuns(res).filter((r) => r.spec.kind === 'worker');
  const keys = res.latency?.worker.redis.keys ?? [];
  return [
    '## Redis footprint and worker logs',
    '',
    table(
      [
        'run',
        'keys left per job',
        'bytes left per job',
        'used_memory delta per job',
        'mean job ms (token / generate / notify)',
        'longest notify ms',
        'warnings and errors',
      ],
      runs.map((r) => {
        const l = r.workerLog;
        const problems = l
          ? Object.entries(l.problems)
              .map(([k, v]) => `${k} x${v}`)
              .join('; ')
          : '';
        return [
          r.spec.name,
          n2(r.redis.perJobKeys),
          n1(r.redis.perJobBytes),
          n1(r.redis.usedMemoryDeltaPerJob),
          l ? `${n1(l.meanDurationMs)} (${n1(l.meanStepsMs.token)} / ${n1(l.meanStepsMs.generate)} / ${n1(l.meanStepsMs.notify)})` : '',
          l ? n1(l.maxNotifyMs) : '',
          problems,
        ];
      }),
    ),
    '',
    ...(keys.length > 0
      ? [
          'Keys the queue held after the latency run:',
          '',
          table(
            ['key', 'type', 'bytes'],
            keys.map((k) => [`\`${k.key.replace(/bull:[^:]+:/, 'bull:<queue>:')}\``, k.type, String(k.bytes)]),
          ),
          '',
        ]
      : []),
  ];
}

function profileSection(p: NonNullable<BenchResults['profile']>): string[] {
  const lines = ['## Profile', ''];
  for (const kind of ['worker', 'bare'] as const) if (p[kind].summary) lines.push(formatSummary(p[kind].summary!, `### ${kind}`, 15), '');
  const w = p.worker;
  const b = p.bare;
  if (!w.summary || !b.summary) return lines;
  const perJob = (areas: SelfTime[], jobs: number): Map<string, number> => new Map(areas.map((a) => [a.name, a.ms / Math.max(jobs, 1)]));
  const wm = perJob(w.summary.areas, w.run.jobs);
  const bm = perJob(b.summary.areas, b.run.jobs);
  // A package missing from a top list is below its last row: count it as that, not as 0.
  const wFloor = (w.summary.areas.at(-1)?.ms ?? 0) / Math.max(w.run.jobs, 1);
  const bFloor = (b.summary.areas.at(-1)?.ms ?? 0) / Math.max(b.run.jobs, 1);
  const diff = [...new Set([...wm.keys(), ...bm.keys()])]
    .map((name) => ({ name, worker: wm.get(name) ?? wFloor, bare: bm.get(name) ?? bFloor }))
    .filter((d) => Math.abs(d.worker - d.bare) >= 0.02)
    .sort((x, y) => y.worker - y.bare - (x.worker - x.bare));
  lines.push(
    'Worker minus bare, self time per job by package:',
    '',
    table(
      ['package', 'worker ms/job', 'bare ms/job', 'difference'],
      diff.map((d) => [d.name, n2(d.worker), n2(d.bare), n2(d.worker - d.bare)]),
    ),
    '',
  );
  return lines;
}

function capacitySection(c: CapacityResults): string[] {
  const name = (v: Variant, workers?: number): string =>
    `${v.name} (${v.rev})${workers && workers > 1 ? `, ${workers} workers` : ''}${v.note ? ` [${v.note}]` : ''}`;
  const capped = (r: { timedOut: boolean }): string => (r.timedOut ? ' (capped)' : '');
  const outcomes = (r: { outcomes: Record<string, number>; codes: Record<string, number> }): string =>
    [...Object.entries(r.outcomes), ...Object.entries(r.codes)].map(([k, v]) => `${k} ${v}`).join(', ');
  return [
    '## Capacity (issue 9)',
    '',
    `Builds: ${c.builds.map((b) => `${b.label} ${b.rev}`).join(', ')}. Same run, same machine, one after the other.`,
    '',
    '### a) Rate-limit utilisation',
    '',
    table(
      [
        'variant',
        'delivered',
        'seconds',
        'images/s / 5',
        'API requests',
        '429 share',
        'peak in flight',
        'most admitted in 200 ms',
        'users who saw a failure',
        'failures seen',
        'job ends',
      ],
      c.rateLimit.map((r) => [
        name(r.variant, r.workers),
        `${r.delivered} of ${r.pages}`,
        n1(r.durationMs / 1000) + capped(r),
        n2(r.imagesPerS / 5),
        String(r.api.requests),
        pct(r.share429),
        String(r.api.peakInFlight),
        String(r.api.peakPer200ms),
        String(r.usersFailed),
        String(r.failuresSeen),
        outcomes(r),
      ]),
    ),
    '',
    '### b) Fairness',
    '',
    table(
      ['variant', 'limiter', 'light user waited (s)', 'x API latency', 'heavy images delivered before it', 'API requests', '429s'],
      c.fairness.map((r) => [
        name(r.variant, r.workers),
        r.limiter,
        r.lightWaitMs === undefined ? `> ${n1(r.durationMs / 1000)}` : n2(r.lightWaitMs / 1000),
        r.lightWaitMs === undefined ? '-' : n1(r.lightWaitMs / r.latencyMs),
        String(r.heavyDeliveredFirst),
        String(r.api.requests),
        String(r.api.limited),
      ]),
    ),
    '',
    table(
      ['lone user, 1 worker', 'delivered', 'seconds', 'images/s', 'peak in flight'],
      c.lone.map((r) => [name(r.variant), `${r.delivered} of ${r.jobs}`, n1(r.durationMs / 1000) + capped(r), n2(r.imagesPerS), String(r.api.peakInFlight)]),
    ),
    '',
    '### c) StoryBang load',
    '',
    table(
      [
        'variant',
        'stories complete',
        'slowest story (s)',
        'ideal (s)',
        'slowest / ideal',
        'failures seen (users)',
        'moderated page asked',
        'API calls',
        'calls per delivered page',
        '429s',
        'duplicates',
        'job ends',
      ],
      c.story.map((r) => [
        name(r.variant, r.workers),
        `${r.storiesCompleted} of ${r.stories}${capped(r)}`,
        n1(r.slowestMs / 1000),
        n1(r.idealMs / 1000),
        n2(r.slowestMs / r.idealMs),
        `${r.failuresSeen} (${r.usersFailed})`,
        String(r.moderatedAsks),
        String(r.api.requests),
        n2(r.api.requests / Math.max(1, r.delivered)),
        String(r.api.limited),
        String(r.duplicates),
        outcomes(r),
      ]),
    ),
    '',
    '### d) Cost per job',
    '',
    table(
      ['variant', 'jobs', 'Redis commands/job: all', 'producer alone', 'worker', 'worker CPU ms/job', 'most frequent commands per job'],
      c.cost.map((r) => [
        name(r.variant),
        `${r.delivered} of ${r.jobs}${capped(r)}`,
        n1(r.commandsPerJob.total),
        n1(r.commandsPerJob.producer),
        n1(r.commandsPerJob.worker),
        n2(r.cpuMsPerJob),
        Object.entries(r.topCommands)
          .map(([k, v]) => `${k} ${n1(v)}`)
          .join(', '),
      ]),
    ),
    '',
  ];
}

function collectRuns(res: BenchResults): RunResult[] {
  return [
    ...(res.overhead?.rounds.flatMap((r) => [r.bare, r.worker, ...Object.values(r.whatIf)]) ?? []),
    ...(res.latency ? [res.latency.worker, res.latency.bare] : []),
    ...(res.memory
      ? [
          res.memory.bare,
          res.memory.worker,
          res.memory.saturated.bare,
          res.memory.saturated.worker,
          res.memory.stalledRelay.worker,
          res.memory.stalledRelay.bare,
        ]
      : []),
    ...(res.leak ? [res.leak.worker, res.leak.bare] : []),
    ...(res.scaleOut ?? []),
    ...(res.profile ? [res.profile.worker.run, res.profile.bare.run] : []),
  ];
}

/** The generated report: tables and pass/fail only; what they mean is written by hand in bench/results.md. */
export function renderReport(res: BenchResults): string {
  const m = res.machine;
  const failures = collectRuns(res).filter((r) => r.error || r.failed > 0 || r.duplicates > 0);
  const out = [
    '# Benchmark figures',
    '',
    `\`npm run bench\`${res.plan.quick ? ' with BENCH_QUICK=1' : ''}${res.only ? ` with BENCH_ONLY=${res.only}` : ''}, ${res.date.slice(0, 16).replace('T', ' ')} UTC, ${(res.durationS / 60).toFixed(1)} min.`,
    `${m.cpus} x ${m.model}, ${m.memoryGb} GB, ${m.os}, node ${m.node}, redis ${m.redis}, bufferutil ${res.bufferutil ?? 'not installed'}; code measured: ${m.source}.`,
    '',
    '## Goals',
    '',
    renderSummaryTable(res),
    '',
    ...(failures.length > 0
      ? [
          `Runs with errors, failed or repeated notifications: ${failures.map((r) => `${r.spec.name} (${r.error ?? `${r.failed} failed, ${r.duplicates} repeated`})`).join('; ')}.`,
          '',
        ]
      : []),
    ...(res.overhead ? overheadSection(res.overhead) : []),
    ...(res.latency ? latencySection(res, res.latency) : []),
    ...(res.memory ? memorySection(res.memory, res.leak) : []),
    ...(res.scaleOut ? scaleOutSection(res.scaleOut, res) : []),
    ...(collectRuns(res).length > 0 ? redisAndLogSection(res) : []),
    ...(res.profile ? profileSection(res.profile) : []),
    ...(res.capacity ? capacitySection(res.capacity) : []),
    ...(res.storybang ? storybangSection(res.storybang, table) : []),
  ];
  return out.join('\n');
}

if (require.main === module) {
  const [input, output] = process.argv.slice(2);
  if (!input) {
    process.stderr.write('usage: node report.js <results.json> [figures.md]\n');
    process.exit(2);
  }
  const report = renderReport(JSON.parse(fs.readFileSync(input, 'utf8')) as BenchResults);
  if (output) fs.writeFileSync(output, report);
  else process.stdout.write(report);
}
