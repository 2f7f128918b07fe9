import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import type { GlobalConfig } from 'jest';

/**
 * Some tests run what ships: a worker as a real process (dist/index.js, through the harness's spawnWorker) or the
 * CLI (dist/cli). They need `dist` built from the sources as they are now; the other tests do not need it at all.
 * The build is the project's own (`npm run build`), run only when a selected test needs it and the
 * sources changed since the last one. Type errors are `npm run typecheck`'s to find, not the tests'.
 */

const ROOT = path.resolve(__dirname, '..', '..');
const DIST = path.join(ROOT, 'dist');
/** Written after each build here: the digest of the inputs it was built from. */
const STAMP = path.join(DIST, '.built-from');
/** What tsc's output depends on. */
const INPUTS = ['src', 'tsconfig.json', 'tsconfig.build.json'];
/** A test file that runs compiled output spawns a worker through the harness or names dist/ itself. */
const RUNS_COMPILED_OUTPUT = /\bspawnWorker\b|\bdist\b/;
const TEST_DIR = path.join(ROOT, '__tests__');

function filesUnder(entry: string): string[] {
  const stat = fs.statSync(entry, { throwIfNoEntry: false });
  if (!stat) return [];
  if (!stat.isDirectory()) return [entry];
  return fs
    .readdirSync(entry)
    .sort()
    .flatMap((name) => filesUnder(path.join(entry, name)));
}

function inputsDigest(): string {
  const typescript = JSON.parse(fs.readFileSync(require.resolve('typescript/package.json'), 'utf8')) as { version: string };
  const hash = createHash('sha256').update(`typescript ${typescript.version}\n`);
  for (const file of INPUTS.flatMap((entry) => filesUnder(path.join(ROOT, entry)))) {
    hash
      .update(`${path.relative(ROOT, file)}\n`)
      .update(fs.readFileSync(file))
      .update('\n');
  }
  return hash.digest('hex');
}

/** dist was built here from these very inputs, and nothing (`npm run build` from other sources) wrote to it since. */
function upToDate(digest: string): boolean {
  const stamp = fs.statSync(STAMP, { throwIfNoEntry: false });
  if (!stamp || fs.readFileSync(STAMP, 'utf8') !== digest || !fs.existsSync(path.join(DIST, 'index.js'))) return false;
  return filesUnder(DIST).every((file) => file === STAMP || fs.statSync(file).mtimeMs <= stamp.mtimeMs);
}

/**
 * Could this run include a test that runs compiled output? Only a run narrowed by path patterns can be told
 * apart from the whole suite; when jest picks the files itself (changed files, related tests), assume yes.
 */
function selectionRunsCompiledOutput(config: GlobalConfig): boolean {
  if (config.onlyChanged || config.findRelatedTests || config.changedSince || config.watch || config.watchAll) return true;
  if (!config.testPathPatterns.isSet()) return true;
  const matches = config.testPathPatterns.toExecutor({ rootDir: config.rootDir });
  return filesUnder(TEST_DIR)
    .filter((file) => file.endsWith('.test.ts') && matches.isMatch(file))
    .some((file) => RUNS_COMPILED_OUTPUT.test(fs.readFileSync(file, 'utf8')));
}

/** Builds dist when this run needs it and it is not current. */
export function ensureCompiledOutput(config: GlobalConfig): 'built' | 'up to date' | 'not needed' {
  if (!selectionRunsCompiledOutput(config)) return 'not needed';
  const digest = inputsDigest();
  if (upToDate(digest)) return 'up to date';
  fs.rmSync(STAMP, { force: true });
  // The project's own build: it empties dist first and copies the Lua scripts beside the compiled code.
  execFileSync('npm', ['run', 'build', '--silent'], { cwd: ROOT, stdio: 'inherit' });
  fs.writeFileSync(STAMP, digest);
  return 'built';
}
