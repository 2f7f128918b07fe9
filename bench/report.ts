import fs from 'node:fs';
import path from 'node:path';
import type { CheckpointWriteCost } from './checkpointMicro';
import { cpuPerJob, RunResult, TMP_DIR } from './measureRun';
import type { Plan } from './plan';
import type { MachineInfo } from './procStats';
import { formatSummary, ProfileSummary, SelfTime } from './profileSummary';

export interface BenchResults {
  plan: Plan;
  machine: MachineInfo;
  date: string;
  durationS: number;
  overhead: {
    rounds: Array<{ bare: RunResult; worker: RunResult; fix: RunResult; noCheckpoint: RunResult }>;
    withBufferutil?: { bare: RunResult; worker: RunResult; fix: RunResult };
    /** src's checkpoint `save` against one Buffer, measured alone. */
    checkpointWrite: CheckpointWriteCost[];
  };
  latency: { worker: RunResult; bare: RunResult };
  memory: {
    bare: RunResult;
    worker: RunResult;
    fix: RunResult;
    saturated: { bare: RunResult; worker: RunResult; fix: RunResult };
    /** The saturated worker run again, with the relay frozen for a few seconds. */
    stalledRelay: RunResult;
  };
  leak: { worker: RunResult; bare: RunResult };
  scaleOut: RunResult[];
  profile: Record<'worker' | 'bare', { run: RunResult; summary?: ProfileSummary }>;
}

const GOALS = { overhead: 0.9, latency: 0.95, peakRss: 1.2, growthBytesPerJob: 1024, scaleOut: 0.9 };
const REPO = path.resolve(TMP_DIR, '..', '..');

const MB = (bytes: number): string => (bytes / 1e6).toFixed(0);
const n1 = (x: number): string => x.toFixed(1);
const n2 = (x: number): string => x.toFixed(2);
const pct = (x: number): string => `${(x * 100).toFixed(0)}%`;
const verdict = (ok: boolean): string => (ok ? 'pass' : '**miss**');
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

interface Figures {
  overhead: {
    ratio: number;
    fixRatio: number;
    cpuRatio: number;
    fixCpuRatio: number;
    throughput: { bare: number; worker: number; fix: number };
    cpu: { bare: number; worker: number; fix: number; none: number };
    busy: { bare: number; worker: number; fix: number };
    relayCpu: number;
    otherCores: number;
  };
  latency: { ceiling: number; ratio: number; bareRatio: number; cycleMs: number; bareCycleMs: number };
  memory: { peakRatio: number; fixPeakRatio: number; growthPerJob: number; fixGrowthPerJob: number; bareGrowthPerJob: number };
  /** Least-squares slope of heap used after GC against jobs done, from the end of the first batch on. */
  leak: { worker: number; bare: number };
  scaleOut: Array<{ processes: number; throughput: number; efficiency: number; ofCeiling: number }>;
  redis: { perJobBytes: number; perJobKeys: number };
  checkpoint: {
    /** src's save costs clearly more than one Buffer write: it still sends a string. */
    stringWrite: boolean;
    /** The shipped worker sends about a whole image to Redis per job when delivery succeeds. */
    writesOnHotPath: boolean;
    sentKbPerJob: { bare: number; worker: number; fix: number; none: number };
  };
}

