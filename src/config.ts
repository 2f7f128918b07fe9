import dotenv from 'dotenv';
import type { Algorithm } from 'jsonwebtoken';
import { defaultAlgorithms, validateAlgorithms, validatePublicKey } from './tokenVerifier';

/** Bull's key prefix: the worker's queue and every producer's must use the same. */
export const QUEUE_PREFIX = 'bull';

/** Every setting with its default, in one visible place (names and defaults are the contract's). */
export const DEFAULTS = {
  REDIS_URL: 'redis://127.0.0.1:6379',
  REDIS_TLS_REJECT_UNAUTHORIZED: 'true',
  QUEUE_NAME: 'Grok_Image_Generator',
  PROMPT_MAX_LENGTH: '1000',
  PROMPT_PREFIX: '',
  JWT_CLOCK_TOLERANCE_S: '5',
  JWT_USER_CLAIM: 'Id',
  JWT_VERIFY_TIMEOUT_MS: '10000',
  IMAGE_PROVIDER: 'grok',
  GROK_API: 'https://api.x.ai/v1/images/generations',
  GROK_MODEL: 'grok-imagine-image',
  GROK_TIMEOUT_MS: '60000',
  GROK_MAX_RETRIES: '3',
  /** xAI allows a team 5 image requests per second; 0 turns the shared limiter off. */
  GROK_RATE_LIMIT: '5',
  GROK_RATE_WINDOW_MS: '1000',
  GENERATION_DEADLINE_MS: '300000',
  /** 0: no cap on one user's jobs in flight across the fleet. */
  USER_CONCURRENCY: '0',
  /** 0: refusals are not remembered. */
  REFUSAL_MEMORY_S: '600',
  NOTIFY_EVENT: 'Profile',
  NOTIFY_ROOM_SUFFIX: '_Grok_Image_Generator',
  /** What the StoryBang relay forwards (only {Message, Status, Number}) and its front end reads. */
  NOTIFY_FORMAT: 'legacy',
  NOTIFY_PROGRESS: 'true',
  NOTIFY_ACK_TIMEOUT_MS: '0',
  NOTIFY_MAX_WAIT_MS: '120000',
  CHECKPOINT_TTL_S: '3600',
  LOCK_DURATION_MS: '60000',
  STALLED_INTERVAL_MS: '30000',
  MAX_STALLED_COUNT: '1',
  SHUTDOWN_TIMEOUT_MS: '25000',
  LOG_LEVEL: 'info',
  STATS_INTERVAL_MS: '60000',
  LOCAL_IMAGE_DELAY_MS: '0',
  /** The original StoryBang worker's Redis, read only when REDIS_URL is absent; a missing half takes these. */
  BULL_GENERATOR_HOST: '127.0.0.1',
  BULL_GENERATOR_PORT: '6379',
} as const;

/** xAI's published `aspect_ratio` values; anything else is answered 400. */
export const GROK_ASPECT_RATIOS = ['1:1', '3:4', '4:3', '9:16', '16:9', '2:3', '3:2', '9:19.5', '19.5:9', '9:20', '20:9', '1:2', '2:1', 'auto'] as const;
/** xAI's published `resolution` values. */
export const GROK_RESOLUTIONS = ['1k', '2k'] as const;
export type GrokResolution = (typeof GROK_RESOLUTIONS)[number];

export type NotifyFormat = 'schema' | 'legacy';

export interface JwtConfig {
  mode: 'local' | 'remote';
  secret?: string;
  publicKey?: string;
  algorithms: Algorithm[];
  issuer?: string;
  audience?: string;
  clockToleranceS: number;
  userClaim: string;
  verifyUrl?: string;
  verifyTimeoutMs: number;
}

