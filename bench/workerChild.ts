import { loadConfig } from '../src/config';
import { createLogger } from '../src/base/logger';
import { startWorker } from '../src/worker';
import { applyCheckpointVariant, CheckpointVariant } from './checkpointVariants';
import { failChild, serveParent } from './childProtocol';

/**
 * The worker under test, wired exactly as the service wires it: config from the environment, pino JSON on
 * stdout at LOG_LEVEL (the benchmark points stdout at a file), every edge the real one. BENCH_CHECKPOINT=none
 * turns the checkpoint store into no-ops (a what-if); unset, the shipped code runs untouched.
 */
async function main(): Promise<void> {
  applyCheckpointVariant((process.env.BENCH_CHECKPOINT ?? 'shipped') as CheckpointVariant);
  const config = loadConfig(process.env);
  const worker = await startWorker(config, createLogger(config.logLevel));
  serveParent(async () => void (await worker.close()));
}

main().catch(failChild);
