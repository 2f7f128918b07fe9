import { createHash } from 'node:crypto';
import { escapeGlob, RedisClient } from '../../redis/scripts';
import type { RefusalMemory } from '../ports';

/**
 * Refusals in Redis under the queue's prefix, one key per (user, prepared prompt) expiring after `ttlS`:
 * `refused:<sha256 hex>`. Neither the user's Id nor the prompt is stored, only the hash of both, so the keys say
 * nothing about who asked for what.
 *
 * Asked for every job, and almost always answered no: so each worker can keep a copy (`mirror`), filled from Redis
 * once (`reload`) and kept in step by the message every worker publishes when it remembers a refusal (`heard`).
 * With the copy, a job costs Redis nothing here; without it (before the copy is loaded, or on a Redis Cluster,
 * where the keys cannot be listed from one node), each question is one EXISTS.
 */
export class RedisRefusalMemory implements RefusalMemory {
  /** key -> when it expires (Date.now()), while this process keeps a copy. */
  private copy: Map<string, number> | undefined;

  constructor(
    private readonly redis: RedisClient,
    /** e.g. `bull:Grok_Image_Generator:` */
    private readonly keyBase: string,
    private readonly ttlS: number,
    /** Where a remembered refusal is announced to the fleet, when workers keep copies. */
    private readonly channel?: string,
  ) {}

  key(userId: string, prompt: string): string {
    // JSON keeps the two apart: ("ab", "c") and ("a", "bc") hash differently.
    const digest = createHash('sha256')
      .update(JSON.stringify([userId, prompt]), 'utf8')
      .digest('hex');
    return `${this.keyBase}refused:${digest}`;
  }

  async has(userId: string, prompt: string): Promise<boolean> {
    const key = this.key(userId, prompt);
    if (!this.copy) return (await this.redis.exists(key)) === 1;
    const until = this.copy.get(key);
    if (until === undefined) return false;
    if (Date.now() < until) return true;
    this.copy.delete(key);
    return false;
  }

  /** A refusal seen again starts its lifetime afresh, and the fleet hears of it. */
  async remember(userId: string, prompt: string): Promise<void> {
    const key = this.key(userId, prompt);
    await this.redis.set(key, '1', 'EX', this.ttlS);
    this.heard(key);
    if (this.channel) await this.redis.publish(this.channel, key);
  }

  /** A refusal another worker (or this one) remembered: kept in the copy for the memory's lifetime. */
  heard(key: string): void {
    if (key.startsWith(`${this.keyBase}refused:`)) this.copy?.set(key, Date.now() + this.ttlS * 1000);
  }

  /** Fills this process's copy from Redis and answers from it from now on (again after a missed message). */
  async reload(): Promise<void> {
    const found = new Map<string, number>(this.copy);
    let cursor = '0';
    do {
      const [next, keys] = await this.redis.scan(cursor, 'MATCH', `${escapeGlob(this.keyBase)}refused:*`, 'COUNT', 1000);
      cursor = next;
      for (const key of keys) {
        const ttlMs = await this.redis.pttl(key);
        if (ttlMs > 0) found.set(key, Date.now() + ttlMs);
      }
    } while (cursor !== '0');
    this.copy = found;
  }
}
