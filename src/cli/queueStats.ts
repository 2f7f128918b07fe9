import type Bull from 'bull';
import { Cluster } from 'ioredis';
import { DEFAULTS } from '../config';
import { Bill, BillToday } from '../capacity/bill';
import { FairQueue } from '../queue/fairQueue';
import type { FairCounts } from '../queue/replies';
import { escapeGlob, RedisClient } from '../redis/scripts';
import { CliIO, Env, EXIT_OK, EXIT_USAGE, onQueue, parseFlags, QueueSettings, readQueueSettings, redisWhere, runAsScript, UsageError } from './args';

export const USAGE = `Usage: npm run -s queue:stats [-- --json]

Shows the worker's queue: Bull's jobs per state (waiting: not yet taken in; active: held by the fair queue
until they end), how long the oldest waiting one has waited, how many generated images wait for delivery
(checkpoints), and the fair queue: jobs waiting and their users, running, retrying later, answers held back,
and asks joined to an identical one.

  --json       one JSON line instead of the table
  -h, --help   this text

Environment (and .env), read as the worker reads it: REDIS_URL (default ${DEFAULTS.REDIS_URL}; or the original
worker's BULL_GENERATOR_HOST and BULL_GENERATOR_PORT), QUEUE_NAME (default ${DEFAULTS.QUEUE_NAME}),
QUEUE_PREFIX (default ${DEFAULTS.QUEUE_PREFIX}), REDIS_TLS_REJECT_UNAUTHORIZED.
Exit codes: 0 shown, 1 Redis failed, 2 bad arguments or settings.
`;

export const STATES = ['waiting', 'active', 'delayed', 'completed', 'failed', 'paused'] as const;
export type State = (typeof STATES)[number];

export interface QueueStats {
  queue: string;
  counts: Record<State, number>;
  /** Age of the job next in line (the oldest one the queue is FIFO), from its creation; null when none waits. */
  oldestWaitingAgeMs: number | null;
  /** Generated images kept until their notification is delivered (`<prefix>:<queue>:checkpoint:<fid>`). */
  checkpoints: number;
  /**
   * The fair queue, which has every job Bull counts as active: users with jobs waiting, jobs waiting, running,
   * retrying later, failure answers held back, and asks joined to an identical job.
   */
  fair: FairCounts;
  /** Today's bill (UTC): what the fleet spent on pictures, and the users at USER_DAILY_IMAGES. */
  bill: BillToday;
}

/**
 * The age of the oldest job waiting to run. Bull pushes new jobs on the left of the wait list (of the paused
 * list while the queue is paused) and takes them from the right, so the right end is the one to look at.
 */
async function oldestWaitingAgeMs(queue: Bull.Queue, now: number): Promise<number | null> {
  // A job may be taken (and removed) between reading the list and its hash: look again a few times.
  for (let tries = 0; tries < 3; tries++) {
    const ids = (await Promise.all(['wait', 'paused'].map((list) => queue.client.lindex(queue.toKey(list), -1)))).filter((id): id is string => id !== null);
    if (ids.length === 0) return null;
    const stamps = await Promise.all(ids.map((id) => queue.client.hget(queue.toKey(id), 'timestamp')));
    if (stamps.some((s) => s === null)) continue;
    return Math.max(0, now - Math.min(...stamps.map(Number)));
  }
  return null;
}

async function countKeys(queue: Bull.Queue, pattern: string): Promise<number> {
  // On a cluster a SCAN reaches one node: every master is asked (the queue's hash-tagged keys are on one of them).
  const client = queue.client as unknown as RedisClient;
  let count = 0;
  for (const node of client instanceof Cluster ? client.nodes('master') : [client]) {
    let cursor = '0';
    do {
      const [next, keys] = await node.scan(cursor, 'MATCH', pattern, 'COUNT', 1000);
      cursor = next;
      count += keys.length;
    } while (cursor !== '0');
  }
  return count;
}

/** Counting needs none of the queue's settings. */
const FAIR_READ_ONLY = { leaseMs: 0, userConcurrency: 0, paced: false, promiseMs: 0, lockMs: 0 };

export async function collectStats(queue: Bull.Queue, now: () => number = Date.now): Promise<QueueStats> {
  const raw = (await queue.getJobCounts()) as unknown as Partial<Record<State, number>>;
  const counts = Object.fromEntries(STATES.map((state) => [state, Number(raw[state] ?? 0)])) as Record<State, number>;
  return {
    queue: queue.name,
    counts,
    oldestWaitingAgeMs: await oldestWaitingAgeMs(queue, now()),
    checkpoints: await countKeys(queue, `${escapeGlob(queue.toKey('checkpoint'))}:*`),
    fair: (await new FairQueue(queue.client, queue.toKey(''), FAIR_READ_ONLY).counts()).fair,
    bill: await new Bill(queue.client, queue.toKey('bill'), { userDailyImages: 0, dailyBudgetUsd: 0 }).today(),
  };
}

/** `1h 2m`, `3m 5s`, `4.2s`, `850 ms`. */
export function formatAge(ms: number): string {
  if (ms < 1000) return `${ms} ms`;
  const s = Math.floor(ms / 1000);
  if (s < 60) return `${(ms / 1000).toFixed(1)}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m ${s % 60}s`;
  if (s < 86400) return `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m`;
  return `${Math.floor(s / 86400)}d ${Math.floor((s % 86400) / 3600)}h`;
}

export function formatTable(stats: QueueStats, settings: QueueSettings): string {
  const rows: Array<[string, string]> = [
    ['queue', `${stats.queue} on ${redisWhere(settings)}`],
    ...STATES.map((state): [string, string] => [state, String(stats.counts[state])]),
    ['oldest waiting', stats.oldestWaitingAgeMs === null ? '-' : `${formatAge(stats.oldestWaitingAgeMs)} (${stats.oldestWaitingAgeMs} ms)`],
    ['checkpoints', String(stats.checkpoints)],
    [
      'fair queue',
      `${stats.fair.waiting} waiting (${stats.fair.usersWaiting} users), ${stats.fair.running} running, ${stats.fair.retrying} retrying later, ` +
        `${stats.fair.heldBack} answers held back, ${stats.fair.answers} answers to tell, ${stats.fair.joined} joined to an identical job`,
    ],
    ['today (UTC)', `${stats.bill.day}: $${stats.bill.spentUsd.toFixed(2)} spent, ${stats.bill.usersAtCap} users at USER_DAILY_IMAGES`],
  ];
  const width = Math.max(...rows.map(([label]) => label.length)) + 2;
  return rows.map(([label, value]) => `${label.padEnd(width)}${value}\n`).join('');
}

/** `npm run queue:stats [-- --json]`; resolves to the exit code. */
export async function main(argv: string[], env: Env, io: CliIO, now: () => number = Date.now): Promise<number> {
  let json: boolean;
  let settings: QueueSettings;
  try {
    const values = parseFlags(argv, { json: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } });
    if (values.help) {
      io.stdout.write(USAGE);
      return EXIT_OK;
    }
    json = values.json ?? false;
    settings = readQueueSettings(env);
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    io.stderr.write(`queue:stats: ${err.message}\n`);
    if (err.showUsage) io.stderr.write(`\n${USAGE}`);
    return EXIT_USAGE;
  }

  return onQueue('queue:stats', settings, io, async (queue) => {
    const stats = await collectStats(queue, now);
    io.stdout.write(json ? `${JSON.stringify(stats)}\n` : formatTable(stats, settings));
  });
}

if (require.main === module) runAsScript(main);
