import fs from 'node:fs';
import path from 'node:path';
import { measureCheckpointWrite } from './checkpointMicro';
import { measureRun, RunResult, RunSpec, TMP_DIR } from './measureRun';
import { CHECKPOINT_FIX, FULL, NO_CHECKPOINT, Plan, QUICK, spec } from './plan';
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
  // Optional: a node_modules folder holding bufferutil, to measure ws with its native masking helper.
  const extraNodePath = process.env.BENCH_NODE_PATH;
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
    const overheadRun = (name: string, kind: RunSpec['kind'], env?: Record<string, string>, round = 0): Promise<RunResult> =>
      run(spec(`overhead-${name}-r${round + 1}`, kind, { concurrency: C, batches: [o.jobs], imageBytes: o.imageBytes, delayMs: 0, env }));
    const rounds: BenchResults['overhead']['rounds'] = [];
    for (let r = 0; r < o.rounds; r++) {
      // Alternate the order so neither consumer always runs right after the other has warmed the system.
      const order = ['bare', 'worker', 'fix', 'noCheckpoint'] as const;
      const round: Partial<BenchResults['overhead']['rounds'][number]> = {};
      for (const which of r % 2 === 0 ? order : [...order].reverse()) {
        if (which === 'bare') round.bare = await overheadRun('bare', 'bare', undefined, r);
        if (which === 'worker') round.worker = await overheadRun('worker', 'worker', undefined, r);
        if (which === 'fix') round.fix = await overheadRun('worker-fix', 'worker', CHECKPOINT_FIX, r);
        if (which === 'noCheckpoint') round.noCheckpoint = await overheadRun('worker-no-checkpoint', 'worker', NO_CHECKPOINT, r);
      }
      rounds.push(round as BenchResults['overhead']['rounds'][number]);
    }
    const withBufferutil = extraNodePath
      ? {
          bare: await overheadRun('bare-bufferutil', 'bare', { NODE_PATH: extraNodePath }),
          worker: await overheadRun('worker-bufferutil', 'worker', { NODE_PATH: extraNodePath }),
          fix: await overheadRun('worker-fix-bufferutil', 'worker', { ...CHECKPOINT_FIX, NODE_PATH: extraNodePath }),
        }
      : undefined;

    say('checkpoint write alone: src\'s save against one Buffer');
    const checkpointWrite = [];
    for (const { imageBytes, saves } of plan.checkpointWrite) {
      const cost = await measureCheckpointWrite(system.redisServer.url, imageBytes, saves);
      say(`  ${imageBytes / 1000} KB: ${cost.shippedUs.toFixed(0)} us (src) vs ${cost.bufferUs.toFixed(0)} us (Buffer) of CPU per save`);
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
    const memory = {
      bare: await memoryRun('bare', 'bare'),
      worker: await memoryRun('worker', 'worker'),
      fix: await memoryRun('worker-fix', 'worker', CHECKPOINT_FIX),
      saturated: {
        bare: await saturatedRun('bare', 'bare'),
        worker: await saturatedRun('worker', 'worker'),
        fix: await saturatedRun('worker-fix', 'worker', CHECKPOINT_FIX),
      },
      stalledRelay: await run(
        spec('memory-stalled-relay-worker', 'worker', {
          concurrency: C,
          batches: [m.stall.jobs],
          imageBytes: m.imageBytes,
          delayMs: 0,
          stallRelay: { afterMs: m.stall.afterMs, forMs: m.stall.forMs },
        }),
      ),
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
    const summarise = (r: RunResult) => (r.profiles[0] && fs.existsSync(r.profiles[0]) ? summariseProfile(r.profiles[0], 15, r.window) : undefined);

    results = {
      plan,
      machine,
      date: new Date().toISOString(),
      durationS: 0,
      overhead: { rounds, withBufferutil, checkpointWrite },
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
  fs.writeFileSync(out, renderReport(results));
  fs.writeFileSync(path.join(TMP_DIR, plan.quick ? 'results-quick.json' : 'results.json'), JSON.stringify(results, null, 2));
  say('');
  say(renderSummaryTable(results));
  say('');
  say(`written to ${path.relative(process.cwd(), out)} (${results.durationS.toFixed(0)} s)`);
}

main().catch((err: unknown) => {
  process.stderr.write(`bench failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exit(1);
});
