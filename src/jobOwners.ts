import type { Redis } from 'ioredis';

export interface JobOwner {
  userId: string;
  number: string | number | boolean | null;
}

/**
 * Who each running job belongs to, kept in Redis while it runs. Bull deletes a job that stalled more
 * than MAX_STALLED_COUNT times (with removeOnFail) before anyone can read it; this record is what lets
 * the user still be told. One SET when a job starts; the DEL shares a command with the checkpoint's.
 */
export class JobOwners {
  constructor(
    private readonly redis: Redis,
    /** e.g. `bull:Grok_Image_Generator:owner:` */
    private readonly keyPrefix: string,
    private readonly ttlS: number,
  ) {}

  key(jobId: string): string {
    return this.keyPrefix + jobId;
  }

  async remember(jobId: string, owner: JobOwner): Promise<void> {
    await this.redis.set(this.key(jobId), JSON.stringify(owner), 'EX', this.ttlS);
  }

  /** Reads and deletes in one transaction: of several workers hearing of the same failure, one gets it. */
  async take(jobId: string): Promise<JobOwner | null> {
    const results = await this.redis.multi().get(this.key(jobId)).del(this.key(jobId)).exec();
    const value = results?.[0]?.[1];
    if (typeof value !== 'string') return null;
    try {
      return JSON.parse(value) as JobOwner;
    } catch {
      return null;
    }
  }
}
