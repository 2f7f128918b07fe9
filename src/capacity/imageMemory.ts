/**
 * The image bytes this process has in memory between an answer of the image API (or a kept picture read back) and its
 * delivery: what an in-flight job costs in memory. A request waiting for its answer has no image yet, so the number
 * of jobs in flight is not what bounds memory; these bytes are. Once they pass the budget, the worker sends no new
 * request and claims no new job until deliveries bring them back under it (a slow or absent notification service,
 * a flood of large pictures); requests already out may still land, each one picture more.
 */
/**
 * The budget: 256 MB of base64 held (bench/results.md: a 1 MB picture held until its delivery costs about 1.4 MB
 * of base64 and, at its peak, three more copies while it is sent; the process's RSS with the budget full stays
 * under 1 GB). At xAI's sizes (a few hundred kB per picture) that is hundreds of pictures waiting for a slow
 * notification service.
 */
export const IMAGE_MEMORY_BUDGET_BYTES = 256 * 1024 * 1024;

export class ImageMemory {
  private bytes = 0;
  private readonly waiters = new Set<() => void>();

  constructor(
    /** How many bytes of images (base64, as kept for delivery) the process may use before it stops asking for more. */
    readonly budgetBytes: number,
  ) {}

  /** Bytes in memory now. */
  get used(): number {
    return this.bytes;
  }

  get full(): boolean {
    return this.bytes >= this.budgetBytes;
  }

  /** An image of `bytes` is in memory; the function returned lets it go (once). */
  use(bytes: number): () => void {
    this.bytes += bytes;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.bytes -= bytes;
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
