import { randomBytes } from 'node:crypto';
import Redis from 'ioredis';
import { encodeCheckpoint } from '../src/queue/checkpoints';
import { FairQueue } from '../src/queue/fairQueue';
import type { GeneratedImage } from '../src/pipeline/ports';
import { ownCpuMs } from './procStats';

/** CPU one checkpoint save costs the process that writes it (src's `save`, and the `forget` that ends the job). */
export interface CheckpointWriteCost {
  imageBytes: number;
  saves: number;
  /** Median over rounds, in microseconds of this process's CPU per save and forget. */
  saveUs: number;
}

/**
 * Isolates the checkpoint write from everything else a job does: 20 saves in flight at a time, as at
 * CONCURRENCY=20, each followed by the `forget` that ends a job. The pipeline pays this only for a job whose
 * delivery has to wait. Run while nothing else runs in this process.
 */
export async function measureCheckpointWrite(redisUrl: string, imageBytes: number, saves: number, rounds = 3): Promise<CheckpointWriteCost> {
  const redis = new Redis(redisUrl);
  const fair = new FairQueue(redis, 'bench:checkpoint-write:', { leaseMs: 60_000, userConcurrency: 0, paced: false, promiseMs: 50, lockMs: 60_000 });
  const image: GeneratedImage = {
    base64: randomBytes(imageBytes).toString('base64'),
    mimeType: 'image/png',
    revisedPrompt: 'A lighthouse at dawn',
    costUsd: 0.02,
  };
  const perSave = async (count: number): Promise<number> => {
    const started = ownCpuMs();
    let next = 0;
    const lane = async (): Promise<void> => {
      while (next < count) {
        const id = String(next++);
        await redis.hset(fair.keys.job(id), 'uid', 'u');
        await fair.keepCheckpoint(id, encodeCheckpoint(`user:${id}`, image), 60);
        await redis.del(fair.keys.job(id), fair.keys.checkpoint(id));
      }
    };
    await Promise.all(Array.from({ length: 20 }, lane));
    return ((ownCpuMs() - started) * 1000) / count;
  };
  try {
    await perSave(100);
    const results: number[] = [];
    for (let r = 0; r < rounds; r++) results.push(await perSave(saves));
    const median = [...results].sort((a, b) => a - b)[Math.floor(results.length / 2)];
    return { imageBytes, saves, saveUs: median };
  } finally {
    redis.disconnect();
  }
}
