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

/**
 * Loads a folder of Lua scripts named like BullMQ's, `name-<numberOfKeys>.lua`, once per process. A line
 * `--- @include "_part"` is replaced by `_part.lua` from the same folder (files starting with `_` are parts,
 * not commands). Scripts that build keys from a declared prefix (every such key shares the declared keys'
 * hash slot when the prefix carries a hash tag) say so to Dragonfly, which refuses undeclared keys by default.
 */
export function loadScripts(dir: string): Script[] {
  const read = (file: string): string => readFileSync(path.join(dir, file), 'utf8');
  const expand = (lua: string): string => lua.replace(/^--- @include "(_[a-z-]+)"$/gm, (_, part: string) => expand(read(`${part}.lua`)));
  return readdirSync(dir)
    .filter((file) => /^[a-z][a-z-]*-\d+\.lua$/.test(file))
    .map((file) => {
      const [, name, keys] = /^([a-z-]+)-(\d+)\.lua$/.exec(file)!;
      const source = read(file);
      const lua = source.includes('--- @include') ? `--!df flags=allow-undeclared-keys\n${expand(source)}` : source;
      return { name: camelCase(name), numberOfKeys: Number(keys), lua };
    });
}

/** Defines `scripts` on `client` (once per connection); ioredis then sends each as EVALSHA. */
export function defineScripts<Name extends string>(client: RedisClient, scripts: Script[], prefix: string): Record<Name, ScriptCommand> {
  const commands = {} as Record<Name, ScriptCommand>;
  for (const script of scripts) {
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