function figures(res: BenchResults): Figures {
  const { rounds } = res.overhead;
  const bares = rounds.map((r) => r.bare);
  const workers = rounds.map((r) => r.worker);
  const fixes = rounds.map((r) => r.fix);
  const cpu = { bare: consumerCpu(bares), worker: consumerCpu(workers), fix: consumerCpu(fixes), none: consumerCpu(rounds.map((r) => r.noCheckpoint)) };
  const ceiling = (res.plan.concurrency * 1000) / res.plan.latency.delayMs;
  const cycle = (r: RunResult): number => (res.plan.concurrency * r.activeMs) / Math.max(r.jobs, 1);
  const growth = (r: RunResult): number => {
    const snaps = r.memory.snapshots;
    const last = res.plan.memory.batches.at(-1) ?? 1;
    return snaps.length >= 3 ? (snaps[snaps.length - 1].heapUsed - snaps[snaps.length - 2].heapUsed) / last : NaN;
  };
  const single = res.scaleOut[0]?.throughput ?? 0;
  const workerRuns = [...workers, ...fixes, res.latency.worker, res.memory.worker, res.memory.fix, ...res.scaleOut];
  return {
    overhead: {
      ratio: median(rounds.map((r) => r.worker.throughput / r.bare.throughput)),
      fixRatio: median(rounds.map((r) => r.fix.throughput / r.bare.throughput)),
      cpuRatio: cpu.bare / cpu.worker,
      fixCpuRatio: cpu.bare / cpu.fix,
      throughput: { bare: median(bares.map((r) => r.throughput)), worker: median(workers.map((r) => r.throughput)), fix: median(fixes.map((r) => r.throughput)) },
      cpu,
      busy: {
        bare: mean(bares.map((r) => r.usage.loopBusy.consumers)),
        worker: mean(workers.map((r) => r.usage.loopBusy.consumers)),
        fix: mean(fixes.map((r) => r.usage.loopBusy.consumers)),
      },
      relayCpu: mean([...bares, ...workers].map((r) => cpuPerJob(r).relay)),
      otherCores: mean([...bares, ...workers, ...fixes].map(otherCores)),
    },
    latency: {
      ceiling,
      ratio: res.latency.worker.throughput / ceiling,
      bareRatio: res.latency.bare.throughput / ceiling,
      cycleMs: cycle(res.latency.worker),
      bareCycleMs: cycle(res.latency.bare),
    },
    memory: {
      peakRatio: res.memory.worker.memory.peakRss / res.memory.bare.memory.peakRss,
      fixPeakRatio: res.memory.fix.memory.peakRss / res.memory.bare.memory.peakRss,
      growthPerJob: growth(res.memory.worker),
      fixGrowthPerJob: growth(res.memory.fix),
      bareGrowthPerJob: growth(res.memory.bare),
    },
    leak: { worker: heapSlope(res.leak.worker), bare: heapSlope(res.leak.bare) },
    scaleOut: res.scaleOut.map((r) => ({
      processes: r.spec.processes,
      throughput: r.throughput,
      efficiency: single > 0 ? r.throughput / (r.spec.processes * single) : 0,
      ofCeiling: r.throughput / (r.spec.processes * ceiling),
    })),
    checkpoint: (() => {
      const sent = (runs: RunResult[]): number => mean(runs.map((r) => r.redis.inputBytesPerJob)) / 1000;
      const sentKbPerJob = { bare: sent(bares), worker: sent(workers), fix: sent(fixes), none: sent(rounds.map((r) => r.noCheckpoint)) };
      const micro = res.overhead.checkpointWrite[0];
      return {
        stringWrite: micro !== undefined && micro.shippedUs > 1.3 * micro.bufferUs,
        writesOnHotPath: sentKbPerJob.worker - sentKbPerJob.none > (res.plan.overhead.imageBytes * 1.33) / 2000,
        sentKbPerJob,
      };
    })(),
    redis: {
      perJobBytes: Math.max(...workerRuns.map((r) => r.redis.perJobBytes)),
      perJobKeys: Math.max(...workerRuns.map((r) => r.redis.perJobKeys)),
    },
  };
}

