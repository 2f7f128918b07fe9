import { ConfigError, loadConfigFromEnvironment } from './config';
import { isAbortError, toError } from './base/errors';
import { createLogger } from './base/logger';
import { startWorker } from './worker';

/** Exit codes: the platform tells a clean stop from a forced one, and a bad configuration from a crash. */
export const EXIT_CLEAN = 0;
export const EXIT_FORCED = 1;
export const EXIT_CONFIG = 78; // EX_CONFIG: restarting will not help until the settings change.

/** Time past SHUTDOWN_TIMEOUT_MS for handing jobs back and closing connections before the process exits anyway. */
const SHUTDOWN_GRACE_MS = 4000;

/**
 * The process: config, logger, worker, and the signals. The first SIGTERM/SIGINT drains and exits 0; a second
 * signal, a shutdown that overruns its limit and an uncaught exception all take the one forced path and exit 1
 * (the fair queue's lease recovery redoes whatever was still running), and so does a shutdown that could not
 * hand its running jobs back.
 */
export async function main(): Promise<void> {
  let config;
  try {
    config = loadConfigFromEnvironment();
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`${err.message}\n`);
      process.exit(EXIT_CONFIG);
    }
    throw err;
  }
  const logger = createLogger(config.logLevel);
  const forceExit = (reason: string, fields: Record<string, unknown> = {}): never => {
    logger.fatal(fields, `${reason}: exiting now`);
    process.exit(EXIT_FORCED);
  };
  process.on('uncaughtException', (err) => forceExit('uncaught exception', { err }));
  // A stray rejection is a bug somewhere, but the jobs and connections are intact: log it and keep serving.
  process.on('unhandledRejection', (reason) => logger.error({ err: toError(reason) }, 'unhandled rejection'));

  // Signals are handled from the first moment: one during start stops the start.
  const stopStart = new AbortController();
  const worker = startWorker(config, logger, { signal: stopStart.signal });
  let signalled = false;
  const onSignal = (signal: NodeJS.Signals): void => {
    if (signalled) forceExit('second signal', { signal });
    signalled = true;
    logger.info({ signal }, 'signal received');
    stopStart.abort();
    // Whatever hangs (an unreachable Redis while closing), the process leaves before the platform kills it.
    const limitMs = config.shutdownTimeoutMs + SHUTDOWN_GRACE_MS;
    setTimeout(() => forceExit('shutdown overran its limit', { limitMs }), limitMs).unref();
    worker
      .then((w) => w.close())
      .then(
        (clean) => process.exit(clean ? EXIT_CLEAN : EXIT_FORCED),
        (err: unknown) => {
          if (isAbortError(err)) {
            logger.info('stopped before ready');
            process.exit(EXIT_CLEAN);
          }
          forceExit('shutdown failed', { err: toError(err) });
        },
      );
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
  try {
    await worker;
  } catch (err) {
    if (!(isAbortError(err) && signalled)) throw err;
  }
}

if (require.main === module) {
  main().catch((err: unknown) => {
    process.stderr.write(`${JSON.stringify({ level: 'fatal', msg: 'worker failed to start', err: toError(err).message })}\n`);
    process.exit(EXIT_FORCED);
  });
}
