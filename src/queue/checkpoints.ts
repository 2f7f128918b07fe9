import type { RedisClient } from '../redis/scripts';
import type { CheckpointStore, GeneratedImage } from '../pipeline/ports';
import type { FairQueue } from './fairQueue';
import type { FairJob } from './replies';

interface Header {
  f: string;
  m: string;
  r?: string;
  c?: number;
}

/**
 * The one owner of a checkpoint's life: an image that was paid for and not yet delivered, kept under
 * `checkpoint:<fid>` (one line of JSON header, then the base64) for CHECKPOINT_TTL_S. It is written only when
 * delivery has to wait or the run lost its claim, and only while the job has not ended (checkpoint-2.lua, which also
 * marks the job); it is read by a later run of the same job (after a crash, a stall, a retry, a hand-back), and END
 * removes it.
 */
export class Checkpoints {
  constructor(
    private readonly client: RedisClient,
    private readonly fair: FairQueue,
    private readonly ttlS: number,
  ) {}

  /** The store one run of `job` sees. A job no run kept a picture for is spared the read. */
  forJob(job: FairJob): CheckpointStore {
    const key = this.fair.keys.checkpoint(job.fid);
    return {
      load: async (fingerprint) => (job.hasCheckpoint ? parseCheckpoint(await this.client.getBuffer(key), fingerprint) : null),
      save: async (fingerprint, image) => {
        await this.fair.keepCheckpoint(job.fid, encodeCheckpoint(fingerprint, image), this.ttlS);
      },
    };
  }
}

export function encodeCheckpoint(fingerprint: string, image: GeneratedImage): Buffer {
  const header: Header = { f: fingerprint, m: image.mimeType, r: image.revisedPrompt, c: image.costUsd };
  // One Buffer: a string argument would cost ioredis two flattening copies and a UTF-8 encode of the whole
  // image. Base64 is ASCII, so latin1 writes it byte for byte.
  const head = Buffer.from(`${JSON.stringify(header)}\n`, 'utf8');
  const value = Buffer.allocUnsafe(head.length + image.base64.length);
  head.copy(value, 0);
  value.write(image.base64, head.length, 'latin1');
  return value;
}

/** The image in `value` if it belongs to `fingerprint` (the job's user and creation); a damaged value reads as none. */
export function parseCheckpoint(value: Buffer | null | undefined, fingerprint: string): GeneratedImage | null {
  if (!value) return null;
  const newline = value.indexOf(0x0a);
  if (newline < 0) return null;
  let header: Partial<Header> | null;
  try {
    header = JSON.parse(value.toString('utf8', 0, newline)) as Partial<Header> | null;
  } catch {
    return null;
  }
  if (typeof header !== 'object' || header === null || header.f !== fingerprint || typeof header.m !== 'string') return null;
  if (newline + 1 >= value.length) return null;
  const image: GeneratedImage = { base64: value.toString('latin1', newline + 1), mimeType: header.m };
  if (header.r !== undefined) image.revisedPrompt = header.r;
  if (header.c !== undefined) image.costUsd = header.c;
  return image;
}
