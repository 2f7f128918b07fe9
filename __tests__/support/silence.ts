import Redis from 'ioredis';
import { redisOptionsFromUrl } from '../../src/redis/connections';

/**
 * Makes a Redis fall silent for `seconds`, as a long script, a failover or a slow AOF rewrite does: a Lua loop holds
 * it, and every other client is answered BUSY meanwhile (after 100 ms, `busy-reply-threshold`). Resolves once it
 * answers again. Only for a Redis of the test's own: it stops everyone else's too.
 */
export async function silenceRedis(url: string, seconds: number): Promise<void> {
  const redis = new Redis({ ...redisOptionsFromUrl(url), maxRetriesPerRequest: 0 });
  try {
    await redis.config('SET', 'busy-reply-threshold', '100');
    const loop = `local function ms() local t = redis.call('TIME') return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) end
      local s = ms() while ms() - s < tonumber(ARGV[1]) do end return 1`;
    await redis.eval(loop, 0, Math.round(seconds * 1000));
  } finally {
    redis.disconnect();
  }
}

/** Resolves once `silenceRedis` holds `url` (another client is answered BUSY). */
export async function untilSilent(url: string): Promise<void> {
  const probe = new Redis({ ...redisOptionsFromUrl(url), maxRetriesPerRequest: 0 });
  try {
    for (;;) {
      try {
        await probe.ping();
      } catch (err) {
        if (/BUSY/.test((err as Error).message)) return;
        throw err;
      }
      await new Promise((r) => setTimeout(r, 20));
    }
  } finally {
    probe.disconnect();
  }
}
