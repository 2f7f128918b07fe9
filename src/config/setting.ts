/**
 * What a setting is (one environment variable: its name, the kind of value it holds, what stands in when it is
 * absent) and how a tree of them is read from an environment. The tree's shape is the Config's shape.
 */

export type Env = Record<string, string | undefined>;

/** What a kind answers for text it cannot take. */
export const REJECT: unique symbol = Symbol('reject');

/** A kind of value: how a variable's text becomes one, and what the variable is told when it cannot. */
export interface Kind<T> {
  /** Ends "NAME must be ...": what the variable expects. */
  expects: string;
  parse(text: string): T | typeof REJECT;
  /** The text as an error message may quote it (URLs lose their credentials). */
  show?(text: string): string;
}

/** What an original StoryBang variable (or pair) says for a setting whose own variable is absent. */
interface LegacyValue {
  /** The original names read. */
  names: string[];
  /** The setting's text, when the original value was usable. */
  text?: string;
  /** Each naming the original variable at fault. */
  problems: string[];
}

/** Reads an original name for a setting; undefined when it does not apply (not set, or not wanted). */
export type Legacy = (env: Env) => LegacyValue | undefined;

export interface SettingOptions {
  /** The original StoryBang name read when this variable is absent. */
  legacy?: Legacy;
  /** Read as written: spaces are kept, and a value of spaces counts as set. Otherwise trimmed, blank = unset. */
  verbatim?: boolean;
}

export interface Setting<T, N extends string = string, D extends string | undefined = string | undefined> extends SettingOptions {
  env: N;
  kind: Kind<T>;
  /** The text read when the variable is absent; undefined: no default. */
  default: D;
  /** When set, an absent variable is a problem: "NAME is required: <required>". */
  required?: string;
}

/** Settings, in groups as the Config nests them. */
export interface Schema {
  readonly [key: string]: Setting<unknown> | Schema;
}

/**
 * Declares a setting. With `default`, absent means the default; with `required`, absent is a problem; with
 * neither, absent means undefined. A default its own kind refuses fails when the module loads.
 */
export function setting<const N extends string, T, const D extends string>(env: N, kind: Kind<T>, options: SettingOptions & { default: D }): Setting<T, N, D>;
export function setting<const N extends string, T>(env: N, kind: Kind<T>, options: SettingOptions & { required: string }): Setting<T, N, undefined>;
export function setting<const N extends string, T>(env: N, kind: Kind<T>, options?: SettingOptions): Setting<T | undefined, N, undefined>;
export function setting(env: string, kind: Kind<unknown>, options: SettingOptions & { default?: string; required?: string } = {}): Setting<unknown> {
  if (options.default !== undefined && kind.parse(options.default) === REJECT) {
    throw new Error(`${env}: the default ${JSON.stringify(options.default)} is not ${kind.expects}`);
  }
  return { env, kind, ...options, default: options.default };
}

function isSetting(node: Setting<unknown> | Schema): node is Setting<unknown> {
  return typeof node.env === 'string' && typeof (node as Setting<unknown>).kind === 'object';
}

/** The values a schema reads to: a setting's value, or a group of them (doc comments carry over). */
export type Values<S> = S extends Setting<infer T> ? T : { -readonly [K in keyof S]: Values<S[K]> };

type Leaves<S> = S extends Setting<unknown> ? S : S extends Schema ? { [K in keyof S]: Leaves<S[K]> }[keyof S] : never;
type DefaultEntry<L> = L extends { env: infer N extends string; default: infer D extends string } ? [N, D] : never;

/** Each variable with a default, by name, as its text. */
export type Defaults<S> = { readonly [E in DefaultEntry<Leaves<S>> as E[0]]: E[1] };

/** Every setting of `schema`, in its order. */
export function settingsOf(schema: Schema): Setting<unknown>[] {
  return Object.values(schema).flatMap((node) => (isSetting(node) ? [node] : settingsOf(node)));
}

export function defaultsOf<S extends Schema>(schema: S): Defaults<S> {
  const withDefault = settingsOf(schema).filter((s) => s.default !== undefined);
  return Object.fromEntries(withDefault.map((s) => [s.env, s.default])) as Defaults<S>;
}

/** What reading found besides the values; rules over several settings add to it. */
export class Reading {
  readonly problems: string[] = [];
  /** The original StoryBang names read, in the order of the schema. */
  readonly legacyNames: string[] = [];
  /** Variables that had a value, their own or an original name's, usable or not. */
  readonly given = new Set<string>();
  /** Variables already reported: a rule about them would only repeat the problem. */
  readonly failed = new Set<string>();

  problem(env: string, message: string): void {
    this.problems.push(message);
    this.failed.add(env);
  }

  /** True when none of these variables was reported. */
  ok(...envs: string[]): boolean {
    return envs.every((env) => !this.failed.has(env));
  }
}

/**
 * Reads every setting of `schema` from `env` into `reading`. A value that fails is reported and read as
 * undefined; the caller throws when `reading.problems` is not empty, so a Config never holds one.
 */
export function readSettings<S extends Schema>(schema: S, env: Env, reading: Reading): Values<S> {
  const values: Record<string, unknown> = {};
  for (const [key, node] of Object.entries(schema)) {
    values[key] = isSetting(node) ? readSetting(node, env, reading) : readSettings(node, env, reading);
  }
  return values as Values<S>;
}

function readSetting<T>(s: Setting<T>, env: Env, reading: Reading): T | undefined {
  let text = s.verbatim ? env[s.env] || undefined : env[s.env]?.trim() || undefined;
  const original = text === undefined ? s.legacy?.(env) : undefined;
  if (original !== undefined) {
    reading.legacyNames.push(...original.names);
    reading.given.add(s.env);
    for (const problem of original.problems) reading.problem(s.env, problem);
    if (original.text === undefined) return undefined;
    text = original.text;
  }
  if (text === undefined) {
    if (s.required !== undefined) reading.problem(s.env, `${s.env} is required: ${s.required}`);
    if (s.default === undefined) return undefined;
    return s.kind.parse(s.default) as T;
  }
  reading.given.add(s.env);
  const value = s.kind.parse(text);
  if (value !== REJECT) return value;
  reading.problem(s.env, `${s.env} must be ${s.kind.expects} (got ${JSON.stringify(s.kind.show ? s.kind.show(text) : text)})`);
  return undefined;
}