export interface Config {
  redisUrl: string;
  redisTlsRejectUnauthorized: boolean;
  queueName: string;
  queuePrefix: string;
  redisClusterNodes: string[];
  concurrency: number | undefined;
  promptMaxLength: number;
  promptPrefix: string;
  jwt: JwtConfig;
  imageProvider: 'grok' | 'local';
  grok: {
    apiUrl: string;
    apiKey: string;
    model: string;
    timeoutMs: number;
    maxRetries: number;
    /** Sent as `aspect_ratio` only when set (GROK_ASPECT_RATIO). */
    aspectRatio?: string;
    /** Sent as `resolution` only when set (GROK_RESOLUTION). */
    resolution?: GrokResolution;
  };
  /** One limiter for every image request from every worker on the Redis; null when GROK_RATE_LIMIT=0. */
  rateLimit: { max: number; windowMs: number } | null;
  /** How long one job may spend waiting for capacity and retrying before GENERATION_FAILED. */
  generationDeadlineMs: number;
  /** Cap on one user's jobs in flight across the fleet; 0 means no cap. */
  userConcurrency: number;
  /** How long a moderation refusal of a prompt for a user is remembered, in seconds; 0 turns it off. */
  refusalMemoryS: number;
  localImageDelayMs: number;
  notify: {
    url: string;
    event: string;
    roomSuffix: string;
    format: NotifyFormat;
    progress: boolean;
    ackTimeoutMs: number;
    maxWaitMs: number;
  };
  checkpointTtlS: number;
  lockDurationMs: number;
  stalledIntervalMs: number;
  maxStalledCount: number;
  shutdownTimeoutMs: number;
  logLevel: string;
  statsIntervalMs: number;
  /** The original StoryBang worker's variables that were read because their new names were absent. */
  legacyNames: string[];
}

/** Thrown when the environment is unusable; lists every problem, each naming its variable. */
export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`Invalid configuration:\n  - ${problems.join('\n  - ')}`);
    this.name = 'ConfigError';
  }
}

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];

type Env = Record<string, string | undefined>;

/** Reads `.env` (without overriding the real environment) and then validates it. */
export function loadConfigFromEnvironment(): Config {
  dotenv.config({ quiet: true });
  return loadConfig(process.env);
}

/** Where the queue is: what the worker and the commands that add to or inspect the queue share. */
export interface QueueSettings {
  redisUrl: string;
  redisTlsRejectUnauthorized: boolean;
  queueName: string;
  /** The original StoryBang worker's variables that were read because their new names were absent. */
  legacyNames: string[];
}

/**
 * REDIS_URL (or the original BULL_GENERATOR_HOST/PORT), REDIS_TLS_REJECT_UNAUTHORIZED and QUEUE_NAME, read and
 * checked exactly as the worker reads them, for producers and the command-line tools.
 * Throws ConfigError naming each bad variable.
 */
export function loadQueueSettings(given: Env): QueueSettings {
  const { env, legacyNames, problems } = readLegacyNames(given);
  const queue = readQueue(fieldReader(env, problems), problems);
  if (problems.length > 0) throw new ConfigError(problems);
  return { ...queue, legacyNames };
}

/** How job tokens are verified, read as the worker reads it (API_JWT included); for the enqueue command. Throws ConfigError. */
export function loadJwtConfig(given: Env): JwtConfig {
  const { env, legacyNames, problems } = readLegacyNames(given);
  const read = fieldReader(env, problems);
  const jwt = readJwt(env, read.optional, read.int, problems, legacyNames.includes('API_JWT'));
  if (problems.length > 0) throw new ConfigError(problems);
  return jwt;
}

function readQueue(read: FieldReader, problems: string[]): Omit<QueueSettings, 'legacyNames'> {
  const queueName = read.raw('QUEUE_NAME')!;
  if (!queueName.trim()) problems.push('QUEUE_NAME must not be empty');
  return {
    redisUrl: read.url('REDIS_URL', read.raw('REDIS_URL'), ['redis:', 'rediss:']),
    redisTlsRejectUnauthorized: read.bool('REDIS_TLS_REJECT_UNAUTHORIZED'),
    queueName,
  };
}

type FieldReader = ReturnType<typeof fieldReader>;

