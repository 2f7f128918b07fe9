import Bull from 'bull';
import type { RedisOptions } from 'ioredis';
import { DEFAULT_QUEUE_PREFIX, DEFAULTS } from './config';
import { validateJobData } from './pipeline/steps/jobData';
import { connectRedis, redisOptionsFromUrl } from './redis/connections';

/**
 * For Node services that enqueue image jobs: the job's shape, the options the existing front end uses, and a
 * helper that applies the worker's own validation before anything reaches Redis.
 */

/** A job as the worker reads it (the contract's job data). Other fields are ignored by the worker. */
export interface ImageJobData {
  /** The user: a non-empty string of at most 128 characters; names the notification room. */
  Id: string;
  /** Not blank. Longer than the worker's PROMPT_MAX_LENGTH: cut at a word boundary. */
  Prompt: string;
  /** A JWT for that user: its JWT_USER_CLAIM (default `Id`) must equal `Id`. */
  Token: string;
  /** Echoed back untouched in the notification, so the front end can find the image's slot. */
  Number?: string | number | boolean | null;
}

/**
 * What the existing front end sends, and the one place these options are written. The worker retries transient
 * failures itself, inside the job, so one Bull attempt is enough; finished jobs are removed (their outcome
 * reaches the user over socket.io).
 */
export const PRODUCER_DEFAULTS = { attempts: 1, removeOnComplete: true, removeOnFail: true } as const satisfies Bull.JobOptions;

/** The queue's defaults: the config's REDIS_URL and QUEUE_NAME defaults, so both sides meet on the same queue. */
export const DEFAULT_REDIS_URL: string = DEFAULTS.REDIS_URL;
export const DEFAULT_QUEUE_NAME: string = DEFAULTS.QUEUE_NAME;
/** Bull's key prefix: the worker's QUEUE_PREFIX default. */
export const PRODUCER_PREFIX: string = DEFAULT_QUEUE_PREFIX;

export interface ImageQueueOptions {
  /** false accepts self-signed certificates on `rediss://` (Heroku Redis). Default true. */
  tlsRejectUnauthorized?: boolean;
  /** Bull's key prefix: the worker's QUEUE_PREFIX. Default `bull`; on a cluster a hash-tagged one, e.g. `{bull}`. */
  prefix?: string;
  /** A Redis Cluster's nodes (`redis://` or `rediss://` URLs, the worker's REDIS_CLUSTER_NODES): the URL is then unused. */
  clusterNodes?: string[];
  /** Extra ioredis options laid over the ones taken from the URL or the nodes (e.g. `connectTimeout` for a short-lived CLI). */
  redis?: RedisOptions;
}

/**
 * A Bull queue to add image jobs to.
 * @param redisUrl `redis://` or `rediss://` (TLS); default `redis://127.0.0.1:6379`. Empty counts as unset.
 * @param queueName default `Grok_Image_Generator`.
 * Close it with `queue.close()` when done: it owns its Redis connections.
 */
export function createImageQueue(
  redisUrl: string | undefined = DEFAULT_REDIS_URL,
  queueName: string = DEFAULT_QUEUE_NAME,
  opts: ImageQueueOptions = {},
): Bull.Queue {
  const prefix = opts.prefix || PRODUCER_PREFIX;
  if (opts.clusterNodes?.length) {
    const target = { url: '', clusterNodes: opts.clusterNodes, tlsRejectUnauthorized: opts.tlsRejectUnauthorized ?? true };
    const clients: Array<{ disconnect(): void }> = [];
    const queue = new Bull(queueName || DEFAULT_QUEUE_NAME, {
      prefix,
      createClient: (type) => {
        const client = connectRedis(target, `producer:${type}`, type !== 'client', opts.redis);
        clients.push(client);
        return client as never;
      },
    });
    // Bull closes what it asked for, but a Cluster it subscribed with for events can outlive it and keep
    // reconnecting: every connection made here ends with the queue.
    const close = queue.close.bind(queue);
    queue.close = async (doNotWaitJobs?: boolean) => {
      try {
        await close(doNotWaitJobs);
      } finally {
        clients.forEach((client) => client.disconnect());
      }
    };
    return queue;
  }
  // Bull's own URL parsing ignores rediss://, so the connection options are built here.
  const redis = { ...redisOptionsFromUrl(redisUrl || DEFAULT_REDIS_URL, opts.tlsRejectUnauthorized ?? true), ...opts.redis };
  return new Bull(queueName || DEFAULT_QUEUE_NAME, { prefix, redis });
}

/**
 * Validates `data` with the worker's rules and adds it to `queue`.
 * Throws the worker's InvalidJobError (code `INVALID_JOB`, message naming the field) before touching Redis.
 * @param options Bull job options laid over PRODUCER_DEFAULTS (`attempts: 1, removeOnComplete: true, removeOnFail: true`).
 */
export async function enqueueImageJob(queue: Bull.Queue, data: ImageJobData, options: Bull.JobOptions = {}): Promise<Bull.Job<ImageJobData>> {
  validateJobData(data);
  return queue.add(data, { ...PRODUCER_DEFAULTS, ...options });
}