/** The goals table, as printed at the end of a run and at the top of results.md. */
export function renderSummaryTable(res: BenchResults): string {
  const f = figures(res);
  const o = f.overhead;
  const rows = [
    ['Overhead: worker jobs/s / bare jobs/s (200 KB, API at once, C=20)', `${n2(o.ratio)} (${n1(o.throughput.worker)} vs ${n1(o.throughput.bare)} jobs/s, median of ${res.overhead.rounds.length})`, `>= ${GOALS.overhead}`, verdict(o.ratio >= GOALS.overhead)],
    ['Overhead, CPU: bare CPU per job / worker CPU per job', `${n2(o.cpuRatio)} (${n2(o.cpu.bare)} vs ${n2(o.cpu.worker)} ms/job)`, `>= ${GOALS.overhead}`, verdict(o.cpuRatio >= GOALS.overhead)],
    ['Latency-bound: jobs/s / C/L ceiling (300 ms API, C=20)', `${n2(f.latency.ratio)} (${n1(res.latency.worker.throughput)} of ${n1(f.latency.ceiling)} jobs/s)`, `>= ${GOALS.latency}`, verdict(f.latency.ratio >= GOALS.latency)],
    ['Memory: peak RSS worker / bare (1 MB images, C=20)', `${n2(f.memory.peakRatio)} (${MB(res.memory.worker.memory.peakRss)} vs ${MB(res.memory.bare.memory.peakRss)} MB)`, `<= ${GOALS.peakRss}`, verdict(f.memory.peakRatio <= GOALS.peakRss)],
    [`Memory: heap kept after a full GC, growth per job (${res.leak.worker.jobs} small jobs in ${res.leak.worker.spec.batches.length} batches)`, fmtGrowth(f.leak.worker), `<= ${GOALS.growthBytesPerJob} B/job`, verdict(!(f.leak.worker > GOALS.growthBytesPerJob))],
    ...f.scaleOut
      .filter((s) => s.processes > 1)
      .map((s) => [`Scale-out: ${s.processes} processes, jobs/s / (${s.processes} x 1 process)`, `${n2(s.efficiency)} (${n1(s.throughput)} jobs/s)`, `>= ${GOALS.scaleOut}`, verdict(s.efficiency >= GOALS.scaleOut)]),
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
    `Written by \`npm run bench\`${res.plan.quick ? ' with BENCH_QUICK=1' : ''}${res.overhead.withBufferutil ? ' with BENCH_NODE_PATH set (the "+ bufferutil" rows)' : ''} on ${res.date.slice(0, 10)} (${res.date.slice(11, 16)} UTC); the run took ${(res.durationS / 60).toFixed(1)} min.`,
    '',
    table(['machine', ''], [
      ['CPUs (nproc)', String(m.cpus)],
      ['model', m.model],
      ['RAM', `${m.memoryGb} GB`],
      ['OS', m.os],
      ['node', m.node],
      ['redis-server', m.redis],
      ['code measured', m.source],
    ]),
    '',
    'Everything runs on this one machine: a private redis-server on a free port, a local server speaking xAI\'s images',
    'contract (its answers encoded once, sent as one buffer), the socket.io relay of `src/demo` in its own process, and',
    'each consumer in its own process. Jobs are queued exactly as the front end queues them (`attempts: 1,',
    'removeOnComplete, removeOnFail`, a real HS256 token) while the queue is paused; the clock starts when it is',
    'resumed and stops at the last final notification the relay receives. "bare" is the same three steps (jsonwebtoken,',
    'node-fetch, socket.io-client emit, on a Bull consumer) and nothing else. "worker + fix" is the worker with the',
    `checkpoint written as one Buffer, swapped in by the benchmark (\`bench/checkpointVariants.ts\`${f.checkpoint.stringWrite ? ', proposed below' : '; src/ now writes it that way itself'});`,
    'the benchmark never edits src/.',
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

  push('## Overhead', '', table(RUN_HEADER, [
    ...res.overhead.rounds.flatMap((r, i) => [
      runRow(`bare, round ${i + 1}`, r.bare),
      runRow(`worker, round ${i + 1}`, r.worker),
      runRow(`worker + fix, round ${i + 1}`, r.fix),
      runRow(`worker without checkpoints (what-if), round ${i + 1}`, r.noCheckpoint),
    ]),
    ...(res.overhead.withBufferutil
      ? [
          runRow('bare + bufferutil', res.overhead.withBufferutil.bare),
          runRow('worker + bufferutil', res.overhead.withBufferutil.worker),
          runRow('worker + fix + bufferutil', res.overhead.withBufferutil.fix),
        ]
      : []),
  ]), '');
  push(
    `**What limits it.** Each consumer is a single event loop, and with the API answering at once it has all the work`,
    `it can take: loops were busy ${pct(o.busy.bare)} (bare), ${pct(o.busy.worker)} (worker) and ${pct(o.busy.fix)} (worker + fix) of the`,
    `time. So jobs/s is about 1000 / (CPU ms per job), times the share of a core the process got while sharing 2 cores`,
    `with the relay (${n2(o.relayCpu)} ms of CPU per job to parse and re-broadcast each 270 KB message), the API server,`,
    `redis-server and whatever else ran. The worker spends ${n2(o.cpu.worker)} ms of CPU per job against ${n2(o.cpu.bare)} ms for bare`,
    `(+${n2(o.cpu.worker - o.cpu.bare)} ms).`,
    ...(f.checkpoint.writesOnHotPath
      ? [
          `It sends ${n1(f.checkpoint.sentKbPerJob.worker)} KB to Redis per job (bare: ${n1(f.checkpoint.sentKbPerJob.bare)} KB): every image is checkpointed before it is`,
          `delivered. Without image checkpoints (what-if) it would spend ${n2(o.cpu.none)} ms, so they cost ${n2(o.cpu.worker - o.cpu.none)} ms per job as shipped and`,
          `${n2(o.cpu.fix - o.cpu.none)} ms written as one Buffer (worker + fix, ${n2(o.cpu.fix)} ms).`,
        ]
      : [
          `It sends ${n1(f.checkpoint.sentKbPerJob.worker)} KB to Redis per job (bare: ${n1(f.checkpoint.sentKbPerJob.bare)} KB): no image is written when delivery`,
          `succeeds, so the checkpoint variants cost the same within noise (${n2(o.cpu.fix)} and ${n2(o.cpu.none)} ms).`,
        ]),
    f.checkpoint.writesOnHotPath
      ? `What remains, ${n2(o.cpu.none - o.cpu.bare)} ms per job, is the rest of what the contract asks for: the progress event, the job's`
      : `What it adds, ${n2(o.cpu.worker - o.cpu.bare)} ms per job, is the rest of what the contract asks for: the progress event, the job's`,
    `other Redis bookkeeping, the job-end log line with redaction, validation, a timer and an AbortController per`,
    `request. The CPU ratio is the steadier figure: jobs/s moves with the other load on the machine from run to run.`,
    '',
    `The checkpoint write alone, 20 in flight, CPU of the writing process per save (and its DEL):`,
    '',
    table(
      ['image', "src's save, µs", 'one Buffer, µs'],
      res.overhead.checkpointWrite.map((c) => [`${c.imageBytes / 1000} KB`, c.shippedUs.toFixed(0), c.bufferUs.toFixed(0)]),
    ),
    '',
  );
  if (res.overhead.withBufferutil) {
    const b = res.overhead.withBufferutil;
    push(
      `With \`bufferutil\` on the module path (BENCH_NODE_PATH), ws masks frames natively: CPU per job ${n2(cpuPerJob(b.bare).consumers)} ms`,
      `(bare), ${n2(cpuPerJob(b.worker).consumers)} ms (worker), ${n2(cpuPerJob(b.fix).consumers)} ms (worker + fix).`,
      '',
    );
  }

  const lw = res.latency.worker;
  push('## Latency-bound', '', table([...RUN_HEADER, 'of C/L ceiling'], [
    [...runRow('worker', lw), n2(f.latency.ratio)],
    [...runRow('bare', res.latency.bare), n2(f.latency.bareRatio)],
  ]), '');
  const log = lw.workerLog;
  push(
    `**What limits it.** Each of the 20 slots turns over one job per API answer plus the job's own work plus Bull's`,
    `move-to-completed and fetch of the next job. Measured per slot: ${n1(f.latency.cycleMs)} ms per job (worker) and ${n1(f.latency.bareCycleMs)} ms`,
    `(bare), against the API's ${res.plan.latency.delayMs} ms; the goal allows ${n1((res.plan.latency.delayMs / GOALS.latency))} ms.${log ? ` The worker's job-end lines put a job at ${n1(log.meanDurationMs)} ms (token ${n1(log.meanStepsMs.token)}, generate ${n1(log.meanStepsMs.generate)}, notify ${n1(log.meanStepsMs.notify)} ms); the other ${n1(f.latency.cycleMs - log.meanDurationMs)} ms is between jobs.` : ''}`,
    `The stand-in answers every request after exactly ${res.plan.latency.delayMs} ms, so the 20 slots stay in step: their answers come`,
    `together and are handled one after another (by the API server, then on the consumer's one event loop and Redis connection); a slot`,
    `waits for its place in a burst of 20 jobs' work (${n2(cpuPerJob(lw).consumers)} ms of CPU per job for the worker, ${n2(cpuPerJob(res.latency.bare).consumers)} ms for bare, spent as`,
    `wakeups, Redis round trips and emits rather than as throughput). So the figure moves with the consumer's CPU per job and`,
    `by a few ms from run to run; a real API's varying latency spreads the bursts out. The CPU (${n2(ourCores(lw))} cores used) and Redis`,
    `are far from their limits; HTTP keep-alive serves ${lw.api.requests} requests on ${lw.api.connections} connections.`,
    '',
  );

  const mem = res.memory;
  const snapshotRow = (label: string, r: RunResult): string[] => {
    const s = r.memory.snapshots;
    const peak = s.at(-1)?.peak;
    return [
      label,
      String(r.jobs),
      MB(r.memory.peakRss),
      peak ? MB(peak.heapTotal) : '',
      peak ? MB(peak.external) : '',
      s.map((x) => MB(x.rss)).join(' / '),
      s.map((x) => n1(x.heapUsed / 1e6)).join(' / '),
      n2(cpuPerJob(r).consumers),
      n2(otherCores(r)),
    ];
  };
  const batches = res.plan.memory.batches;
  push(
    '## Memory',
    '',
    `1 MB images (1.33 MB of base64), C=20, an API taking ${res.plan.memory.delayMs} ms so that neither the consumer nor the relay is saturated. Memory after`,
    `a full GC is read before the first batch and after each batch of ${batches.join(' + ')} jobs.`,
    '',
    table(
      ['run', 'jobs', 'peak RSS MB (VmHWM)', 'peak V8 heap MB', 'peak external MB', 'RSS after GC MB: before / after each batch', 'heap used after GC MB', 'consumer CPU ms/job', 'other load (cores)'],
      [snapshotRow('bare', mem.bare), snapshotRow('worker', mem.worker), snapshotRow('worker + fix', mem.fix)],
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
    `Saturated (the API answers at once), for comparison; not the goal's setting:`,
    '',
    table(
      ['run', 'jobs', 'peak RSS MB (VmHWM)', 'peak V8 heap MB', 'peak external MB', 'RSS after GC MB: before / after', 'heap used after GC MB', 'consumer CPU ms/job', 'other load (cores)'],
      [
        snapshotRow('bare', mem.saturated.bare),
        snapshotRow('worker', mem.saturated.worker),
        snapshotRow('worker + fix', mem.saturated.fix),
        snapshotRow(`worker, relay frozen ${res.plan.memory.stall.forMs / 1000} s`, mem.stalledRelay),
      ],
    ),
    '',
    `**What limits it.** The peak is how many copies of an image are alive at once, times 20 jobs, plus garbage not yet`,
    `collected. Bare holds the HTTP body, its decoded text, the parsed base64 and the emitted frame.`,
    ...(!f.checkpoint.writesOnHotPath
      ? [`The worker writes no image to Redis when delivery succeeds, so it holds the same copies; the rest is GC timing.`]
      : f.checkpoint.stringWrite
        ? [
            `The worker also writes every image to Redis before notifying: the value string (header + image) is flattened by`,
            `ioredis into the RESP command, flattened again, and UTF-8-encoded into a third copy for the socket.`,
          ]
        : [`The worker also writes every image to Redis before notifying, as one Buffer that ioredis copies once more.`]),
    `Peak V8 heap: ${MB(peakOf(mem.worker).heapTotal)} MB (worker) against ${MB(peakOf(mem.bare).heapTotal)} MB (bare); peak external: ${MB(peakOf(mem.worker).external)} against ${MB(peakOf(mem.bare).external)} MB.`,
    ...(f.checkpoint.writesOnHotPath && f.checkpoint.stringWrite
      ? [
          `With the checkpoint written as one Buffer the peak is ${MB(mem.fix.memory.peakRss)} MB (${n2(f.memory.fixPeakRatio)}x bare): the heap copies go, one`,
          `off-heap copy remains (ioredis concatenates a Buffer command once).`,
        ]
      : [`The "worker + fix" row runs the same write as "worker" here: the difference between them is run-to-run variation.`]),
    `RSS after the run stays above RSS before because`,
    `the allocator keeps freed pages and the first jobs warm up code and connection buffers; what would show a leak is heap`,
    `used after a full GC climbing from batch to batch. Over the 1 MB batches it moved ${fmtGrowth(f.memory.growthPerJob)} (worker), ${fmtGrowth(f.memory.fixGrowthPerJob)}`,
    `(worker + fix), ${fmtGrowth(f.memory.bareGrowthPerJob)} (bare), warm-up included; over the small-job batches the slope is ${fmtGrowth(f.leak.worker)} for the worker.`,
    `Saturated, the peak also depends on whether the relay keeps up: socket.io emits without backpressure, so frames the`,
    `relay has not read yet wait in the consumer's memory ("peak external"). Freezing the relay for ${res.plan.memory.stall.forMs / 1000} s (a stalled`,
    `notification service) shows it: the worker kept taking jobs and the peak went to ${MB(mem.stalledRelay.memory.peakRss)} MB (peak external`,
    `${MB(peakOf(mem.stalledRelay).external)} MB) against ${MB(mem.saturated.worker.memory.peakRss)} MB without the stall.`,
    '',
  );

  push('## Scale-out', '', table(
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
  ), '');
  const last = res.scaleOut.at(-1);
  push(
    `**What limits it.** With a 300 ms API each process is latency-bound (its own ceiling is ${n1(f.latency.ceiling)} jobs/s) and they share`,
    `nothing but Redis and the relay, so throughput adds up as long as the machine has CPU to spare: at ${last?.spec.processes ?? '?'} processes`,
    `the system used ${last ? n2(ourCores(last)) : '?'} of 2 cores. Bull hands each job to one process (no repeated notification was seen).`,
    '',
  );

  const lat = res.latency.worker.redis;
  push(
    '## Redis footprint',
    '',
    `After each run (consumers stopped) every key under the queue's prefix is listed with \`MEMORY USAGE\`. Keys of a job`,
    `(its hash, lock, logs, the worker's checkpoint and owner record) and entries left in wait/active/completed/failed`,
    `count as left by jobs.`,
    `Largest over all worker runs: ${n1(f.redis.perJobBytes)} bytes and ${n2(f.redis.perJobKeys)} keys per job. The producer asked Bull to keep`,
    `nothing (removeOnComplete, removeOnFail), so that is the goal. What stays is per queue, not per job (latency run):`,
    '',
    table(['key', 'type', 'bytes'], lat.keys.map((k) => [`\`${k.key.replace(/bull:[^:]+:/, 'bull:<queue>:')}\``, k.type, String(k.bytes)])),
    '',
    `\`used_memory\` moved by ${n1(lat.usedMemoryDeltaPerJob)} bytes per job over the same run (allocator noise; no keys behind it).`,
    '',
  );

  push('## Profile', '');
  push(
    `\`node --cpu-prof\` on each consumer in the overhead setting (${res.plan.profileJobs} jobs of 200 KB), counting only samples taken while jobs ran.`,
    `Self time is time in the function itself; "on behalf of" is the nearest package or project function above it,`,
    `which names native entries such as \`writeUtf8String\`. Samples are wall-clock: on a shared machine time spent`,
    `waiting for a core lands on whatever was running, so the profile says where to look and the variant runs above`,
    `(CPU from /proc) say how much a change saves. Profiles: \`bench/.tmp/profiles/\`; summarise one with`,
    '`node bench/.tmp/build/bench/profileSummary.js <file>`.',
    '',
  );
  for (const kind of ['worker', 'bare'] as const) {
    const p = res.profile[kind];
    if (p.summary) push(formatSummary(p.summary, `### ${kind}`), '');
  }

  push(...findings(res, f));
  push(
    '## How to run',
    '',
    '```',
    'npm ci',
    'npm run bench                 # full run, a few minutes on 2 cores; writes bench/results.md',
    'BENCH_QUICK=1 npm run bench   # smoke run, about a minute; writes bench/.tmp/results-quick.md',
    'BENCH_NODE_PATH=/path/to/node_modules npm run bench   # adds runs with bufferutil found there',
    '```',
    '',
    'Needs `redis-server` on PATH (a private one is started on a free port; the machine\'s Redis is never touched).',
    'Logs of every consumer, the raw figures (`results.json`) and the CPU profiles are kept in `bench/.tmp/`.',
    '',
  );
  return out.join('\n');
}

function microLine(costs: CheckpointWriteCost[]): string {
  return costs.map((c) => `${c.shippedUs.toFixed(0)} µs as src writes it against ${c.bufferUs.toFixed(0)} µs as one Buffer at ${c.imageBytes / 1000} KB`).join(', ');
}

function peakOf(r: RunResult): { rss: number; heapTotal: number; heapUsed: number; external: number } {
  return r.memory.snapshots.at(-1)?.peak ?? { rss: 0, heapTotal: 0, heapUsed: 0, external: 0 };
}

function fmtGrowth(bytesPerJob: number): string {
  return Number.isNaN(bytesPerJob) ? 'n/a' : `${bytesPerJob >= 0 ? '+' : ''}${n1(bytesPerJob)} B/job`;
}

function collectRuns(res: BenchResults): RunResult[] {
  const o = res.overhead;
  return [
    ...o.rounds.flatMap((r) => [r.bare, r.worker, r.fix, r.noCheckpoint]),
    ...(o.withBufferutil ? [o.withBufferutil.bare, o.withBufferutil.worker, o.withBufferutil.fix] : []),
    res.latency.worker,
    res.latency.bare,
    res.memory.bare,
    res.memory.worker,
    res.memory.fix,
    res.memory.saturated.bare,
    res.memory.saturated.worker,
    res.memory.saturated.fix,
    res.memory.stalledRelay,
    res.leak.worker,
    res.leak.bare,
    ...res.scaleOut,
    res.profile.worker.run,
    res.profile.bare.run,
  ];
}

function findings(res: BenchResults, f: Figures): string[] {
  const o = f.overhead;
  const mem = res.memory;
  const workerProfile = res.profile.worker.summary;
  const share = (fn: (s: SelfTime) => boolean): number =>
    workerProfile ? workerProfile.functions.filter(fn).reduce((sum, s) => sum + s.share, 0) : 0;
  const checkpointWrite = share((s) => /^(writeUtf8String|\(anonymous\))/.test(s.name) && (s.mainCaller ?? '').includes('ioredis'));
  const masking = share((s) => s.name.startsWith('_mask '));
  const redact = workerProfile?.areas.find((a) => a.name === '@pinojs/redact');
  const withBu = res.overhead.withBufferutil;
  const lines = [
    '## Findings in src/ (proposed, not applied)',
    '',
    ...(f.checkpoint.stringWrite
      ? [
          `1. **The checkpoint is written as a string** (\`${lineOf('src/checkpointStore.ts', 'await this.redis.set(')}\`). The value`,
          '   `${JSON.stringify(header)}\\n${image.base64}` is a rope; ioredis measures it (`Buffer.byteLength`), concatenates it into',
          '   the RESP command (another rope), and the socket write flattens and UTF-8-encodes that into a third copy',
          `   (\`writeUtf8String\`): ${pct(checkpointWrite)} of the worker's busy time in the profile. One save costs ${microLine(res.overhead.checkpointWrite)}.`,
          `   In the pipeline: ${n2(o.cpu.worker)} -> ${n2(o.cpu.fix)} ms of CPU per 200 KB job, and peak RSS at 1 MB ${MB(mem.worker.memory.peakRss)} -> ${MB(mem.fix.memory.peakRss)} MB`,
          `   (bare: ${MB(mem.bare.memory.peakRss)} MB). Fix: build one Buffer (header as UTF-8, the base64 as latin1, a plain byte copy since`,
          '   base64 is ASCII), `set` that, and read with `getBuffer` (header up to the first `\\n` as UTF-8, the rest as latin1).',
          '   The bytes in Redis are the same, so checkpoints written before the change still load. The code is',
          '   `saveAsBuffer`/`loadFromBuffer` in `bench/checkpointVariants.ts`, which the "worker + fix" rows run.',
        ]
      : [
          `1. Checked: src/checkpointStore.ts already writes the checkpoint as one Buffer (one save: ${microLine(res.overhead.checkpointWrite)}).`,
        ]),
    `2. **ws masks every outgoing frame in JavaScript** (\`_mask\` in ws/lib/buffer-util.js, ${pct(masking)} of the worker's busy time):`,
    '   a socket.io client must mask what it sends, and ws does it natively only when the optional `bufferutil` package',
    '   is installed. Fix: add `bufferutil` to dependencies (package.json, no code change; it ships prebuilt binaries).',
    withBu
      ? `   Measured here (200 KB): ${n2(o.cpu.worker)} -> ${n2(cpuPerJob(withBu.worker).consumers)} ms of CPU per job for the worker, ${n2(cpuPerJob(withBu.fix).consumers)} ms with fix 1 as well (bare: ${n2(o.cpu.bare)} -> ${n2(cpuPerJob(withBu.bare).consumers)} ms).`
      : '   Run with BENCH_NODE_PATH pointing at a node_modules holding bufferutil to measure it.',
    `3. **Notifications have no backpressure** (\`${lineOf('src/socketNotifier.ts', 'tryDeliver(event', 'private async emit(')}\`). With`,
    '   NOTIFY_ACK_TIMEOUT_MS=0 (the default) the emit returns at once, so when the notification service reads slower',
    '   than the worker produces, the frames wait in the worker\'s memory without bound. With the relay frozen for',
    `   ${res.plan.memory.stall.forMs / 1000} s at 1 MB, the worker's peak RSS went from ${MB(mem.saturated.worker.memory.peakRss)} to ${MB(mem.stalledRelay.memory.peakRss)} MB (peak external ${MB(peakOf(mem.stalledRelay).external)} MB) while`,
    `   its job-end lines kept reporting the notify step as done (${n1(mem.stalledRelay.workerLog?.meanStepsMs.notify ?? 0)} ms on average). Fix: before emitting, wait (cancellable, within`,
    '   NOTIFY_MAX_WAIT_MS) while the engine\'s unsent bytes are above a budget, e.g. a few MB read from',
    '   `socket.io.engine.transport.ws.bufferedAmount` on the websocket transport; or turn acknowledgements on where the',
    '   service supports them.',
  ];
  if (redact) {
    lines.push(
      `4. Minor: pino's redaction (\`${lineOf('src/logger.ts', 'redact:')}\`, wildcard paths on every line) is ${pct(redact.share)} of the worker's`,
      '   busy time here; it is the second line of defence for secrets, so it is a cost to know rather than to remove.',
    );
  }
  lines.push('');
  return lines;
}
