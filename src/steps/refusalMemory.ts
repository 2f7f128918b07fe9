import type { RedisClient } from '../redisScripts';
import { createHash } from 'node:crypto';
import type { RefusalMemory } from '../types';

/**
 * Refusals in Redis under the queue's prefix, one key per (user, prepared prompt) expiring after `ttlS`:
 * `refused:<sha256 hex>`. Neither the user's Id nor the prompt is stored, only the hash of both, so the
 * keys say nothing about who asked for what.
 */
export class RedisRefusalMemory implements RefusalMemory {
  constructor(
    private readonly redis: RedisClient,
    /** e.g. `bull:Grok_Image_Generator:` */
    private readonly keyBase: string,
    private readonly ttlS: number,
  ) {}

  key(userId: string, prompt: string): string {
    // JSON keeps the two apart: ("ab", "c") and ("a", "bc") hash differently.
    const digest = createHash('sha256')
      .update(JSON.stringify([userId, prompt]), 'utf8')
      .digest('hex');
    return `${this.keyBase}refused:${digest}`;
  }

  async has(userId: string, prompt: string): Promise<boolean> {
    return (await this.redis.exists(this.key(userId, prompt))) === 1;
  }

  /** A refusal seen again starts its lifetime afresh. */
  async remember(userId: string, prompt: string): Promise<void> {
    await this.redis.set(this.key(userId, prompt), '1', 'EX', this.ttlS);
  }
}
