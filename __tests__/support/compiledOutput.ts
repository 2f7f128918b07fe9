import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import type { GlobalConfig } from 'jest';

/**
 * Some tests run what ships: a worker as a real process (dist/index.js, through the harness's spawnWorker) or the
 * CLI (dist/cli). They need `dist` built from the sources as they are now; the other tests do not need it at all.
 * It is built only when a selected test needs it and the sources changed since the last build. The build is
 * `npm run build`'s (tsconfig.build.json's files and options, the Lua scripts copied beside the code) without
 * its type check: with isolatedModules each file compiles to the same JavaScript on its own, in a second
 * instead of six. Type errors are `npm run typecheck`'s to find, not the tests'.
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
export async function ensureCompiledOutput(config: GlobalConfig): Promise<'built' | 'up to date' | 'not needed'> {
  if (!selectionRunsCompiledOutput(config)) return 'not needed';
  const digest = inputsDigest();
  if (upToDate(digest)) return 'up to date';
  await transpileBuild();
  fs.writeFileSync(STAMP, digest);
  return 'built';
}

/** What `npm run build` writes, but each file transpiled on its own, unchecked. */
async function transpileBuild(): Promise<void> {
  // Loaded only to build: the compiler is 9 MB of JavaScript.
  const { default: ts } = await import('typescript');
  const configFile = path.join(ROOT, 'tsconfig.build.json');
  const { config } = ts.readConfigFile(configFile, (file) => ts.sys.readFile(file));
  const { options, fileNames, errors } = ts.parseJsonConfigFileContent(config, ts.sys, ROOT, undefined, configFile);
  if (errors.length > 0)
    throw new Error(ts.formatDiagnostics(errors, { getCanonicalFileName: (f) => f, getCurrentDirectory: () => ROOT, getNewLine: () => '\n' }));
  const outDir = options.outDir!;
  const rootDir = options.rootDir!;
  fs.rmSync(outDir, { recursive: true, force: true });
  for (const file of fileNames) {
    const { outputText, sourceMapText } = ts.transpileModule(fs.readFileSync(file, 'utf8'), { compilerOptions: options, fileName: file });
    const out = path.join(outDir, path.relative(rootDir, file)).replace(/\.ts$/, '.js');
    fs.mkdirSync(path.dirname(out), { recursive: true });
    fs.writeFileSync(out, outputText);
    if (sourceMapText) fs.writeFileSync(`${out}.map`, sourceMapText);
  }
  // The Lua scripts, as `npm run copy-lua` copies them.
  for (const file of filesUnder(rootDir).filter((f) => f.endsWith('.lua'))) fs.cpSync(file, path.join(outDir, path.relative(rootDir, file)));
}