/** Readers for one environment: each applies DEFAULTS and adds a problem naming the variable when it must. */
function fieldReader(env: Env, problems: string[]) {
  const raw = (name: keyof typeof DEFAULTS | string): string | undefined => {
    const value = env[name];
    if (value !== undefined && value.trim() !== '') return value.trim();
    return (DEFAULTS as Record<string, string>)[name];
  };
  const optional = (name: string): string | undefined => {
    const value = env[name];
    return value !== undefined && value.trim() !== '' ? value.trim() : undefined;
  };
  const int = (name: string, min: number, max = Number.MAX_SAFE_INTEGER): number => {
    const value = raw(name);
    const n = Number(value);
    if (value === undefined || !/^-?\d+$/.test(value) || n < min || n > max) {
      problems.push(`${name} must be a whole number from ${min}${max === Number.MAX_SAFE_INTEGER ? ' up' : ` to ${max}`} (got ${JSON.stringify(value)})`);
      return Number((DEFAULTS as Record<string, string>)[name] ?? min);
    }
    return n;
  };
  const bool = (name: string): boolean => {
    const value = (raw(name) ?? '').toLowerCase();
    if (['true', '1', 'yes'].includes(value)) return true;
    if (['false', '0', 'no'].includes(value)) return false;
    problems.push(`${name} must be true or false (got ${JSON.stringify(env[name])})`);
    return (DEFAULTS as Record<string, string>)[name] === 'true';
  };
  const oneOf = <T extends string>(name: string, allowed: readonly T[]): T => {
    const value = raw(name) as T;
    if (!allowed.includes(value)) {
      problems.push(`${name} must be one of ${allowed.join(', ')} (got ${JSON.stringify(value)})`);
      return allowed[0];
    }
    return value;
  };
  /** Unset stays unset (the field is then not sent); set must be one of `allowed`. */
  const optionalOneOf = <T extends string>(name: string, allowed: readonly T[], normalise = (v: string) => v): T | undefined => {
    const value = optional(name);
    if (value === undefined) return undefined;
    if (!allowed.includes(normalise(value) as T)) {
      problems.push(`${name} must be one of ${allowed.join(', ')}, or unset to let xAI choose (got ${JSON.stringify(value)})`);
      return undefined;
    }
    return normalise(value) as T;
  };
  const url = (name: string, value: string | undefined, protocols: string[]): string => {
    try {
      const parsed = new URL(value ?? '');
      if (!protocols.includes(parsed.protocol)) throw new Error('protocol');
      return value!;
    } catch {
      problems.push(`${name} must be a ${protocols.map((p) => p.replace(':', '')).join(' or ')} URL (got ${JSON.stringify(redactUrl(value))})`);
      return value ?? '';
    }
  };
  return { raw, optional, int, bool, oneOf, optionalOneOf, url };
}

