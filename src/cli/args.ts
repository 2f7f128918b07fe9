import { parseArgs, ParseArgsConfig } from 'node:util';
import type Bull from 'bull';
import dotenv from 'dotenv';
import type { RedisOptions } from 'ioredis';
import { redactUrl } from '../base/urls';
import { ConfigError, Env, loadQueueSettings, QueueSettings } from '../config';
import { createImageQueue } from '../producer';
import { timeLimit } from '../base/sleep';

/** What the commands share: their flags, streams and exit codes, the queue settings they read, a fail-fast Redis. */

export type { Env };

export interface CliIO {
  stdout: { write(chunk: string): unknown };
  stderr: { write(chunk: string): unknown };
}

export const EXIT_OK = 0;
/** Redis unreachable or a command failed. */
export const EXIT_FAILURE = 1;
/** Bad arguments or settings: nothing was done. */
export const EXIT_USAGE = 2;

/** Bad arguments or settings; the command prints the message (and its usage) and exits 2. */
export class UsageError extends Error {
  constructor(
    message: string,
    /** Whether the usage text helps (a wrong flag), or only the message does (a wrong variable). */
    readonly showUsage = true,
  ) {
    super(message);
    this.name = 'UsageError';
  }
}

export type { QueueSettings };

/** The command's flags (`--name value`, `--name`), no positionals; an unknown or malformed one is a UsageError. */
export function parseFlags<O extends NonNullable<ParseArgsConfig['options']>>(argv: string[], options: O) {
  try {
    return parseArgs({ args: argv, strict: true, allowPositionals: false, options }).values;
  } catch (err) {
    throw new UsageError(err instanceof Error ? err.message : String(err));
  }
}

/**
 * REDIS_URL (or REDIS_CLUSTER_NODES), QUEUE_NAME, QUEUE_PREFIX and REDIS_TLS_REJECT_UNAUTHORIZED read by src/config, as the worker reads
 * them: the same defaults, and the original StoryBang worker's BULL_GENERATOR_HOST/PORT when REDIS_URL is absent.
 */
export function readQueueSettings(env: Env): QueueSettings {
  try {
    return loadQueueSettings(env);
  } catch (err) {
    if (err instanceof ConfigError) throw new UsageError(err.problems.join('; '), false);
    throw err;
  }
}

/**
 * A command runs once and must not wait forever for a Redis that is not there: one connection attempt
 * with a timeout, no reconnecting, and queued commands fail as soon as the connection is gone.
 */
const CLI_REDIS_OPTIONS: RedisOptions = {
  connectTimeout: 5000,
  maxRetriesPerRequest: 0,
  retryStrategy: () => null,
};

/** The queue, plus the last connection error it saw: ioredis rejects commands with a bare "Connection is closed.". */
interface CliQueue {
  queue: Bull.Queue;
  connectionError(): Error | undefined;
}

function openQueue(settings: QueueSettings): CliQueue {
  const queue = createImageQueue(settings.redisUrl, settings.queueName, {
    tlsRejectUnauthorized: settings.redisTlsRejectUnauthorized,
    prefix: settings.queuePrefix,
    clusterNodes: settings.redisClusterNodes,
    redis: CLI_REDIS_OPTIONS,
  });
  let lastError: Error | undefined;
  queue.on('error', (err: Error) => {
    lastError = err;
  });
  return { queue, connectionError: () => lastError };
}

/** Bull waits for nothing here (no jobs are processed), but a dead connection must not hold the process. */
async function closeQueue(queue: Bull.Queue): Promise<void> {
  await Promise.race([queue.close().catch(() => undefined), timeLimit(2000)]);
}

/** Where the queue's Redis is, its password left out: the URL, or the cluster's nodes. */
export function redisWhere(settings: QueueSettings): string {
  const nodes = settings.redisClusterNodes;
  return nodes.length > 0 ? `the cluster of ${nodes.map(redactUrl).join(', ')}` : String(redactUrl(settings.redisUrl));
}

/** One line for the operator: where, and why (with a hint when it is the certificate). */
function redisFailureMessage(settings: QueueSettings, err: unknown, connectionError: Error | undefined): string {
  const cause = connectionError ?? (err instanceof Error ? err : new Error(String(err)));
  const where = `${redisWhere(settings)} (queue ${settings.queueName})`;
  const hint = /certificate/i.test(cause.message) ? '; for a self-signed certificate set REDIS_TLS_REJECT_UNAUTHORIZED=false' : '';
  return `Redis at ${where} failed: ${cause.message || cause.name}${hint}`;
}

/**
 * Runs `work` on the queue and closes it; resolves to the exit code. A Redis failure is one line on stderr,
 * `<command>: Redis at ... failed: ...` and what `progress` adds (how far the work got), and exit 1.
 */
export async function onQueue(
  command: string,
  settings: QueueSettings,
  io: CliIO,
  work: (queue: Bull.Queue) => Promise<void>,
  progress: () => string = () => '',
): Promise<number> {
  const { queue, connectionError } = openQueue(settings);
  try {
    await work(queue);
    return EXIT_OK;
  } catch (err) {
    io.stderr.write(`${command}: ${redisFailureMessage(settings, err, connectionError())}${progress()}\n`);
    return EXIT_FAILURE;
  } finally {
    await closeQueue(queue);
  }
}

export type CliMain = (argv: string[], env: Env, io: CliIO) => Promise<number>;

/** The `node dist/cli/x.js` entry: .env below the real environment, then the command, then its exit code. */
export function runAsScript(main: CliMain): void {
  dotenv.config({ quiet: true });
  main(process.argv.slice(2), process.env, process).then(
    (code) => exit(code),
    (err: unknown) => {
      process.stderr.write(`${err instanceof Error ? err.message : String(err)}\n`);
      exit(EXIT_FAILURE);
    },
  );
}

function exit(code: number): void {
  process.exitCode = code;
  // Everything is closed by now; should a connection linger anyway, it must not keep the command alive.
  setTimeout(() => process.exit(code), 1000).unref();
}
