import fs from 'node:fs';
import path from 'node:path';
import { measureCheckpointWrite } from './checkpointMicro';
import { measureRun, RunResult, RunSpec, TMP_DIR } from './measureRun';
import { FULL, Plan, QUICK, spec, WHAT_IF } from './plan';
import { machineInfo } from './procStats';
import { summariseProfile } from './profileSummary';
import { BenchResults, renderReport, renderSummaryTable } from './report';
import { startSystem } from './system';

/**
 * `npm run bench`: every scenario of the benchmark issue in one run, on a private Redis, a local xAI-contract
 * server and a socket.io relay; prints the goals table and writes bench/results.md (a quick run writes
 * bench/.tmp/results-quick.md, so it never replaces the full figures).
 */
async function main(): Promise<void> {
  const plan: Plan = process.env.BENCH_QUICK === '1' ? QUICK : FULL;
  const say = (line: string): void => void process.stdout.write(`${line}\n`);
  const startedAt = Date.now();
  const machine = machineInfo();
  say(`bench: ${plan.quick ? 'quick' : 'full'} run on ${machine.cpus} x ${machine.model}, node ${machine.node}`);

  const system = await startSystem(TMP_DIR);
  const run = async (s: RunSpec): Promise<RunResult> => {
    const result = await measureRun(system, s, say);
    say(`  ${s.name}: ${result.throughput.toFixed(1)} jobs/s${result.error ? ` (${result.error})` : ''}`);
    return result;
  };
  const C = plan.concurrency;
  let results: BenchResults;
  try {
    say('overhead: 200 KB images, an API that answers at once');
    const o = plan.overhead;
    const overheadRun = (name: string, kind: RunSpec['kind'], env: Record<string, string> | undefined, round: number): Promise<RunResult> =>
      run(spec(`overhead-${name}-r${round + 1}`, kind, { concurrency: C, batches: [o.jobs], imageBytes: o.imageBytes, delayMs: 0, env }));
    const rounds: BenchResults['overhead']['rounds'] = [];
    for (let r = 0; r < o.rounds; r++) {
      // Alternate the order so neither consumer always runs right after the other has warmed the system.
      const order = ['bare', 'worker', 'noCheckpoint', 'noProgress', 'quietLog'] as const;
      const round: Partial<BenchResults['overhead']['rounds'][number]> = {};
      const whatIfs: Partial<Record<keyof typeof WHAT_IF, RunResult>> = {};
      for (const which of r % 2 === 0 ? order : [...order].reverse()) {
        if (which === 'bare') round.bare = await overheadRun('bare', 'bare', undefined, r);
        else if (which === 'worker') round.worker = await overheadRun('worker', 'worker', undefined, r);
        else whatIfs[which] = await overheadRun(`worker-${which}`, 'worker', { ...WHAT_IF[which] }, r);
      }
      rounds.push({ ...round, whatIf: whatIfs } as BenchResults['overhead']['rounds'][number]);
    }

    say('checkpoint write alone: src\'s save and forget, as a job whose delivery waits pays them');
    const checkpointWrite = [];
    for (const { imageBytes, saves } of plan.checkpointWrite) {
      const cost = await measureCheckpointWrite(system.redisServer.url, imageBytes, saves);
      say(`  ${imageBytes / 1000} KB: ${cost.saveUs.toFixed(0)} us of CPU per save`);
      checkpointWrite.push(cost);
    }

    say('latency-bound: small images, a 300 ms API');
    const l = plan.latency;
    const latencyRun = (kind: RunSpec['kind']): Promise<RunResult> =>
      run(spec(`latency-${kind}`, kind, { concurrency: C, batches: [l.jobs], imageBytes: l.imageBytes, delayMs: l.delayMs }));
    const latency = { worker: await latencyRun('worker'), bare: await latencyRun('bare') };

    say('memory: 1 MB images');
    const m = plan.memory;
    const memoryRun = (name: string, kind: RunSpec['kind'], env?: Record<string, string>): Promise<RunResult> =>
      run(spec(`memory-${name}`, kind, { concurrency: C, batches: m.batches, imageBytes: m.imageBytes, delayMs: m.delayMs, env }));
    const saturatedRun = (name: string, kind: RunSpec['kind'], env?: Record<string, string>): Promise<RunResult> =>
      run(spec(`memory-saturated-${name}`, kind, { concurrency: C, batches: [m.saturatedJobs], imageBytes: m.imageBytes, delayMs: 0, env }));
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
    const memory = {
      bare: await memoryRun('bare', 'bare'),
      worker: await memoryRun('worker', 'worker'),
      saturated: {
        bare: await saturatedRun('bare', 'bare'),
        worker: await saturatedRun('worker', 'worker'),
      },
      stalledRelay: { worker: await stalledRun('worker'), bare: await stalledRun('bare') },
    };

    say('growth: small jobs in batches, heap after a full GC between them');
    const leakRun = (kind: RunSpec['kind']): Promise<RunResult> =>
      run(spec(`growth-${kind}`, kind, { concurrency: C, batches: plan.leak.batches, imageBytes: plan.leak.imageBytes, delayMs: 0 }));
    const leak = { worker: await leakRun('worker'), bare: await leakRun('bare') };

    say('scale-out: worker processes on one Redis, a 300 ms API');
    const so = plan.scaleOut;
    const scaleOut: RunResult[] = [];
    for (const n of so.processes) {
      scaleOut.push(
        await run(spec(`scale-${n}`, 'worker', { processes: n, concurrency: C, batches: [so.jobsPerProcess * n], imageBytes: so.imageBytes, delayMs: so.delayMs })),
      );
    }

    say('profile: node --cpu-prof, overhead settings');
    const profileRun = (kind: RunSpec['kind']): Promise<RunResult> =>
      run(spec(`profile-${kind}`, kind, { concurrency: C, batches: [plan.profileJobs], imageBytes: o.imageBytes, delayMs: 0, profile: true }));
    const profiled = { worker: await profileRun('worker'), bare: await profileRun('bare') };
    // More rows than the report shows, so that the worker-minus-bare comparison sees every package that matters.
    const summarise = (r: RunResult) => (r.profiles[0] && fs.existsSync(r.profiles[0]) ? summariseProfile(r.profiles[0], 40, r.window) : undefined);

    results = {
      plan,
      machine,
      bufferutil: bufferutilVersion(),
      date: new Date().toISOString(),
      durationS: 0,
      overhead: { rounds, checkpointWrite },
      latency,
      memory,
      leak,
      scaleOut,
      profile: {
        worker: { run: profiled.worker, summary: summarise(profiled.worker) },
        bare: { run: profiled.bare, summary: summarise(profiled.bare) },
      },
    };
  } finally {
    await system.close();
  }
  results.durationS = (Date.now() - startedAt) / 1000;

  const out = plan.quick ? path.join(TMP_DIR, 'results-quick.md') : path.resolve(TMP_DIR, '..', 'results.md');
  // The figures first: a report that fails to render can be rendered again from them (report.ts is also a tool).
  fs.writeFileSync(path.join(TMP_DIR, plan.quick ? 'results-quick.json' : 'results.json'), JSON.stringify(results, null, 2));
  fs.writeFileSync(out, renderReport(results));
  say('');
  say(renderSummaryTable(results));
  say('');
  say(`written to ${path.relative(process.cwd(), out)} (${results.durationS.toFixed(0)} s)`);
}

/** bufferutil as the consumers resolve it from this repository (ws uses it for masking when it loads). */
function bufferutilVersion(): string | null {
  try {
    return (require('bufferutil/package.json') as { version: string }).version;
  } catch {
    return null;
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`bench failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exit(1);
});