/** The worker's settings, the original StoryBang names included; throws ConfigError listing every problem at once. */
export function loadConfig(given: Env): Config {
  const { env, legacyNames, problems } = readLegacyNames(given);
  const read = fieldReader(env, problems);
  const { raw, optional, int, bool, oneOf, optionalOneOf, url } = read;
  const queue = readQueue(read, problems);
  const imageProvider = oneOf('IMAGE_PROVIDER', ['grok', 'local'] as const);
  const apiKey = optional('GROK_API_KEY') ?? '';
  if (imageProvider === 'grok' && !apiKey) {
    problems.push(
      'GROK_API_KEY is required when IMAGE_PROVIDER=grok (an xAI API key; the original worker\'s API_GROK is read too; or set IMAGE_PROVIDER=local for offline images)',
    );
  }

  const rateMax = int('GROK_RATE_LIMIT', 0);
  const rateWindowMs = int('GROK_RATE_WINDOW_MS', 1);

  const config: Config = {
    ...queue,
    concurrency: env.CONCURRENCY === undefined || env.CONCURRENCY === '' ? undefined : int('CONCURRENCY', 1, 1000),
    queuePrefix: env.QUEUE_PREFIX || QUEUE_PREFIX,
    redisClusterNodes: (env.REDIS_CLUSTER_NODES ?? '').split(',').map((u) => u.trim()).filter(Boolean),
    promptMaxLength: int('PROMPT_MAX_LENGTH', 1, 100_000),
    promptPrefix: env.PROMPT_PREFIX ?? '',
    jwt: readJwt(env, optional, int, problems, legacyNames.includes('API_JWT')),
    imageProvider,
    grok: {
      apiUrl: url('GROK_API', raw('GROK_API'), ['https:', 'http:']),
      apiKey,
      model: raw('GROK_MODEL')!,
      timeoutMs: int('GROK_TIMEOUT_MS', 1),
      maxRetries: int('GROK_MAX_RETRIES', 0, 20),
      aspectRatio: optionalOneOf('GROK_ASPECT_RATIO', GROK_ASPECT_RATIOS),
      resolution: optionalOneOf('GROK_RESOLUTION', GROK_RESOLUTIONS, (v) => v.toLowerCase()),
    },
    rateLimit: rateMax === 0 ? null : { max: rateMax, windowMs: rateWindowMs },
    generationDeadlineMs: int('GENERATION_DEADLINE_MS', 1),
    userConcurrency: int('USER_CONCURRENCY', 0, 1000),
    refusalMemoryS: int('REFUSAL_MEMORY_S', 0),
    localImageDelayMs: int('LOCAL_IMAGE_DELAY_MS', 0),
    notify: {
      url: notificationUrl(optional('PORT_MESSAGES_USERS'), problems),
      event: raw('NOTIFY_EVENT')!,
      roomSuffix: raw('NOTIFY_ROOM_SUFFIX')!,
      format: oneOf('NOTIFY_FORMAT', ['schema', 'legacy'] as const),
      progress: bool('NOTIFY_PROGRESS'),
      ackTimeoutMs: int('NOTIFY_ACK_TIMEOUT_MS', 0),
      maxWaitMs: int('NOTIFY_MAX_WAIT_MS', 0),
    },
    checkpointTtlS: int('CHECKPOINT_TTL_S', 1),
    lockDurationMs: int('LOCK_DURATION_MS', 1000),
    stalledIntervalMs: int('STALLED_INTERVAL_MS', 0),
    maxStalledCount: int('MAX_STALLED_COUNT', 0),
    shutdownTimeoutMs: int('SHUTDOWN_TIMEOUT_MS', 0),
    logLevel: oneOf('LOG_LEVEL', LOG_LEVELS),
    statsIntervalMs: int('STATS_INTERVAL_MS', 0),
    legacyNames,
  };

  if (problems.length > 0) throw new ConfigError(problems);
  return config;
}

function readJwt(
  env: Env,
  optional: (name: string) => string | undefined,
  int: (name: string, min: number) => number,
  problems: string[],
  /** API_JWT was read: when it was unusable it has been reported under its own name already. */
  apiJwtRead = false,
): JwtConfig {
  // PEM keys are often pasted into a single-line variable with literal "\n".
  const secret = env.JWT_SECRET !== undefined && env.JWT_SECRET !== '' ? env.JWT_SECRET : undefined;
  const publicKey = optional('JWT_PUBLIC_KEY')?.replace(/\\n/g, '\n');
  const verifyUrl = optional('JWT_VERIFY_URL');
  const base = {
    issuer: optional('JWT_ISSUER'),
    audience: optional('JWT_AUDIENCE'),
    clockToleranceS: int('JWT_CLOCK_TOLERANCE_S', 0),
    userClaim: optional('JWT_USER_CLAIM') ?? DEFAULTS.JWT_USER_CLAIM,
    verifyTimeoutMs: int('JWT_VERIFY_TIMEOUT_MS', 1),
  };
  const configured = [secret && 'JWT_SECRET', publicKey && 'JWT_PUBLIC_KEY', verifyUrl && 'JWT_VERIFY_URL'].filter(Boolean);
  if (configured.length !== 1) {
    if (configured.length === 0 && apiJwtRead) return { mode: 'remote', algorithms: [], ...base };
    problems.push(
      configured.length === 0
        ? "JWT_SECRET, JWT_PUBLIC_KEY or JWT_VERIFY_URL is required (how job tokens are verified; the original worker's API_JWT is read too)"
        : `set only one of ${configured.join(', ')} (how job tokens are verified)`,
    );
    return { mode: 'local', algorithms: [], ...base };
  }
  if (verifyUrl) {
    try {
      if (!['http:', 'https:'].includes(new URL(verifyUrl).protocol)) throw new Error('protocol');
    } catch {
      problems.push(`JWT_VERIFY_URL must be an http or https URL (got ${JSON.stringify(redactUrl(verifyUrl))})`);
    }
    return { mode: 'remote', verifyUrl, algorithms: [], ...base };
  }
  const kind = secret ? 'secret' : 'publicKey';
  const listed = optional('JWT_ALGORITHMS');
  const algorithms = (listed ? listed.split(',').map((a) => a.trim()).filter(Boolean) : defaultAlgorithms(kind)) as Algorithm[];
  const problem = validateAlgorithms(kind, algorithms);
  if (problem) problems.push(`JWT_ALGORITHMS: ${problem}`);
  const keyProblem = publicKey && !problem ? validatePublicKey(publicKey, algorithms) : undefined;
  if (keyProblem) problems.push(`JWT_PUBLIC_KEY: ${keyProblem} (expected a PEM public key: -----BEGIN PUBLIC KEY----- ...)`);
  return { mode: 'local', secret, publicKey, algorithms, ...base };
}

