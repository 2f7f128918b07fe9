import type { Redis } from 'ioredis';
import { RedisCheckpointStore } from '../src/checkpointStore';
import type { GeneratedImage } from '../src/types';

/**
 * What-if variants of the checkpoint write, swapped into the worker process by the benchmark only:
 * `buffer` writes the value as one Buffer (the change proposed for src/checkpointStore.ts; the same bytes
 * land in Redis), `none` writes no image at all, to show what image checkpoints cost in total.
 */
export type CheckpointVariant = 'shipped' | 'buffer' | 'none';

interface StoreInternals {
  redis: Redis;
  ttlS: number;
}

interface Header {
  f: string;
  m: string;
  r?: string;
  c?: number;
}

type Save = (this: RedisCheckpointStore, jobId: string, fingerprint: string, image: GeneratedImage) => Promise<void>;

export function applyCheckpointVariant(variant: CheckpointVariant): void {
  // Only the methods the store has are replaced: its interface may differ between versions of src/.
  const proto = RedisCheckpointStore.prototype as unknown as Record<string, unknown>;
  if (variant === 'none') {
    proto.save = async (): Promise<void> => undefined;
    if (typeof proto.load === 'function') proto.load = async () => null;
  } else if (variant === 'buffer') {
    proto.save = saveAsBuffer;
    if (typeof proto.load === 'function') proto.load = loadFromBuffer;
  }
}

export const shippedSave: Save = RedisCheckpointStore.prototype.save;

export async function saveAsBuffer(this: RedisCheckpointStore, jobId: string, fingerprint: string, image: GeneratedImage): Promise<void> {
  const { redis, ttlS } = this as unknown as StoreInternals;
  const header: Header = { f: fingerprint, m: image.mimeType, r: image.revisedPrompt, c: image.costUsd };
  // The header may hold any text (the revised prompt): UTF-8. Base64 is ASCII, so latin1 is a plain byte copy,
  // where a string argument costs ioredis two flattening copies and a UTF-8 encode of the whole image.
  const head = Buffer.from(`${JSON.stringify(header)}\n`, 'utf8');
  const value = Buffer.allocUnsafe(head.length + image.base64.length);
  head.copy(value, 0);
  value.write(image.base64, head.length, 'latin1');
  await redis.set(this.key(jobId), value, 'EX', ttlS);
}

export async function loadFromBuffer(this: RedisCheckpointStore, jobId: string, fingerprint: string): Promise<GeneratedImage | null> {
  const { redis } = this as unknown as StoreInternals;
  const value = await redis.getBuffer(this.key(jobId));
  if (value === null) return null;
  const newline = value.indexOf(0x0a);
  if (newline < 0) return null;
  let header: Header;
  try {
    header = JSON.parse(value.toString('utf8', 0, newline)) as Header;
  } catch {
    return null;
  }
  if (header.f !== fingerprint) return null;
  return { base64: value.toString('latin1', newline + 1), mimeType: header.m, revisedPrompt: header.r, costUsd: header.c };
}
