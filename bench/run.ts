import fs from 'node:fs';
import path from 'node:path';
import { baselineRev, Build, buildBaseline, buildCurrent } from './builds';
import { runCapacity } from './capacity';
import { measureCheckpointWrite } from './checkpointMicro';
import { measureRun, RunResult, RunSpec, TMP_DIR } from './measureRun';
import { FULL, Plan, QUICK, spec, WHAT_IF, WhatIf } from './plan';
import { machineInfo } from './procStats';
import { summariseProfile } from './profileSummary';
import { BenchResults, renderReport, renderSummaryTable } from './report';
import { runStorybang } from './storybang';
import { BenchSystem, startSystem } from './system';

type Say = (line: string) => void;

const PARTS = ['classic', 'capacity', 'storybang'] as const;
type Run = (s: RunSpec) => Promise<RunResult>;

/**
 * `npm run bench`: every scenario in one run, on a private Redis, a local xAI-contract server and socket.io relays;
 * prints the goals table and writes the figures under bench/.tmp/ (generated, never committed): figures.md for a
 * full run, figures-quick.md for BENCH_QUICK=1, with `-<BENCH_ONLY>` added when only some scenarios ran.
 * BENCH_ONLY picks parts, comma-separated: classic, capacity (issue 9), storybang ("StoryBang at xAI's real speed").
 * Without it, classic and capacity run; storybang runs only when asked for (it takes about 25 minutes by itself).
 */
async function main(): Promise<void> {
  const plan: Plan = process.env.BENCH_QUICK === '1' ? QUICK : FULL;
  const only = process.env.BENCH_ONLY || undefined;
  const parts = only ? only.split(',').map((p) => p.trim()) : ['classic', 'capacity'];
  const unknown = parts.filter((p) => !(PARTS as readonly string[]).includes(p));
  if (unknown.length > 0) throw new Error(`BENCH_ONLY takes ${PARTS.join(', ')} (comma-separated), not ${unknown.join(', ')}`);
  const say: Say = (line) => void process.stdout.write(`${line}\n`);
  const startedAt = Date.now();
  const machine = machineInfo();
  say(`bench: ${plan.quick ? 'quick' : 'full'} run${only ? ` (${only} only)` : ''} on ${machine.cpus} x ${machine.model}, node ${machine.node}`);

  const system = await startSystem(TMP_DIR);
  const run: Run = async (s) => {
    const result = await measureRun(system, s, say);
    say(`  ${s.name}: ${result.throughput.toFixed(1)} jobs/s${result.error ? ` (${result.error})` : ''}`);
    return result;
  };
  const results: BenchResults = { plan, machine, bufferutil: bufferutilVersion(), date: new Date().toISOString(), durationS: 0, only };
  let current: Build | undefined;
  const currentBuild = (): Build => {
    if (!current) say('building the current tree (npm run build)');
    return (current ??= buildCurrent());
  };
  try {
    if (parts.includes('classic')) await classic(results, run, system, say);
    if (parts.includes('capacity')) {
      const builds: Build[] = [];
      const rev = baselineRev();
      if (rev) {
        say(`building the baseline ${rev} into bench/.tmp/baseline`);
        builds.push(buildBaseline(TMP_DIR, rev));
      }
      builds.push(currentBuild());
      results.capacity = await runCapacity(system, builds, plan.capacity, TMP_DIR, say);
    }
    if (parts.includes('storybang')) {
      const builds: Build[] = [];
      const before = process.env.BENCH_STORYBANG_BEFORE;
      if (before) {
        say(`building ${before} into bench/.tmp/baseline, to run the StoryBang scenarios before and after`);
        builds.push({ ...buildBaseline(TMP_DIR, before), label: 'before' });
      }
      builds.push(currentBuild());
      results.storybang = await runStorybang(system, builds, plan.storybang, TMP_DIR, say);
    }
  } finally {
    await system.close();
  }
  results.durationS = (Date.now() - startedAt) / 1000;

  const name = `figures${plan.quick ? '-quick' : ''}${only ? `-${parts.join('-')}` : ''}`;
  const out = path.join(TMP_DIR, `${name}.md`);
  // The figures first: a report that fails to render can be rendered again from them (report.ts is also a tool).
  fs.writeFileSync(path.join(TMP_DIR, `${name}.json`), JSON.stringify(results, null, 2));
  fs.writeFileSync(out, renderReport(results));
  say('');
  say(renderSummaryTable(results));
  say('');
  say(`written to ${path.relative(process.cwd(), out)} (${results.durationS.toFixed(0)} s)`);
}

