/**
 * Every Redis key of the fair queue, in one place (docs/ARCHITECTURE.md lists them with their lifetimes).
 * All live under the queue's prefix `P` (`<QUEUE_PREFIX>:<QUEUE_NAME>:`), next to Bull's own keys, so with a
 * hash-tagged QUEUE_PREFIX (`{bull}`) the whole queue sits in one Redis Cluster slot.
 */
export class QueueKeys {
  /** The keys every fair-queue script is given first, in this order (see commands/_lib.lua). */
  readonly fixed: string[];

  constructor(
    /** `<QUEUE_PREFIX>:<QUEUE_NAME>:`, e.g. `bull:Grok_Image_Generator:` */
    readonly prefix: string,
  ) {
    const f = (name: string): string => `${prefix}fq:${name}`;
    const bull = (name: string): string => `${prefix}${name}`;
    this.fixed = [
      f('users'),
      f('active'),
      f('delayed'),
      f('held'),
      f('inflight'),
      f('stats'),
      f('pace'),
      bull('wait'),
      bull('active'),
      bull('priority'),
      bull('stalled'),
      bull('completed'),
      bull('failed'),
    ];
  }

  get active(): string {
    return this.fixed[1];
  }

  get pace(): string {
    return this.fixed[6];
  }

  get bullWait(): string {
    return this.fixed[7];
  }

  get bullActive(): string {
    return this.fixed[8];
  }

  /** Published when jobs become ready, so idle workers claim at once. */
  get wakeChannel(): string {
    return `${this.prefix}fq:wake`;
  }

  job(fid: string): string {
    return `${this.prefix}fq:job:${fid}`;
  }

  /** Jobs that joined `fid` (the same user, page and prompt while it waited or ran). */
  joined(fid: string): string {
    return `${this.prefix}fq:with:${fid}`;
  }

  /** The image of `fid`, paid for and not yet delivered. */
  checkpoint(fid: string): string {
    return `${this.prefix}checkpoint:${fid}`;
  }
}
