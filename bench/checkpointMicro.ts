import { randomBytes } from 'node:crypto';
import Redis from 'ioredis';
import { RedisCheckpointStore } from '../src/checkpointStore';
import type { GeneratedImage } from '../src/types';
import { saveAsBuffer, shippedSave } from './checkpointVariants';
import { ownCpuMs } from './procStats';

/** CPU one checkpoint save costs the process that writes it: src's `save` against the Buffer write. */
export interface CheckpointWriteCost {
  imageBytes: number;
  saves: number;
  /** Median over alternating rounds, in microseconds of this process's CPU per save (the SET and its DEL). */
  shippedUs: number;
  bufferUs: number;
}

/**
 * Isolates the checkpoint write from everything else a job does: 20 saves in flight at a time, as at
 * CONCURRENCY=20, each followed by the DEL that ends a job. Run while nothing else runs in this process.
 */
export async function measureCheckpointWrite(redisUrl: string, imageBytes: number, saves: number, rounds = 3): Promise<CheckpointWriteCost> {
  const redis = new Redis(redisUrl);
  const store = new RedisCheckpointStore(redis, 'bench:checkpoint-write:', 60);
  const image: GeneratedImage = { base64: randomBytes(imageBytes).toString('base64'), mimeType: 'image/png', revisedPrompt: 'A lighthouse at dawn', costUsd: 0.02 };
  const perSave = async (save: typeof shippedSave, count: number): Promise<number> => {
    const started = ownCpuMs();
    let next = 0;
    const lane = async (): Promise<void> => {
      while (next < count) {
        const id = String(next++);
        await save.call(store, id, `user:${id}`, image);
        await redis.del(store.key(id));
      }
    };
    await Promise.all(Array.from({ length: 20 }, lane));
    return ((ownCpuMs() - started) * 1000) / count;
  };
  try {
    await perSave(shippedSave, 100);
    await perSave(saveAsBuffer, 100);
    const results = { shipped: [] as number[], buffer: [] as number[] };
    for (let r = 0; r < rounds; r++) {
      results.shipped.push(await perSave(shippedSave, saves));
      results.buffer.push(await perSave(saveAsBuffer, saves));
    }
    const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
    return { imageBytes, saves, shippedUs: median(results.shipped), bufferUs: median(results.buffer) };
  } finally {
    redis.disconnect();
  }
}
