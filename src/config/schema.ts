import type { Algorithm } from 'jsonwebtoken';
import { bool, dollars, int, list, matching, oneOf, pem, text, url, urlOrPort, word } from './kinds';
import { apiGrok, apiJwt, bullGeneratorPair } from './legacy';
import { defaultsOf, setting, Values } from './setting';

/**
 * Every setting, declared once: its variable, kind, default and original StoryBang name, with its doc comment,
 * grouped as the Config nests them. The Config type is derived from these; rules over several settings are in
 * rules.ts. A variable set to nothing (or only spaces) counts as unset, so a copied .env.example keeps the defaults.
 */

/**
 * xAI's image settings are checked by their form, not against today's values: a model, ratio, resolution or quality xAI
 * adds later works without a new release, and one xAI refuses comes back as a 400 naming the field, which the
 * provider reports as a misconfiguration. The examples are today's values.
 */
const MODEL_NAME = matching(
  /^[A-Za-z0-9._-]+$/,
  'a model name (letters, digits, ".", "-", "_"), e.g. grok-imagine-image, grok-imagine-image-2.0 or grok-2-image-1212',
);
const ASPECT_RATIO = matching(
  /^(\d+(\.\d+)?:\d+(\.\d+)?|auto)$/,
  '<width>:<height> (decimals allowed) or auto, e.g. 1:1, 3:4, 16:9 or 9:19.5 (grok-imagine-image-2.0 adds 21:9 and 5:2)',
  { orUnset: 'to let xAI choose' },
);
const RESOLUTION = matching(/^\d+(\.\d+)?k$/, '<number>k (decimals allowed), e.g. 1k, 1.5k or 2k', {
  lowercase: true,
  orUnset: 'to let xAI choose',
});
/** Today's values are grok-imagine-image-2.0's; the 1.0 models refuse any (rules.ts). */
const QUALITY = matching(/^[a-z]+$/, 'a lowercase word, e.g. low, medium or high (grok-imagine-image-2.0)', { orUnset: 'to leave it out' });

const NOTIFY_FORMATS = ['schema', 'legacy'] as const;
export type NotifyFormat = (typeof NOTIFY_FORMATS)[number];

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
const REDIS = url('redis', 'rediss');

/** Where the queue is: what the worker, the producers and the command-line tools share. */
export const QUEUE_SETTINGS = {
  /** The queue's Redis; `rediss://` turns TLS on. */
  redisUrl: setting('REDIS_URL', REDIS, { default: 'redis://127.0.0.1:6379', legacy: bullGeneratorPair }),
  /** A Redis Cluster's nodes instead of REDIS_URL (comma-separated); empty: no cluster. */
  redisClusterNodes: setting('REDIS_CLUSTER_NODES', list(REDIS, 'comma-separated redis or rediss URLs, e.g. redis://node-1:6379,redis://node-2:6379'), {
    default: '',
  }),
  /** false accepts self-signed certificates on `rediss://` (Heroku Redis). */
  redisTlsRejectUnauthorized: setting('REDIS_TLS_REJECT_UNAUTHORIZED', bool, { default: 'true' }),
  /** The Bull queue the producers add jobs to. */
  queueName: setting('QUEUE_NAME', text, { default: 'Grok_Image_Generator' }),
  /** Bull's key prefix, the same as the producers'; on a cluster it must hold a hash tag (`{bull}`). */
  queuePrefix: setting('QUEUE_PREFIX', word, { default: 'bull' }),
};

const JWT_SETTINGS = {
  /** HMAC secret (HS256/384/512); one of JWT_SECRET, JWT_PUBLIC_KEY, JWT_VERIFY_URL. Read as written. */
  secret: setting('JWT_SECRET', text, { verbatim: true }),
  /** PEM public key (RS/PS/ES); `\n` escapes are accepted. */
  publicKey: setting('JWT_PUBLIC_KEY', pem),
  /** Allow-list, comma separated; default: the family of the key given. `none` is never accepted. */
  algorithms: setting('JWT_ALGORITHMS', list(text)),
  /** Required issuer (`iss`) when set. */
  issuer: setting('JWT_ISSUER', text),
  /** Required audience (`aud`) when set. */
  audience: setting('JWT_AUDIENCE', text),
  /** Seconds of clock skew tolerated for `exp`/`nbf`. */
  clockToleranceS: setting('JWT_CLOCK_TOLERANCE_S', int({ min: 0 }), { default: '5' }),
  /** The claim that must equal the job's Id. */
  userClaim: setting('JWT_USER_CLAIM', text, { default: 'Id' }),
  /** A verification service instead of a key: `POST {Token}` -> `{Status: boolean, ...}`. */
  verifyUrl: setting('JWT_VERIFY_URL', url('http', 'https'), { legacy: apiJwt }),
  /** Timeout of one call to JWT_VERIFY_URL. */
  verifyTimeoutMs: setting('JWT_VERIFY_TIMEOUT_MS', int({ min: 1 }), { default: '10000' }),
};

