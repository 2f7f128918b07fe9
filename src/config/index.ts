import dotenv from 'dotenv';
import { ConfigError } from './configError';
import { keepsOriginalLook, ORIGINAL_LOOK } from './legacy';
import { checkImageProvider, checkQuality, checkQueue, finishJwt } from './rules';
import { Config, DEFAULTS, JwtConfig, QUEUE_SETTINGS, QueueSettings, SCHEMA } from './schema';
import { Env, Reading, readSettings } from './setting';

/**
 * The configuration, read and validated once at start. Each setting is declared once in schema.ts; the original
 * StoryBang names are in legacy.ts, rules over several settings in rules.ts, the start line's view in describe.ts.
 */

export { ConfigError } from './configError';
export { describeConfig } from './describe';
export { DEFAULTS, SCHEMA } from './schema';
export type { Config, JwtConfig, NotifyFormat, QueueSettings } from './schema';
export type { Env } from './setting';

/** Bull's own key prefix: QUEUE_PREFIX's default, and what producers that do not set one use. */
export const DEFAULT_QUEUE_PREFIX = DEFAULTS.QUEUE_PREFIX;

/** Reads `.env` (without overriding the real environment) and then validates it. */
export function loadConfigFromEnvironment(): Config {
  dotenv.config({ quiet: true });
  return loadConfig(process.env);
}

/** The worker's settings, the original StoryBang names included; throws ConfigError listing every problem at once. */
export function loadConfig(env: Env): Config {
  const reading = new Reading();
  const { jwt, rateLimit, ...settings } = readSettings(SCHEMA, env, reading);
  checkQueue(settings, reading);
  checkImageProvider(settings, reading);
  checkQuality(settings.grok, reading);
  const originalLook = keepsOriginalLook(reading);
  const config: Config = {
    ...settings,
    ...(originalLook ? ORIGINAL_LOOK : {}),
    originalLook,
    jwt: finishJwt(jwt, reading),
    rateLimit: rateLimit.max === 0 ? null : rateLimit,
    legacyNames: reading.legacyNames,
  };
  return valid(config, reading);
}

/**
 * Where the queue is (REDIS_URL or the original BULL_GENERATOR_HOST/PORT, REDIS_CLUSTER_NODES,
 * REDIS_TLS_REJECT_UNAUTHORIZED, QUEUE_NAME, QUEUE_PREFIX), read exactly as the worker reads it, for producers
 * and the command-line tools. Throws ConfigError.
 */
export function loadQueueSettings(env: Env): QueueSettings {
  const reading = new Reading();
  const queue = readSettings(QUEUE_SETTINGS, env, reading);
  checkQueue(queue, reading);
  return valid({ ...queue, legacyNames: reading.legacyNames }, reading);
}

/** How job tokens are verified, read as the worker reads it (API_JWT included); for the enqueue command. Throws ConfigError. */
export function loadJwtConfig(env: Env): JwtConfig {
  const reading = new Reading();
  return valid(finishJwt(readSettings(SCHEMA.jwt, env, reading), reading), reading);
}

function valid<T>(value: T, reading: Reading): T {
  if (reading.problems.length > 0) throw new ConfigError(reading.problems);
  return value;
}
