import { execFileSync } from 'node:child_process';
import os from 'node:os';
import path from 'node:path';
import { runFaults } from './faults';
import { cost, idle } from './redisCost';
import { Row, RunRecord, writeRecord } from './report';
import { Rig } from './rig';
import { light, loops, reload, stories } from './stories';
import { limit, memory, paceoff } from './throughput';

/** bench/.tmp: compiled code, logs, figures (git ignores it). run.js runs from bench/.tmp/build/bench. */
const TMP_DIR = path.resolve(__dirname, '..', '..');

type Scenario = (rig: Rig) => Promise<Row[]>;

/** Every scenario, in the order of a full run; faults runs last, on systems of its own. */
const SCENARIOS: Record<string, Scenario> = { stories, loops, reload, light, limit, paceoff, memory, idle, cost };
const NAMES = [...Object.keys(SCENARIOS), 'faults'];

/**
 * `npm run bench`: every scenario (or BENCH_ONLY=<name,...>) on the current src, against a private redis-server,
 * a stand-in image API and StoryBang's relay and JWT service; BENCH_QUICK=1 for small sizes. Writes
 * bench/.tmp/figures[-quick][-<names>].{md,json} after every scenario.
 */
async function main(): Promise<void> {
  const quick = process.env.BENCH_QUICK === '1';
  const only = process.env.BENCH_ONLY?.split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  const unknown = (only ?? []).filter((n) => !NAMES.includes(n));
  if (unknown.length > 0) throw new Error(`BENCH_ONLY takes ${NAMES.join(', ')}, not ${unknown.join(', ')}`);
  const chosen = NAMES.filter((n) => !only || only.includes(n));
  const name = `figures${quick ? '-quick' : ''}${only ? `-${chosen.join('-')}` : ''}`;
  const startedAt = Date.now();
  const record: RunRecord = {
    date: new Date().toISOString(),
    source: sourceState(),
    machine: `${os.cpus().length} x ${os.cpus()[0]?.model ?? 'cpu'}, node ${process.version}`,
    quick,
    scenarios: chosen,
    durationS: 0,
    rows: [],
    errors: [],
  };
  const say = (line: string): void => void process.stdout.write(`${line}\n`);
  say(`bench: ${quick ? 'quick' : 'full'} run of ${chosen.join(', ')}, src at ${record.source}`);
  const save = (): string => {
    record.durationS = (Date.now() - startedAt) / 1000;
    return writeRecord(TMP_DIR, name, record);
  };
  const measure = async (scenario: string, run: () => Promise<Row[]>): Promise<void> => {
    const t0 = Date.now();
    say(`${scenario}...`);
    try {
      const rows = await run();
      record.rows.push(...rows);
      for (const r of rows) say(`  ${r.figure}: ${r.value}${r.goal ? ` (goal ${r.goal}: ${r.met ? 'met' : 'MISSED'})` : ''}`);
    } catch (err) {
      const error = err instanceof Error ? err.message : String(err);
      record.errors.push({ scenario, error });
      say(`  not measured: ${error}`);
    }
    say(`  (${((Date.now() - t0) / 1000).toFixed(0)} s)`);
    save();
  };
  const inRig = chosen.filter((n) => n !== 'faults');
  if (inRig.length > 0) {
    const rig = await Rig.start(TMP_DIR, quick);
    try {
      for (const n of inRig) await measure(n, () => SCENARIOS[n](rig));
    } finally {
      await rig.close();
    }
  }
  if (chosen.includes('faults')) await measure('faults', () => runFaults(path.join(TMP_DIR, 'faults'), quick));
  say(`written to ${path.relative(process.cwd(), save())} (${record.durationS.toFixed(0)} s)`);
}

/** The commit measured, and whether src/ had uncommitted changes. */
function sourceState(): string {
  const git = (...args: string[]): string => {
    try {
      return execFileSync('git', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
    } catch {
      return '';
    }
  };
  const commit = git('rev-parse', '--short', 'HEAD') || 'unknown';
  return git('status', '--porcelain', '--', 'src') ? `${commit} with uncommitted changes in src/` : commit;
}

main().catch((err: unknown) => {
  process.stderr.write(`bench failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exit(1);
});