/** The scenarios of the first benchmark issue: the worker (in-process child) against bare, what-ifs, memory, scale-out, profile. */
async function classic(results: BenchResults, run: Run, system: BenchSystem, say: Say): Promise<void> {
  const { plan } = results;
  const C = plan.concurrency;
  say('overhead: 200 KB images, an API that answers at once');
  const o = plan.overhead;
  const overheadRun = (name: string, kind: RunSpec['kind'], env: Record<string, string> | undefined, round: number): Promise<RunResult> =>
    run(spec(`overhead-${name}-r${round + 1}`, kind, { concurrency: C, batches: [o.jobs], imageBytes: o.imageBytes, delayMs: 0, env }));
  const rounds: NonNullable<BenchResults['overhead']>['rounds'] = [];
  for (let r = 0; r < o.rounds; r++) {
    // Alternate the order so neither consumer always runs right after the other has warmed the system.
    const order = ['bare', 'worker', ...(Object.keys(WHAT_IF) as WhatIf[])];
    const round: Partial<Record<'bare' | 'worker', RunResult>> = {};
    const whatIf: Partial<Record<WhatIf, RunResult>> = {};
    for (const which of r % 2 === 0 ? order : [...order].reverse()) {
      if (which === 'bare' || which === 'worker') round[which] = await overheadRun(which, which, undefined, r);
      else whatIf[which as WhatIf] = await overheadRun(`worker-${which}`, 'worker', { ...WHAT_IF[which as WhatIf] }, r);
    }
    rounds.push({ bare: round.bare!, worker: round.worker!, whatIf: whatIf as Record<WhatIf, RunResult> });
  }
  say("checkpoint write alone: src's save and forget, as a job whose delivery waits pays them");
  const checkpointWrite = [];
  for (const { imageBytes, saves } of plan.checkpointWrite) {
    const cost = await measureCheckpointWrite(system.redisServer.url, imageBytes, saves);
    say(`  ${imageBytes / 1000} KB: ${cost.saveUs.toFixed(0)} us of CPU per save`);
    checkpointWrite.push(cost);
  }
  results.overhead = { rounds, checkpointWrite };

  say('latency-bound: small images, a 300 ms API');
  const l = plan.latency;
  const latencyRun = (kind: RunSpec['kind']): Promise<RunResult> =>
    run(spec(`latency-${kind}`, kind, { concurrency: C, batches: [l.jobs], imageBytes: l.imageBytes, delayMs: l.delayMs }));
  results.latency = { worker: await latencyRun('worker'), bare: await latencyRun('bare') };

  say('memory: 1 MB images');
  const m = plan.memory;
  const memoryRun = (name: string, kind: RunSpec['kind']): Promise<RunResult> =>
    run(spec(`memory-${name}`, kind, { concurrency: C, batches: m.batches, imageBytes: m.imageBytes, delayMs: m.delayMs }));
  const saturatedRun = (kind: RunSpec['kind']): Promise<RunResult> =>
    run(spec(`memory-saturated-${kind}`, kind, { concurrency: C, batches: [m.saturatedJobs], imageBytes: m.imageBytes, delayMs: 0 }));
  const stalledRun = (kind: RunSpec['kind']): Promise<RunResult> =>
    run(
      spec(`memory-stalled-relay-${kind}`, kind, {
        concurrency: C,
        batches: [m.stall.jobs],
        imageBytes: m.imageBytes,
        delayMs: 0,
        stallRelay: { afterMs: m.stall.afterMs, forMs: m.stall.forMs },
      }),
    );
  results.memory = {
    bare: await memoryRun('bare', 'bare'),
    worker: await memoryRun('worker', 'worker'),
    saturated: { bare: await saturatedRun('bare'), worker: await saturatedRun('worker') },
    stalledRelay: { worker: await stalledRun('worker'), bare: await stalledRun('bare') },
  };

  say('growth: small jobs in batches, heap after a full GC between them');
  const leakRun = (kind: RunSpec['kind']): Promise<RunResult> =>
    run(spec(`growth-${kind}`, kind, { concurrency: C, batches: plan.leak.batches, imageBytes: plan.leak.imageBytes, delayMs: 0 }));
  results.leak = { worker: await leakRun('worker'), bare: await leakRun('bare') };

  say('scale-out: worker processes on one Redis, a 300 ms API');
  const so = plan.scaleOut;
  results.scaleOut = [];
  for (const n of so.processes) {
    results.scaleOut.push(
      await run(
        spec(`scale-${n}`, 'worker', { processes: n, concurrency: C, batches: [so.jobsPerProcess * n], imageBytes: so.imageBytes, delayMs: so.delayMs }),
      ),
    );
  }

  say('profile: node --cpu-prof, overhead settings');
  const profileRun = (kind: RunSpec['kind']): Promise<RunResult> =>
    run(spec(`profile-${kind}`, kind, { concurrency: C, batches: [plan.profileJobs], imageBytes: o.imageBytes, delayMs: 0, profile: true }));
  const profiled = { worker: await profileRun('worker'), bare: await profileRun('bare') };
  // More rows than the report shows, so that the worker-minus-bare comparison sees every package that matters.
  const summarise = (r: RunResult) => (r.profiles[0] && fs.existsSync(r.profiles[0]) ? summariseProfile(r.profiles[0], 40, r.window) : undefined);
  results.profile = {
    worker: { run: profiled.worker, summary: summarise(profiled.worker) },
    bare: { run: profiled.bare, summary: summarise(profiled.bare) },
  };
}

/** bufferutil as the consumers resolve it from this repository (ws uses it for masking when it loads). */
function bufferutilVersion(): string | null {
  try {
    return (JSON.parse(fs.readFileSync(require.resolve('bufferutil/package.json'), 'utf8')) as { version: string }).version;
  } catch {
    return null;
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`bench failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exit(1);
});
