import { Checkpoints } from '../src/queue/checkpoints';

/**
 * A what-if variant of the checkpoint store, swapped into the worker process by the benchmark only:
 * `none` keeps no checkpoint and no owner record at all (`open` finds nothing and writes nothing, `save` and
 * `forget` do nothing), to show what the store costs a job in total. `shipped` runs src/ untouched.
 */
export type CheckpointVariant = 'shipped' | 'none';

export function applyCheckpointVariant(variant: CheckpointVariant): void {
  if (variant === 'shipped') return;
  if (variant !== 'none') throw new Error(`unknown BENCH_CHECKPOINT: ${String(variant)}`);
  Checkpoints.prototype.forJob = () => ({ load: async () => null, save: async () => undefined });
}