export const SCHEMA = {
  ...QUEUE_SETTINGS,
  /** Caps jobs in flight per process; unset: the worker sizes itself to the pace and the image API's latency. */
  concurrency: setting('CONCURRENCY', int({ min: 1 })),
  /** Longer prompts are cut at a word boundary (the cut is logged). */
  promptMaxLength: setting('PROMPT_MAX_LENGTH', int({ min: 1, max: 100_000 }), { default: '1000' }),
  /** Put before every prompt (a house style); read as written, spaces included. */
  promptPrefix: setting('PROMPT_PREFIX', text, { default: '', verbatim: true }),
  /** `grok`: xAI's API; `local`: offline deterministic PNGs (demo, development, load tests). */
  imageProvider: setting('IMAGE_PROVIDER', oneOf(['grok', 'local']), { default: 'grok' }),
  grok: {
    /** xAI's images endpoint. */
    apiUrl: setting('GROK_API', url('https', 'http'), { default: 'https://api.x.ai/v1/images/generations' }),
    /** xAI API key; required with IMAGE_PROVIDER=grok. Never logged. */
    apiKey: setting('GROK_API_KEY', text, { default: '', legacy: apiGrok }),
    /** Sent as is: `grok-imagine-image` (1.0), `grok-imagine-image-2.0`, the legacy `grok-2-image-1212`, or a newer one. */
    model: setting('GROK_MODEL', MODEL_NAME, { default: 'grok-imagine-image' }),
    /** Timeout of one request to the API (and of downloading a `url` answer). */
    timeoutMs: setting('GROK_TIMEOUT_MS', int({ min: 1 }), { default: '60000' }),
    /** Extra attempts for transient failures (network, timeout, 408, 5xx) inside one job. */
    maxRetries: setting('GROK_MAX_RETRIES', int({ min: 0, max: 20 }), { default: '3' }),
    /** Sent as `aspect_ratio` only when set. */
    aspectRatio: setting('GROK_ASPECT_RATIO', ASPECT_RATIO),
    /** Sent as `resolution` only when set. */
    resolution: setting('GROK_RESOLUTION', RESOLUTION),
    /** Sent as `quality` only when set; a model known to refuse it stops the start. */
    quality: setting('GROK_QUALITY', QUALITY),
  },
  jwt: JWT_SETTINGS,
  /** One limiter for every image request from every worker on the Redis (xAI allows a team 5 per second). */
  rateLimit: {
    /** Requests per window; 0 turns the limiter off. */
    max: setting('GROK_RATE_LIMIT', int({ min: 0 }), { default: '5' }),
    /** The limiter's window. */
    windowMs: setting('GROK_RATE_WINDOW_MS', int({ min: 1 }), { default: '1000' }),
  },
  /** How long one job may spend waiting for capacity and retrying before GENERATION_FAILED. */
  generationDeadlineMs: setting('GENERATION_DEADLINE_MS', int({ min: 1 }), { default: '300000' }),
  /** Cap on one user's jobs in flight across the fleet; 0 means no cap. */
  userConcurrency: setting('USER_CONCURRENCY', int({ min: 0, max: 1000 }), { default: '0' }),
  /** How long a moderation refusal of a prompt for a user is remembered, in seconds; 0 turns it off. */
  refusalMemoryS: setting('REFUSAL_MEMORY_S', int({ min: 0 }), { default: '600' }),
  bill: {
    /** Pictures bought for one user per UTC day, across the fleet; beyond it, QUOTA_REACHED. 0: no cap. */
    userDailyImages: setting('USER_DAILY_IMAGES', int({ min: 0 }), { default: '0' }),
    /** What the fleet may spend on pictures per UTC day, in USD; once reached, QUOTA_REACHED. 0: no cap. */
    dailyBudgetUsd: setting('DAILY_BUDGET_USD', dollars, { default: '0' }),
  },
  pictures: {
    /** How long a delivered picture is kept to answer the same ask again (user, page, prompt) for free. 0: off. */
    rememberS: setting('REMEMBER_PICTURES_S', int({ min: 0 }), { default: '0' }),
    /** The Redis memory the pictures kept may take, in MB; the oldest go first. */
    rememberMb: setting('REMEMBER_PICTURES_MB', int({ min: 1 }), { default: '64' }),
  },
  /** Simulated latency of the local provider. */
  localImageDelayMs: setting('LOCAL_IMAGE_DELAY_MS', int({ min: 0 }), { default: '0' }),
  notify: {
    /** The socket.io notification service; a bare port means the service on this machine. */
    url: setting('PORT_MESSAGES_USERS', urlOrPort, {
      required: 'the socket.io notification service URL (e.g. http://messages:4001) or a local port',
    }),
    /** Emitted to the service, which relays it to the room as `<event>_Response`. */
    event: setting('NOTIFY_EVENT', text, { default: 'Profile' }),
    /** Room = job Id + this suffix. */
    roomSuffix: setting('NOTIFY_ROOM_SUFFIX', text, { default: '_Grok_Image_Generator' }),
    /** `legacy`: what the StoryBang relay forwards (only {Message, Status, Number}) and its front end reads. */
    format: setting('NOTIFY_FORMAT', oneOf(NOTIFY_FORMATS), { default: 'legacy' }),
    /** Send a `processing` event when work starts (schema format only). */
    progress: setting('NOTIFY_PROGRESS', bool, { default: 'true' }),
    /** > 0: wait this long for the service's acknowledgement, and retry without one. */
    ackTimeoutMs: setting('NOTIFY_ACK_TIMEOUT_MS', int({ min: 0 }), { default: '0' }),
    /** How long one delivery keeps retrying while the service is away. */
    maxWaitMs: setting('NOTIFY_MAX_WAIT_MS', int({ min: 0 }), { default: '120000' }),
  },
  /** How long a generated, undelivered image is kept in Redis for a later attempt. */
  checkpointTtlS: setting('CHECKPOINT_TTL_S', int({ min: 1 }), { default: '3600' }),
  /** The fair queue's lease on a running job, renewed while it runs: a crashed worker's jobs are taken over once it lapses. */
  lockDurationMs: setting('LOCK_DURATION_MS', int({ min: 1000 }), { default: '60000' }),
  /** How often the fair queue looks for lapsed leases; 0: never. */
  stalledIntervalMs: setting('STALLED_INTERVAL_MS', int({ min: 0 }), { default: '30000' }),
  /** How many times a job's lease may lapse: the next lapse ends the job (GENERATION_FAILED) instead of running it again. */
  maxStalledCount: setting('MAX_STALLED_COUNT', int({ min: 0 }), { default: '1' }),
  /** Time in-flight jobs get to finish after SIGTERM (stay under the platform's grace period). */
  shutdownTimeoutMs: setting('SHUTDOWN_TIMEOUT_MS', int({ min: 0 }), { default: '25000' }),
  /** pino's level for the JSON logs on stdout. */
  logLevel: setting('LOG_LEVEL', oneOf(LOG_LEVELS), { default: 'info' }),
  /** Queue counts logged every this many ms; 0: never. */
  statsIntervalMs: setting('STATS_INTERVAL_MS', int({ min: 0 }), { default: '60000' }),
};

