import fs from 'node:fs';
import path from 'node:path';

/** Reads a V8 .cpuprofile (node --cpu-prof) and sums self time per function and per package. */

interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
}

interface ProfileNode {
  id: number;
  callFrame: CallFrame;
  children?: number[];
}

interface CpuProfile {
  nodes: ProfileNode[];
  /** Microseconds on the monotonic clock, the one process.hrtime() reads. */
  startTime: number;
  samples: number[];
  timeDeltas: number[];
}

/** Only samples taken in this stretch count (monotonic clock, microseconds): the run, not the start-up. */
export interface ProfileWindow {
  fromUs: number;
  toUs: number;
}

export interface SelfTime {
  name: string;
  ms: number;
  /** Share of the time the process was not idle. */
  share: number;
  /** The nearest package or project function above it that accounts for most of its time: who asked for the work. */
  mainCaller?: string;
}

export interface ProfileSummary {
  file: string;
  totalMs: number;
  busyMs: number;
  functions: SelfTime[];
  areas: SelfTime[];
}

/** V8's pseudo-frames: time spent outside JavaScript functions. */
const IDLE = '(idle)';

export function summariseProfile(file: string, top = 15, window?: ProfileWindow): ProfileSummary {
  const profile = JSON.parse(fs.readFileSync(file, 'utf8')) as CpuProfile;
  const byId = new Map(profile.nodes.map((n) => [n.id, n.callFrame]));
  const parentOf = new Map<number, number>();
  for (const node of profile.nodes) for (const child of node.children ?? []) parentOf.set(child, node.id);
  const functions = new Map<string, number>();
  const callers = new Map<string, Map<string, number>>();
  const areas = new Map<string, number>();
  let totalUs = 0;
  let idleUs = 0;
  // A sample's time is the gap to the next sample: that is how long the stack stayed as sampled.
  let at = profile.startTime;
  for (let i = 0; i < profile.samples.length; i++) {
    at += profile.timeDeltas[i] ?? 0;
    if (window && (at < window.fromUs || at > window.toUs)) continue;
    const us = profile.timeDeltas[i + 1] ?? 0;
    const frame = byId.get(profile.samples[i]);
    if (!frame || us <= 0) continue;
    totalUs += us;
    if (frame.functionName === IDLE) {
      idleUs += us;
      continue;
    }
    const label = functionLabel(frame);
    add(functions, label, us);
    add(areas, areaOf(frame), us);
    const caller = nearestPackageCaller(profile.samples[i], byId, parentOf);
    if (caller) {
      if (!callers.has(label)) callers.set(label, new Map());
      add(callers.get(label)!, functionLabel(caller), us);
    }
  }
  const busyUs = totalUs - idleUs;
  const rank = (m: Map<string, number>): SelfTime[] =>
    [...m.entries()]
      .sort((a, b) => b[1] - a[1])
      .slice(0, top)
      .map(([name, us]) => ({ name, ms: us / 1000, share: busyUs > 0 ? us / busyUs : 0 }));
  const functionsRanked = rank(functions).map((f) => {
    const byCaller = [...(callers.get(f.name)?.entries() ?? [])].sort((a, b) => b[1] - a[1]);
    return byCaller.length > 0 ? { ...f, mainCaller: byCaller[0][0] } : f;
  });
  return { file, totalMs: totalUs / 1000, busyMs: busyUs / 1000, functions: functionsRanked, areas: rank(areas) };
}

/** The closest caller that is package or project code: native and node: frames say little about who asked. */
function nearestPackageCaller(nodeId: number, byId: Map<number, CallFrame>, parentOf: Map<number, number>): CallFrame | undefined {
  for (let id = parentOf.get(nodeId); id !== undefined; id = parentOf.get(id)) {
    const frame = byId.get(id);
    if (frame?.url && !frame.url.startsWith('node:')) return frame;
  }
  return undefined;
}

function add(map: Map<string, number>, key: string, us: number): void {
  map.set(key, (map.get(key) ?? 0) + us);
}

function functionLabel(frame: CallFrame): string {
  const name = frame.functionName || '(anonymous)';
  if (!frame.url) return name;
  return `${name} ${shortUrl(frame.url)}:${frame.lineNumber + 1}`;
}

function shortUrl(url: string): string {
  const file = url.replace(/^file:\/\//, '');
  const inModules = file.lastIndexOf('node_modules/');
  if (inModules >= 0) return file.slice(inModules + 'node_modules/'.length);
  const built = /\/\.tmp\/build\/(.+)$/.exec(file);
  if (built) return built[1];
  return file.startsWith('node:') ? file : path.basename(file);
}

/** Which package (or part of Node, or of this repo) the time belongs to. */
function areaOf(frame: CallFrame): string {
  if (!frame.url) return frame.functionName.startsWith('(') ? frame.functionName : '(native)';
  const file = frame.url.replace(/^file:\/\//, '');
  const inModules = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(file.slice(file.lastIndexOf('node_modules/')));
  if (file.includes('node_modules/') && inModules) return inModules[1];
  if (file.startsWith('node:')) return `node:${file.slice(5).split('/')[0]}`;
  const built = /\/\.tmp\/build\/(.+)\.js$/.exec(file);
  return built ? built[1] : path.basename(file);
}

/** The summary as markdown tables, the first `limit` rows of each. */
export function formatSummary(summary: ProfileSummary, label: string, limit = Infinity): string {
  const pct = (x: number): string => `${(x * 100).toFixed(1)}%`;
  const lines = [
    `${label}: ${summary.busyMs.toFixed(0)} ms busy of ${summary.totalMs.toFixed(0)} ms sampled (${path.basename(summary.file)})`,
    '',
    '| self time, by package | ms | share of busy |',
    '| --- | ---: | ---: |',
    ...summary.areas.slice(0, limit).map((a) => `| ${a.name} | ${a.ms.toFixed(0)} | ${pct(a.share)} |`),
    '',
    '| self time, by function | mostly on behalf of | ms | share of busy |',
    '| --- | --- | ---: | ---: |',
    ...summary.functions.slice(0, limit).map((f) => `| \`${f.name}\` | ${f.mainCaller ? `\`${f.mainCaller}\`` : ''} | ${f.ms.toFixed(0)} | ${pct(f.share)} |`),
  ];
  return lines.join('\n');
}

if (require.main === module) {
  const [file, top] = process.argv.slice(2);
  if (!file) {
    process.stderr.write('usage: node profileSummary.js <file.cpuprofile> [top]\n');
    process.exit(2);
  }
  process.stdout.write(`${formatSummary(summariseProfile(file, Number(top) || 15), path.basename(file))}\n`);
}
