import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

/** A compiled worker to run as a child process: `node <dir>/dist/index.js`, driven only by environment variables. */
export interface Build {
  /** `baseline` or `current`. */
  label: string;
  /** The commit built (short), with `+changes` when the current tree had uncommitted changes in src/. */
  rev: string;
  entry: string;
}

/** The repository this benchmark lives in. */
const REPO = path.resolve(__dirname, '..', '..', '..', '..');

const git = (...args: string[]): string => execFileSync('git', ['-C', REPO, ...args], { encoding: 'utf8' }).trim();

/** The current tree, built as the platform builds it (`npm run build` into its own dist/). */
export function buildCurrent(): Build {
  execFileSync('npm', ['run', 'build', '--silent'], { cwd: REPO, stdio: 'inherit' });
  const dirty = git('status', '--porcelain', '--', 'src') !== '';
  return { label: 'current', rev: `${git('rev-parse', '--short', 'HEAD')}${dirty ? '+changes' : ''}`, entry: path.join(REPO, 'dist', 'index.js') };
}

/**
 * The worker as it was at `rev`, from `git archive` into bench/.tmp/baseline/<sha>/, with this repository's
 * node_modules and its own tsc build. Built once per commit; BENCH_BASELINE=none skips it.
 */
export function buildBaseline(tmpDir: string, rev: string): Build {
  const sha = git('rev-parse', '--verify', `${rev}^{commit}`);
  const dir = path.join(tmpDir, 'baseline', sha);
  const tree = path.join(dir, 'src-tree');
  const entry = path.join(tree, 'dist', 'index.js');
  if (!fs.existsSync(entry)) {
    fs.rmSync(dir, { recursive: true, force: true });
    fs.mkdirSync(tree, { recursive: true });
    execFileSync('sh', ['-c', `git -C "${REPO}" archive ${sha} | tar -x -C "${tree}"`]);
    fs.symlinkSync(fs.realpathSync(path.join(REPO, 'node_modules')), path.join(tree, 'node_modules'));
    execFileSync(path.join(tree, 'node_modules', '.bin', 'tsc'), ['-p', 'tsconfig.build.json'], { cwd: tree, stdio: 'inherit' });
  }
  return { label: 'baseline', rev: sha.slice(0, 7), entry };
}

export function baselineRev(): string | undefined {
  const rev = process.env.BENCH_BASELINE ?? '1a21916';
  return ['', 'none', 'off', 'skip', '0'].includes(rev) ? undefined : rev;
}
