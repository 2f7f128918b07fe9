import fs from 'node:fs';
import path from 'node:path';
import { markdownDoc, ticked } from '../support/markdown';

/**
 * docs/ARCHITECTURE.md's tables of Redis keys and of a job's record say what the code does: every key the scripts
 * build or src/queue/keys.ts names, and every field a script reads or writes in fq:job:<fid>, is in the tables, and
 * nothing in the tables is named nowhere in the code. A rename in Lua without the docs fails here.
 */
const ROOT = path.resolve(__dirname, '..', '..');
const { text: DOC, tableAfter } = markdownDoc('docs/ARCHITECTURE.md');

function luaFiles(dir: string): string[] {
  return fs
    .readdirSync(dir, { recursive: true, encoding: 'utf8' })
    .filter((f) => f.endsWith('.lua'))
    .map((f) => path.join(dir, f));
}
const LUA = luaFiles(path.join(ROOT, 'src')).map((file) => ({ file: path.relative(ROOT, file), text: fs.readFileSync(file, 'utf8') }));

/** A key as compared: every `<placeholder>` alike. */
const shape = (key: string): string => key.replace(/<[^>]*>/g, '<>');

/** The keys the tables list, as shapes; a key `x:<>` also stands for `x`, as a builder names it. */
function documentedKeys(): Set<string> {
  const keys = [...tableAfter("### The fair queue's keys"), ...tableAfter("### Bull's own keys, as the fair queue uses them")].flatMap((row) => ticked(row[0]));
  return new Set(keys.map(shape));
}

/** The keys the code names: QueueKeys' getters and `fixed`, and every `F .. '<name>'` / `P .. '<name>'` in Lua. */
function keysInCode(): Map<string, string> {
  const found = new Map<string, string>();
  const keysTs = fs.readFileSync(path.join(ROOT, 'src', 'queue', 'keys.ts'), 'utf8');
  for (const m of keysTs.matchAll(/\$\{(?:this\.)?prefix\}([a-z:-]+)(\$\{[^}]+\})?/g)) {
    // The helpers f() and bull() are read below, by the names they are given.
    if (m[2] !== '${name}') found.set(m[1] + (m[2] ? '<>' : ''), 'src/queue/keys.ts');
  }
  for (const m of keysTs.matchAll(/\b(f|bull)\('([a-z-]+)'\)/g)) found.set(m[1] === 'f' ? `fq:${m[2]}` : m[2], 'src/queue/keys.ts');
  for (const { file, text } of LUA) {
    for (const m of text.matchAll(/\b([FP]) \.\. '([a-z:-]+)'/g)) {
      const name = (m[1] === 'F' ? 'fq:' : '') + m[2];
      if (name === 'fq:') continue; // F itself
      found.set(name.endsWith(':') ? `${name}<>` : name, file);
    }
  }
  return found;
}

/** Every field a script names in a job's record: the fields of HSET, HGET, HMGET, HDEL, HINCRBY, ... on it. */
function jobFieldsInLua(): Map<string, string> {
  const fields = new Map<string, string>();
  for (const { file, text } of LUA) {
    for (const call of text.matchAll(/rcall\('(HSET|HSETNX|HGET|HMGET|HDEL|HINCRBY|HEXISTS)',\s*/g)) {
      const args = argumentsAt(text, call.index + call[0].length);
      if (!/^(job|jobKey\(.+\))$/.test(args[0])) continue;
      const rest = args.slice(1);
      const names = call[1] === 'HSET' ? rest.filter((_, i) => i % 2 === 0) : ['HINCRBY', 'HSETNX'].includes(call[1]) ? rest.slice(0, 1) : rest;
      for (const name of names) {
        const literal = /^'([^']+)'$/.exec(name);
        if (!literal) throw new Error(`${file}: a job field that is not a literal (${name}): the doc test cannot check it`);
        fields.set(literal[1], file);
      }
    }
  }
  return fields;
}

/** The call's arguments from `at` (just past its first argument's start) to its closing parenthesis. */
function argumentsAt(text: string, at: number): string[] {
  const args: string[] = [];
  let depth = 1;
  let current = '';
  for (let i = at; depth > 0; i++) {
    const c = text[i];
    if (c === '(') depth++;
    if (c === ')' && --depth === 0) break;
    if (c === ',' && depth === 1) {
      args.push(current.trim());
      current = '';
    } else current += c;
  }
  return [...args, current.trim()];
}

describe('docs/ARCHITECTURE.md against the code', () => {
  it('lists every Redis key the scripts and src/queue/keys.ts name, and no other', () => {
    const documented = documentedKeys();
    const inCode = keysInCode();
    const covers = (set: Set<string> | Map<string, string>, key: string): boolean => set.has(key) || set.has(`${key}:<>`) || set.has(key.replace(/:<>$/, ''));
    const missing = [...inCode].filter(([key]) => !covers(documented, key)).map(([key, file]) => `${key} (${file})`);
    expect(missing).toEqual([]);
    // Bull's own keys the worker reads through Bull's API (id, <id>, <id>:lock, logs) are named by Bull, not here.
    const bulls = new Set(['id', '<>', '<>:lock', '<>:logs', 'refused:<>']);
    const stale = [...documented].filter((key) => !bulls.has(key) && !covers(inCode, key));
    expect(stale).toEqual([]);
  });

  it("lists every field of a job's record the scripts read or write, and no other", () => {
    const documented = new Set(tableAfter("### A job's record, `fq:job:<fid>`").flatMap((row) => ticked(row[0])));
    const inLua = jobFieldsInLua();
    expect([...inLua.keys()].filter((field) => !documented.has(field)).map((field) => `${field} (${inLua.get(field)})`)).toEqual([]);
    expect([...documented].filter((field) => !inLua.has(field))).toEqual([]);
  });

  it('names only scripts that exist', () => {
    const scripts = new Set(LUA.map(({ file }) => path.basename(file)));
    const named = [...DOC.matchAll(/`([a-z_][a-z-]*(?:-\d+)?\.lua)`/g)].map((m) => m[1]);
    expect(named.filter((name) => !scripts.has(name))).toEqual([]);
  });
});
