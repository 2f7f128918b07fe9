import dotenv from 'dotenv';
import type { Algorithm } from 'jsonwebtoken';
import { defaultAlgorithms, validateAlgorithms, validatePublicKey } from './tokenVerifier';

/** Every setting with its default, in one visible place (names and defaults are the contract's). */
export const DEFAULTS = {
  REDIS_URL: 'redis://127.0.0.1:6379',
  REDIS_TLS_REJECT_UNAUTHORIZED: 'true',
  QUEUE_NAME: 'Grok_Image_Generator',
  CONCURRENCY: '5',
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
  GROK_RATE_WINDOW_MS: '60000',
  NOTIFY_EVENT: 'Profile',
  NOTIFY_ROOM_SUFFIX: '_Grok_Image_Generator',
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
} as const;

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
  concurrency: number;
  promptMaxLength: number;
  promptPrefix: string;
  jwt: JwtConfig;
  imageProvider: 'grok' | 'local';
  grok: { apiUrl: string; apiKey: string; model: string; timeoutMs: number; maxRetries: number };
  /** Shared limiter for the image API across all workers (Bull's limiter), when set. */
  rateLimit?: { max: number; durationMs: number };
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

export function loadConfig(env: Env): Config {
  const problems: string[] = [];
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

  const redisUrl = url('REDIS_URL', raw('REDIS_URL'), ['redis:', 'rediss:']);
  const imageProvider = oneOf('IMAGE_PROVIDER', ['grok', 'local'] as const);
  const apiKey = optional('GROK_API_KEY') ?? '';
  if (imageProvider === 'grok' && !apiKey) {
    problems.push('GROK_API_KEY is required when IMAGE_PROVIDER=grok (an xAI API key; or set IMAGE_PROVIDER=local for offline images)');
  }

  const rateLimitRaw = optional('GROK_RATE_LIMIT');
  const rateLimit = rateLimitRaw === undefined ? undefined : { max: int('GROK_RATE_LIMIT', 1), durationMs: int('GROK_RATE_WINDOW_MS', 1) };

  const config: Config = {
    redisUrl,
    redisTlsRejectUnauthorized: bool('REDIS_TLS_REJECT_UNAUTHORIZED'),
    queueName: raw('QUEUE_NAME')!,
    concurrency: int('CONCURRENCY', 1, 1000),
    promptMaxLength: int('PROMPT_MAX_LENGTH', 1, 100_000),
    promptPrefix: env.PROMPT_PREFIX ?? '',
    jwt: readJwt(env, optional, int, problems),
    imageProvider,
    grok: {
      apiUrl: url('GROK_API', raw('GROK_API'), ['https:', 'http:']),
      apiKey,
      model: raw('GROK_MODEL')!,
      timeoutMs: int('GROK_TIMEOUT_MS', 1),
      maxRetries: int('GROK_MAX_RETRIES', 0, 20),
    },
    rateLimit,
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
  };
  if (!config.queueName.trim()) problems.push('QUEUE_NAME must not be empty');

  if (problems.length > 0) throw new ConfigError(problems);
  return config;
}

function readJwt(
  env: Env,
  optional: (name: string) => string | undefined,
  int: (name: string, min: number) => number,
  problems: string[],
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
    problems.push(
      configured.length === 0
        ? 'JWT_SECRET, JWT_PUBLIC_KEY or JWT_VERIFY_URL is required (how job tokens are verified)'
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
    grok: { apiUrl: redactUrl(grok.apiUrl), model: grok.model, timeoutMs: grok.timeoutMs, maxRetries: grok.maxRetries, apiKeySet: grok.apiKey !== '' },
  };
}