/** What the original StoryBang worker's `.env` says, in the new names, and which of its names were read. */
export interface LegacyReading {
  /** The environment given, with the new names filled in where they were absent. */
  env: Env;
  /** The original names actually read (a name whose new one is set is not read). */
  legacyNames: string[];
  /** Malformed original values, each naming the original variable. */
  problems: string[];
}

/**
 * The drop-in for the StoryBang worker being replaced: its `.env` works unchanged. When the new name is absent,
 * BULL_GENERATOR_HOST + BULL_GENERATOR_PORT stand for REDIS_URL, API_GROK for GROK_API_KEY, and API_JWT (the JWT
 * service's base URL) for JWT_VERIFY_URL when no way of verifying tokens is set. The new name always wins; the
 * original's PORT (an HTTP port it never used) is ignored.
 */
export function readLegacyNames(given: Env): LegacyReading {
  const env: Env = { ...given };
  const legacyNames: string[] = [];
  const problems: string[] = [];
  const present = (name: string): string | undefined => {
    const value = given[name]?.trim();
    return value ? value : undefined;
  };

  const host = present('BULL_GENERATOR_HOST');
  const port = present('BULL_GENERATOR_PORT');
  if (present('REDIS_URL') === undefined && (host !== undefined || port !== undefined)) {
    if (host !== undefined) legacyNames.push('BULL_GENERATOR_HOST');
    if (port !== undefined) legacyNames.push('BULL_GENERATOR_PORT');
    const redisUrl = legacyRedisUrl(host ?? DEFAULTS.BULL_GENERATOR_HOST, port ?? DEFAULTS.BULL_GENERATOR_PORT, problems);
    if (redisUrl !== undefined) env.REDIS_URL = redisUrl;
  }

  const apiGrok = present('API_GROK');
  if (present('GROK_API_KEY') === undefined && apiGrok !== undefined) {
    legacyNames.push('API_GROK');
    env.GROK_API_KEY = apiGrok;
  }

  const apiJwt = present('API_JWT');
  // JWT_SECRET counts as set even when it is only spaces, as readJwt reads it.
  const verifying = (given.JWT_SECRET ?? '') !== '' || present('JWT_PUBLIC_KEY') !== undefined || present('JWT_VERIFY_URL') !== undefined;
  if (!verifying && apiJwt !== undefined) {
    legacyNames.push('API_JWT');
    if (isHttpUrl(apiJwt)) {
      // The original called `${API_JWT}/Verify_Jwt`; a trailing slash would make that `//Verify_Jwt`.
      env.JWT_VERIFY_URL = `${apiJwt.replace(/\/+$/, '')}/Verify_Jwt`;
    } else {
      problems.push(`API_JWT must be the JWT service's http or https base URL, e.g. http://jwt:4000 (got ${JSON.stringify(redactUrl(apiJwt))})`);
    }
  }
  return { env, legacyNames, problems };
}

