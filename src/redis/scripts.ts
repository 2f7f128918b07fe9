import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import type { Cluster, Redis } from 'ioredis';

/** A connection to a single Redis or to a Redis Cluster: both run the same scripts. */
export type RedisClient = Redis | Cluster;

export type ScriptCommand = (...args: Array<string | number | Buffer>) => Promise<unknown>;

interface Script {
  name: string;
  numberOfKeys: number;
  lua: string;
}

const INCLUDE = /^--- @include "([^"]+)"$/gm;
/** Marks a script (or a part it includes) that builds keys from a declared key or prefix. */
const BUILDS_KEYS = /^--- @builds-keys$/m;

/**
 * Loads a folder of Lua scripts named like BullMQ's, `name-<numberOfKeys>.lua`, once per process. A line
 * `--- @include "<path>"` is replaced by `<path>.lua`, relative to the file that includes it (files whose name
 * starts with `_` are parts, not commands); a part is included once per script, where it is first named. A script
 * that builds keys from a declared prefix (every such key shares the declared keys' hash slot when the prefix
 * carries a hash tag) says so with a line `--- @builds-keys`, and tells Dragonfly, which refuses undeclared keys by
 * default.
 */
export function loadScripts(dir: string): Script[] {
  return readdirSync(dir)
    .filter((file) => /^[a-z][a-z-]*-\d+\.lua$/.test(file))
    .map((file) => {
      const [, name, keys] = /^([a-z-]+)-(\d+)\.lua$/.exec(file)!;
      const lua = expand(path.join(dir, file), new Set<string>());
      const flagged = BUILDS_KEYS.test(lua) ? `--!df flags=allow-undeclared-keys\n${lua}` : lua;
      return { name: camelCase(name), numberOfKeys: Number(keys), lua: flagged };
    });
}

function expand(file: string, included: Set<string>): string {
  return readFileSync(file, 'utf8').replace(INCLUDE, (_, part: string) => {
    const partFile = path.resolve(path.dirname(file), `${part}.lua`);
    if (included.has(partFile)) return '';
    included.add(partFile);
    return expand(partFile, included);
  });
}

/** Defines `scripts` (or those of them named) on `client`, once per connection; ioredis then sends each as EVALSHA. */
export function defineScripts<Name extends string>(
  client: RedisClient,
  scripts: Script[],
  prefix: string,
  names?: readonly Name[],
): Record<Name, ScriptCommand> {
  const commands = {} as Record<Name, ScriptCommand>;
  for (const script of scripts.filter((s) => !names || names.includes(s.name as Name))) {
    const name = `${prefix}${script.name[0].toUpperCase()}${script.name.slice(1)}`;
    if (!(name in client)) client.defineCommand(name, { numberOfKeys: script.numberOfKeys, lua: script.lua });
    const command = (client as unknown as Record<string, ScriptCommand>)[name];
    commands[script.name as Name] = command.bind(client);
  }
  return commands;
}

function camelCase(name: string): string {
  return name.replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());
}

/** `text` in a SCAN or KEYS pattern, its glob characters matching themselves. */
export function escapeGlob(text: string): string {
  return text.replace(/[*?[\]\\]/g, (c) => `\\${c}`);
}