/** Every default, by variable name, as text: the one visible list (derived from the declarations). */
export const DEFAULTS = defaultsOf(SCHEMA);

type Settings = Values<typeof SCHEMA>;

/** How job tokens are verified: `local` with a key, or `remote` through JWT_VERIFY_URL. */
export interface JwtConfig extends Omit<Values<typeof JWT_SETTINGS>, 'algorithms'> {
  mode: 'local' | 'remote';
  /** The allow-list in force: JWT_ALGORITHMS, or the key's family; empty when remote. */
  algorithms: Algorithm[];
}

export interface QueueSettings extends Values<typeof QUEUE_SETTINGS> {
  /** The original StoryBang worker's variables that were read because their new names were absent. */
  legacyNames: string[];
}

export interface Config extends Omit<Settings, 'jwt' | 'rateLimit'> {
  /**
   * Run on the original StoryBang names only: promptPrefix and promptMaxLength are then the original worker's house
   * style and 700 (legacy.ts), not PROMPT_PREFIX's and PROMPT_MAX_LENGTH's defaults.
   */
  originalLook: boolean;
  jwt: JwtConfig;
  /** One limiter for every image request from every worker on the Redis; null when GROK_RATE_LIMIT=0. */
  rateLimit: Settings['rateLimit'] | null;
  /** The original StoryBang worker's variables that were read because their new names were absent. */
  legacyNames: string[];
}