/** `redis://host:port` from the original's pair, or undefined with a problem naming the variable at fault. */
function legacyRedisUrl(host: string, port: string, problems: string[]): string | undefined {
  const portNumber = Number(port);
  const portOk = /^\d+$/.test(port) && portNumber >= 1 && portNumber <= 65535;
  if (!portOk) problems.push(`BULL_GENERATOR_PORT must be a port number from 1 to 65535 (got ${JSON.stringify(port)})`);
  // A bare IPv6 address needs brackets in a URL; anything with a scheme, a path or credentials is not a host.
  const hostPart = /^[0-9a-f]*:[0-9a-f:.]*$/i.test(host) ? `[${host}]` : host;
  const hostOk = /^(\[[0-9a-f:.]+\]|[a-z0-9]([a-z0-9._-]*[a-z0-9])?)$/i.test(hostPart) && isParsable(`redis://${hostPart}:6379`);
  if (!hostOk) problems.push(`BULL_GENERATOR_HOST must be a host name or IP address, e.g. 127.0.0.1 (got ${JSON.stringify(host)})`);
  return hostOk && portOk ? `redis://${hostPart}:${portNumber}` : undefined;
}

function isParsable(value: string): boolean {
  try {
    new URL(value);
    return true;
  } catch {
    return false;
  }
}

function isHttpUrl(value: string): boolean {
  try {
    return ['http:', 'https:'].includes(new URL(value).protocol);
  } catch {
    return false;
  }
}

/** The notification service's address; a bare port means the service on this machine. */
function notificationUrl(value: string | undefined, problems: string[]): string {
  if (value === undefined) {
    problems.push('PORT_MESSAGES_USERS is required: the socket.io notification service URL (e.g. http://messages:4001) or a local port');
    return '';
  }
  if (/^\d+$/.test(value)) return `http://127.0.0.1:${value}`;
  try {
    const parsed = new URL(value);
    if (!['http:', 'https:', 'ws:', 'wss:'].includes(parsed.protocol)) throw new Error('protocol');
    return value;
  } catch {
    problems.push(`PORT_MESSAGES_USERS must be an http(s) or ws(s) URL or a port number (got ${JSON.stringify(value)})`);
    return value;
  }
}

/** A URL with its credentials and query (which may carry a key) replaced, safe to print. */
export function redactUrl(value: string | undefined): string | undefined {
  if (!value) return value;
  try {
    const parsed = new URL(value);
    if (parsed.password) parsed.password = '***';
    if (parsed.username && parsed.password === '') parsed.username = '***';
    if (parsed.search) parsed.search = '?***';
    return parsed.toString();
  } catch {
    return value.replace(/\/\/[^@/]*@/, '//***@');
  }
}

/** The effective settings as the start log line shows them: no secrets. */
export function describeConfig(config: Config): Record<string, unknown> {
  const { jwt, grok, ...rest } = config;
  return {
    ...rest,
    redisUrl: redactUrl(config.redisUrl),
    notify: { ...config.notify, url: redactUrl(config.notify.url) },
    jwt: {
      mode: jwt.mode,
      key: jwt.secret ? 'secret' : jwt.publicKey ? 'publicKey' : undefined,
      algorithms: jwt.algorithms,
      issuer: jwt.issuer,
      audience: jwt.audience,
      clockToleranceS: jwt.clockToleranceS,
      userClaim: jwt.userClaim,
      verifyUrl: redactUrl(jwt.verifyUrl),
    },
    grok: {
      apiUrl: redactUrl(grok.apiUrl),
      model: grok.model,
      timeoutMs: grok.timeoutMs,
      maxRetries: grok.maxRetries,
      aspectRatio: grok.aspectRatio,
      resolution: grok.resolution,
      apiKeySet: grok.apiKey !== '',
    },
  };
}
