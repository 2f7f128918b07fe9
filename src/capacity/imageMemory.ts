/**
 * The image bytes this process has in memory between an answer of the image API (or a kept picture read back) and its
 * delivery, and those the requests still out will bring: what an in-flight job costs in memory. A request waiting
 * for its answer holds no image yet, so the number of jobs in flight is not what bounds memory: these bytes are, each
 * request out counted at the size of the pictures seen lately. Once they pass the budget, the worker sends no new
 * request and claims no new job until answers and deliveries bring them back under it (a slow or absent
 * notification service, a flood of large pictures).
 */
/**
 * The budget: 256 MB of base64 (bench/results.md: a 1 MB picture held until its delivery costs about 1.4 MB of
 * base64 and, at its peak, three more copies while it is sent; the process's RSS with the budget full stays under
 * 1 GB). At xAI's sizes (a few hundred kB per picture) that is hundreds of pictures out or waiting.
 */
export const IMAGE_MEMORY_BUDGET_BYTES = 256 * 1024 * 1024;

/** What a request out is taken to bring before any picture was seen: a large picture of xAI's (base64). */
const FIRST_EXPECTED_BYTES = 512 * 1024;
/** Weight of the newest picture's size in the moving average. */
const SMOOTHING = 0.2;

export class ImageMemory {
  private bytes = 0;
  /** Requests out: each will bring a picture of about `typicalBytes`. */
  private out = 0;
  private typicalBytes = FIRST_EXPECTED_BYTES;
  private readonly waiters = new Set<() => void>();

  constructor(
    /** How many bytes of images (base64, as kept for delivery) the process may use before it stops asking for more. */
    readonly budgetBytes: number,
  ) {}

  /** Bytes in memory now. */
  get used(): number {
    return this.bytes;
  }

  /** Bytes in memory now and those the requests out are expected to bring. */
  get expected(): number {
    return this.bytes + this.out * this.typicalBytes;
  }

  get full(): boolean {
    return this.expected >= this.budgetBytes;
  }

  /** An image of `bytes` is in memory; the function returned lets it go (once). */
  use(bytes: number): () => void {
    this.bytes += bytes;
    this.typicalBytes += SMOOTHING * (bytes - this.typicalBytes);
    return this.letGo(() => (this.bytes -= bytes));
  }

  /** A request is out: it counts as a picture of the usual size until the function returned is called (once). */
  expect(): () => void {
    this.out += 1;
    return this.letGo(() => (this.out -= 1));
  }

  private letGo(release: () => void): () => void {
    let released = false;
    return () => {
      if (released) return;
      released = true;
      release();
      if (!this.full) for (const wake of [...this.waiters]) wake();
    };
  }

  /** Resolves once the process uses less than its budget (at once when it does), or rejects when `signal` aborts. */
  room(signal: AbortSignal): Promise<void> {
    if (!this.full) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const done = (): void => {
        this.waiters.delete(done);
        signal.removeEventListener('abort', onAbort);
        resolve();
      };
      const onAbort = (): void => {
        this.waiters.delete(done);
        reject(signal.reason);
      };
      this.waiters.add(done);
      signal.addEventListener('abort', onAbort, { once: true });
    });
  }
}
