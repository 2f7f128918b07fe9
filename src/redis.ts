import { isIP } from 'node:net';
import Redis, { RedisOptions } from 'ioredis';
import type { Logger } from './logger';
import { timeLimit } from './sleep';
import { Throttle } from './throttle';

/**
 * ioredis options from a redis:// or rediss:// URL. Bull's own URL parsing ignores `rediss://`, so TLS
 * (Heroku Redis, with self-signed certificates when `rejectUnauthorized` is false) is set up here.
 */
export function redisOptionsFromUrl(url: string, rejectUnauthorized = true): RedisOptions {
  const parsed = new URL(url);
  const db = parsed.pathname.replace(/^\//, '');
  const options: RedisOptions = {
    host: parsed.hostname.replace(/^\[|\]$/g, '') || '127.0.0.1',
    port: parsed.port ? Number(parsed.port) : 6379,
    db: db ? Number(db) : 0,
  };
  if (parsed.username) options.username = decodeURIComponent(parsed.username);
  if (parsed.password) options.password = decodeURIComponent(parsed.password);
  if (parsed.protocol === 'rediss:') {
    // SNI takes host names only; Node warns when it is given an IP address.
    options.tls = isIP(options.host!) ? { rejectUnauthorized } : { rejectUnauthorized, servername: options.host };
  }
  return options;
}

export type ClientType = 'client' | 'subscriber' | 'bclient' | 'wake';

/**
 * Bull's createClient: one shared command connection, one subscriber, and a fresh blocking connection
 * per request (Bull requires that). The blocking and subscriber connections must queue commands
 * forever while Redis is away, hence `maxRetriesPerRequest: null` and no ready check.
 */
export function bullClientFactory(base: RedisOptions, logger: Logger): { create: (type: ClientType) => Redis; closeAll: () => Promise<void> } {
  const clients: Array<{ type: ClientType; redis: Redis }> = [];
  let client: Redis | undefined;
  let subscriber: Redis | undefined;
  const make = (type: ClientType, options: RedisOptions): Redis => {
    const redis = new Redis({ ...options, connectionName: `grok-image-worker:${type}` });
    watchErrors(redis, type, logger);
    clients.push({ type, redis });
    return redis;
  };
  const blocking = { ...base, maxRetriesPerRequest: null, enableReadyCheck: false };
  const create = (type: ClientType): Redis => {
    if (type === 'client') return (client ??= make(type, base));
    if (type === 'subscriber') return (subscriber ??= make(type, blocking));
    // 'bclient' (Bull's blocking reads) and 'wake' (the fair queue's subscription) each get their own.
    return make(type, blocking);
  };
  // Bull does not close connections it did not create: that is ours to do, after queue.close().
  const closeAll = async (): Promise<void> => {
    await Promise.all(
      clients.map(async ({ type, redis }) => {
        if (redis.status === 'end') return;
        // A QUIT would queue behind a blocking read (BRPOPLPUSH) until it times out; these connections
        // hold nothing to flush.
        if (type !== 'client') return redis.disconnect();
        try {
          await Promise.race([redis.quit(), timeLimit(500)]);
        } catch {
          // Already closing or unreachable: disconnect below.
        }
        redis.disconnect();
      }),
    );
  };
  return { create, closeAll };
}

/** ioredis reconnects by itself; while Redis is away, one log line per connection per 30 s is enough. */
function watchErrors(redis: Redis, type: ClientType, logger: Logger): void {
  const throttle = new Throttle(30_000);
  let down = false;
  redis.on('error', (err: Error) => {
    if (!throttle.allow()) return;
    down = true;
    logger.warn({ component: 'redis', connection: type, err: { message: err.message } }, 'redis connection error, reconnecting');
  });
  redis.on('ready', () => {
    if (!down) return;
    down = false;
    throttle.reset();
    logger.info({ component: 'redis', connection: type }, 'redis connection restored');
  });
}
