import type { Redis } from 'ioredis';
import type { CheckpointStore, GeneratedImage } from './types';

interface Header {
  f: string;
  m: string;
  r?: string;
  c?: number;
}

/**
 * Checkpoints in Redis under the queue's prefix, one key per job, expiring after `ttlS`. The value is a
 * one-line JSON header and the base64 after it: one SET and one DEL per job, no JSON of the image itself.
 */
export class RedisCheckpointStore implements CheckpointStore {
  constructor(
    private readonly redis: Redis,
    /** e.g. `bull:Grok_Image_Generator:checkpoint:` */
    private readonly keyPrefix: string,
    private readonly ttlS: number,
  ) {}

  key(jobId: string): string {
    return this.keyPrefix + jobId;
  }

  async load(jobId: string, fingerprint: string): Promise<GeneratedImage | null> {
    const value = await this.redis.get(this.key(jobId));
    if (value === null) return null;
    const newline = value.indexOf('\n');
    if (newline < 0) return null;
    let header: Partial<Header> | null;
    try {
      header = JSON.parse(value.slice(0, newline)) as Partial<Header> | null;
    } catch {
      return null;
    }
    // A damaged value must read as "no checkpoint", never as an image without a type or without bytes.
    if (typeof header !== 'object' || header === null || header.f !== fingerprint || typeof header.m !== 'string') return null;
    const base64 = value.slice(newline + 1);
    if (base64 === '') return null;
    return { base64, mimeType: header.m, revisedPrompt: header.r, costUsd: header.c };
  }

  async save(jobId: string, fingerprint: string, image: GeneratedImage): Promise<void> {
    const header: Header = { f: fingerprint, m: image.mimeType, r: image.revisedPrompt, c: image.costUsd };
    await this.redis.set(this.key(jobId), `${JSON.stringify(header)}\n${image.base64}`, 'EX', this.ttlS);
  }

  async remove(jobId: string): Promise<void> {
    await this.redis.del(this.key(jobId));
  }
}
