import type { Redis } from 'ioredis';

/** One Redis key of a queue, what it holds and what Redis says it costs. */
export interface KeyFootprint {
  key: string;
  type: string;
  bytes: number;
  /** Entries of a list, set, sorted set or hash; 1 for a string. */
  entries: number;
  /** Belongs to one job (its hash, lock, logs, checkpoint, owner record) rather than to the queue. */
  perJob: boolean;
}

/** Lists that hold job ids: anything left in them after a run is a job the producer did not ask Bull to keep. */
const JOB_COLLECTIONS = new Set(['wait', 'paused', 'active', 'delayed', 'completed', 'failed', 'priority', 'stalled']);

export async function queueFootprint(redis: Redis, prefix: string, queueName: string): Promise<KeyFootprint[]> {
  const base = `${prefix}:${queueName}:`;
  const keys: string[] = [];
  let cursor = '0';
  do {
    const [next, batch] = await redis.scan(cursor, 'MATCH', `${base}*`, 'COUNT', 1000);
    cursor = next;
    keys.push(...batch);
  } while (cursor !== '0');

  const footprints: KeyFootprint[] = [];
  for (const key of keys.sort()) {
    const type = await redis.type(key);
    if (type === 'none') continue;
    const bytes = Number((await redis.call('MEMORY', 'USAGE', key, 'SAMPLES', '0')) ?? 0);
    const entries = await entriesOf(redis, key, type);
    const rest = key.slice(base.length);
    // A job's own keys carry its id: `<id>`, `<id>:lock`, `<id>:logs`, and the worker's `checkpoint:<id>`, `owner:<id>`.
    const perJob = /^(\d+|[^:]+:\d+)(:|$)/.test(rest) || (JOB_COLLECTIONS.has(rest) && entries > 0);
    footprints.push({ key, type, bytes, entries, perJob });
  }
  return footprints;
}

async function entriesOf(redis: Redis, key: string, type: string): Promise<number> {
  switch (type) {
    case 'list':
      return redis.llen(key);
    case 'set':
      return redis.scard(key);
    case 'zset':
      return redis.zcard(key);
    case 'hash':
      return redis.hlen(key);
    default:
      return 1;
  }
}

export async function usedMemory(redis: Redis): Promise<number> {
  const info = await redis.info('memory');
  return Number(/^used_memory:(\d+)/m.exec(info)?.[1] ?? 0);
}

/** Bytes Redis has read from all its clients since it started: per job, what a consumer writes into Redis. */
export async function netInputBytes(redis: Redis): Promise<number> {
  const info = await redis.info('stats');
  return Number(/^total_net_input_bytes:(\d+)/m.exec(info)?.[1] ?? 0);
}

/** Commands Redis has run since it started, by command (INFO commandstats), INFO itself left out. */
export async function commandCounts(redis: Redis): Promise<Record<string, number>> {
  const info = await redis.info('commandstats');
  const counts: Record<string, number> = {};
  for (const m of info.matchAll(/^cmdstat_([^:]+):calls=(\d+)/gm)) if (m[1] !== 'info') counts[m[1]] = Number(m[2]);
  return counts;
}

/** `after - before`, per command and in all. */
export function commandDelta(before: Record<string, number>, after: Record<string, number>): { total: number; byCommand: Record<string, number> } {
  const byCommand: Record<string, number> = {};
  let total = 0;
  for (const [cmd, calls] of Object.entries(after)) {
    const d = calls - (before[cmd] ?? 0);
    if (d > 0) {
      byCommand[cmd] = d;
      total += d;
    }
  }
  return { total, byCommand };
}
