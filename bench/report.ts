import fs from 'node:fs';
import path from 'node:path';

/** One figure of a run: the record every scenario returns. */
export interface Row {
  scenario: string;
  figure: string;
  value: string;
  goal?: string;
  met?: boolean;
}

/** The run: what ran, on what, and its figures. */
export interface RunRecord {
  date: string;
  source: string;
  machine: string;
  quick: boolean;
  scenarios: string[];
  durationS: number;
  rows: Row[];
  /** Scenarios that could not be measured, with why. */
  errors: Array<{ scenario: string; error: string }>;
}

/** Writes `<name>.json` and `<name>.md` into `dir`; returns the markdown file. */
export function writeRecord(dir: string, name: string, run: RunRecord): string {
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(dir, `${name}.json`), JSON.stringify(run, null, 2));
  const file = path.join(dir, `${name}.md`);
  fs.writeFileSync(file, renderRecord(run));
  return file;
}

function renderRecord(run: RunRecord): string {
  const cell = (s: string): string => s.replace(/\|/g, '\\|');
  const lines = [
    `# Bench figures (${run.quick ? 'quick' : 'full'} run)`,
    '',
    `${run.date}, ${run.durationS.toFixed(0)} s, src at ${run.source}; ${run.machine}. Scenarios: ${run.scenarios.join(', ')}.`,
    '',
    '| scenario | figure | value | goal | met |',
    '| --- | --- | --- | --- | --- |',
    ...run.rows.map(
      (r) => `| ${r.scenario} | ${cell(r.figure)} | ${cell(r.value)} | ${cell(r.goal ?? '')} | ${r.met === undefined ? '' : r.met ? 'yes' : '**no**'} |`,
    ),
  ];
  if (run.errors.length > 0) lines.push('', '## Not measured', '', ...run.errors.map((e) => `- ${e.scenario}: ${e.error}`));
  return `${lines.join('\n')}\n`;
}

/** Formatting shared by the scenarios. */
export const fmt = {
  ratio: (x: number): string => (Number.isFinite(x) ? x.toFixed(2) : '-'),
  pct: (x: number): string => `${(x * 100).toFixed(1)}%`,
  s: (ms: number | undefined): string => (ms === undefined ? '-' : `${(ms / 1000).toFixed(1)} s`),
  mb: (bytes: number): string => `${(bytes / 1048576).toFixed(0)} MB`,
};
