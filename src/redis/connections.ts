import { isIP } from 'node:net';
import Redis, { Cluster, RedisOptions } from 'ioredis';
import type { RedisClient } from './scripts';
import type { Logger } from '../base/logger';
import { timeLimit } from '../base/sleep';
import { Throttle } from '../base/throttle';

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

export type ClientType = 'client' | 'subscriber' | 'bclient' | 'wake' | 'intake';

/** Where Redis is: one server (`url`), or a Redis Cluster reached through any of `clusterNodes`. */
export interface RedisTarget {
  url: string;
  clusterNodes: string[];
  tlsRejectUnauthorized: boolean;
}

/**
 * Bull's createClient, and the worker's own connections: one shared command connection, one subscriber, and a
 * fresh connection for each that blocks (Bull's blocking reads, the intake's, the fair queue's wake-up
 * subscription). Connections that block or subscribe must queue commands forever while Redis is away, hence
 * `maxRetriesPerRequest: null` and no ready check. On a cluster every connection is an ioredis Cluster; the
 * queue's hash-tagged prefix keeps all of its keys in one slot.
 */
export function redisClientFactory(target: RedisTarget, logger: Logger): { create: (type: ClientType) => RedisClient; closeAll: () => Promise<void> } {
  const clients: Array<{ type: ClientType; redis: RedisClient }> = [];
  let client: RedisClient | undefined;
  let subscriber: RedisClient | undefined;
  const make = (type: ClientType, blocking: boolean): RedisClient => {
    const redis = connectRedis(target, type, blocking);
    watchErrors(redis, type, logger);
    clients.push({ type, redis });
    return redis;
  };
  const create = (type: ClientType): RedisClient => {
    if (type === 'client') return (client ??= make(type, false));
    if (type === 'subscriber') return (subscriber ??= make(type, true));
    return make(type, true);
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

/**
 * One connection to `target`, named in CLIENT LIST; `blocking` for one that blocks or subscribes. `options` are laid
 * under the ones a blocking connection needs (a command that gives up at once, for a short-lived CLI).
 */
export function connectRedis(target: RedisTarget, type: string, blocking: boolean, options: RedisOptions = {}): RedisClient {
  const extra: RedisOptions = {
    ...options,
    connectionName: `grok-image-worker:${type}`,
    ...(blocking ? { maxRetriesPerRequest: null, enableReadyCheck: false } : {}),
  };
  if (target.clusterNodes.length === 0) return new Redis({ ...redisOptionsFromUrl(target.url, target.tlsRejectUnauthorized), ...extra });
  const nodes = target.clusterNodes.map((url) => redisOptionsFromUrl(url, target.tlsRejectUnauthorized));
  const { username, password, tls } = nodes[0];
  return new Cluster(
    nodes.map(({ host, port }) => ({ host, port })),
    {
      redisOptions: { username, password, tls, ...extra },
      enableReadyCheck: !blocking,
      // In a cluster, when to give up reconnecting and retrying a command are the cluster's options, not a node's.
      ...(extra.retryStrategy ? { clusterRetryStrategy: extra.retryStrategy } : {}),
      ...(extra.maxRetriesPerRequest !== undefined ? { maxRetriesPerRequest: extra.maxRetriesPerRequest } : {}),
    } as ConstructorParameters<typeof Cluster>[1],
  );
}

/** ioredis reconnects by itself; while Redis is away, one log line per connection per 30 s is enough. */
function watchErrors(redis: RedisClient, type: ClientType, logger: Logger): void {
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
