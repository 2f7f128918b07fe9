import type { Redis } from 'ioredis';
import type { CheckpointStore, GeneratedImage, JobOwner } from './types';

interface Header {
  f: string;
  m: string;
  r?: string;
  c?: number;
}

/**
 * A job's state in Redis under the queue's prefix, each key expiring after `ttlS`:
 * - `checkpoint:<id>`: an image not yet delivered, as a one-line JSON header and the base64 after it;
 * - `owner:<id>`: who the job belongs to, so a job Bull fails for stalling too often (deleting its data
 *   with removeOnFail) can still be reported to its user.
 * Per job: one round trip to open (owner SET and checkpoint GET pipelined), and one DEL once finished;
 * the image is written only when it cannot be delivered at once.
 */
export class RedisCheckpointStore implements CheckpointStore {
  constructor(
    private readonly redis: Redis,
    /** e.g. `bull:Grok_Image_Generator:` */
    private readonly keyBase: string,
    private readonly ttlS: number,
  ) {}

  key(jobId: string): string {
    return `${this.keyBase}checkpoint:${jobId}`;
  }

  ownerKey(jobId: string): string {
    return `${this.keyBase}owner:${jobId}`;
  }

  async load(jobId: string, fingerprint: string): Promise<GeneratedImage | null> {
    return parseCheckpoint(await this.redis.getBuffer(this.key(jobId)), fingerprint);
  }

  async save(jobId: string, fingerprint: string, image: GeneratedImage): Promise<void> {
    const header: Header = { f: fingerprint, m: image.mimeType, r: image.revisedPrompt, c: image.costUsd };
    // One Buffer: a string argument would cost ioredis two flattening copies and a UTF-8 encode of the
    // whole image. Base64 is ASCII, so latin1 writes it byte for byte.
    const head = Buffer.from(`${JSON.stringify(header)}\n`, 'utf8');
    const value = Buffer.allocUnsafe(head.length + image.base64.length);
    head.copy(value, 0);
    value.write(image.base64, head.length, 'latin1');
    await this.redis.set(this.key(jobId), value, 'EX', this.ttlS);
  }

  /** Drops the job's checkpoint and owner record: it has finished. */
  async forget(jobId: string): Promise<void> {
    await this.redis.del(this.key(jobId), this.ownerKey(jobId));
  }

  /** Reads and deletes the owner record in one transaction: of several workers told of a failure, one gets it. */
  async takeOwner(jobId: string): Promise<JobOwner | null> {
    const results = await this.redis.multi().get(this.ownerKey(jobId)).del(this.ownerKey(jobId)).exec();
    const value = results?.[0]?.[1];
    if (typeof value !== 'string') return null;
    try {
      return JSON.parse(value) as JobOwner;
    } catch {
      return null;
    }
  }
}

function parseCheckpoint(value: Buffer | null | undefined, fingerprint: string): GeneratedImage | null {
  if (!value) return null;
  const newline = value.indexOf(0x0a);
  if (newline < 0) return null;
  let header: Partial<Header> | null;
  try {
    header = JSON.parse(value.toString('utf8', 0, newline)) as Partial<Header> | null;
  } catch {
    return null;
  }
  // A damaged value must read as "no checkpoint", never as an image without a type or without bytes.
  if (typeof header !== 'object' || header === null || header.f !== fingerprint || typeof header.m !== 'string') return null;
  if (newline + 1 >= value.length) return null;
  const image: GeneratedImage = { base64: value.toString('latin1', newline + 1), mimeType: header.m };
  if (header.r !== undefined) image.revisedPrompt = header.r;
  if (header.c !== undefined) image.costUsd = header.c;
  return image;
}
