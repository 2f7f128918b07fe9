/**
 * Every Redis key of the fair queue, in one place (docs/ARCHITECTURE.md lists them with their lifetimes; a test keeps
 * that table and commands/_lib.lua in step). All live under the queue's prefix `P` (`<QUEUE_PREFIX>:<QUEUE_NAME>:`),
 * next to Bull's own keys, so with a hash-tagged QUEUE_PREFIX (`{bull}`) the whole queue sits in one Redis Cluster
 * slot.
 */
export class QueueKeys {
  /** The keys every fair-queue script is given first, in this order (see commands/_lib.lua). */
  readonly fixed: string[];
  /** Workers that looked gone at the last reap, and since when. */
  readonly suspects: string;
  /** Jobs the sweep found unknown to the fair queue, and since when (a run may still have them). */
  readonly unknown: string;
  /** Marked by every sweep round for a lock's life: while it lasts, the fleet keeps Bull's locks (an epoch). */
  readonly kept: string;
  /** The worker sweeping Bull's active list this round. */
  readonly swept: string;
  /** Published when jobs become ready, so idle workers claim at once. */
  readonly wakeChannel: string;
  /** Published when a worker remembers a refusal: every worker keeps a copy of the refusal memory. */
  readonly refusedChannel: string;

  constructor(
    /** `<QUEUE_PREFIX>:<QUEUE_NAME>:`, e.g. `bull:Grok_Image_Generator:` */
    readonly prefix: string,
  ) {
    const f = (name: string): string => `${prefix}fq:${name}`;
    const bull = (name: string): string => `${prefix}${name}`;
    this.fixed = [
      f('users'),
      f('claims'),
      f('retries'),
      f('held'),
      f('answers'),
      f('running'),
      f('stats'),
      f('pace'),
      bull('wait'),
      bull('active'),
      bull('priority'),
      bull('completed'),
      bull('failed'),
    ];
    this.suspects = f('suspects');
    this.unknown = f('unknown');
    this.kept = f('kept');
    this.swept = f('swept');
    this.wakeChannel = f('wake');
    this.refusedChannel = f('refused');
  }

  get claims(): string {
    return this.fixed[1];
  }

  /** The image API's pace: src/capacity owns it; the claim reads it. */
  get pace(): string {
    return this.fixed[7];
  }

  get bullWait(): string {
    return this.fixed[8];
  }

  get bullActive(): string {
    return this.fixed[9];
  }

  /** What the fleet bought per UTC day (src/capacity owns it): `<bill>:<day>`. */
  get bill(): string {
    return `${this.prefix}bill`;
  }

  /** The channel a live worker stays subscribed to: no subscriber, no worker. */
  workerChannel(worker: string): string {
    return `${this.prefix}fq:worker:${worker}`;
  }

  job(fid: string): string {
    return `${this.prefix}fq:job:${fid}`;
  }

  /** Jobs that joined `fid` (the same user, page and prompt while it waited or ran). */
  joined(fid: string): string {
    return `${this.prefix}fq:joined:${fid}`;
  }

  /** A picture delivered lately for the ask `ask` (REMEMBER_PICTURES_S). */
  picture(ask: string): string {
    return `${this.prefix}picture:${ask}`;
  }

  /** The asks whose pictures are kept, by when: the oldest go first. */
  get pictures(): string {
    return `${this.prefix}pictures`;
  }

  /** The bytes each kept picture takes, and their total. */
  get pictureBytes(): string {
    return `${this.prefix}pictures:bytes`;
  }

  /** The picture of `fid`, paid for and not yet delivered. */
  checkpoint(fid: string): string {
    return `${this.prefix}checkpoint:${fid}`;
  }
}
