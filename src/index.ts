import { ConfigError, loadConfigFromEnvironment } from './config';
import { toError } from './errors';
import { createLogger, Logger } from './logger';
import { RunningWorker, startWorker } from './worker';

/**
 * The process: config, logger, worker, and the signals. First SIGTERM/SIGINT drains and exits 0; a
 * second exits at once (Bull's stalled-job recovery redoes whatever was still running).
 */
export async function main(): Promise<void> {
  let config;
  try {
    config = loadConfigFromEnvironment();
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`${err.message}\n`);
      process.exit(78); // EX_CONFIG: the platform shows the message; restarting will not help.
    }
    throw err;
  }
  const logger = createLogger(config.logLevel);
  handleProcessErrors(logger);
  // Signals are handled from the first moment: jobs start flowing before startWorker resolves.
  const worker = startWorker(config, logger);
  handleSignals(worker, logger, config.shutdownTimeoutMs + SHUTDOWN_GRACE_MS);
  await worker;
}

/** Time past SHUTDOWN_TIMEOUT_MS for handing jobs back and closing connections before the process exits anyway. */
const SHUTDOWN_GRACE_MS = 4000;

function handleSignals(worker: Promise<RunningWorker>, logger: Logger, hardLimitMs: number): void {
  let signalled = false;
  const onSignal = (signal: NodeJS.Signals): void => {
    if (signalled) {
      logger.warn({ signal }, 'second signal: exiting now');
      process.exit(1);
    }
    signalled = true;
    logger.info({ signal }, 'signal received');
    // Whatever hangs (an unreachable Redis while closing), the process leaves before the platform kills it.
    setTimeout(() => {
      logger.warn({ limitMs: hardLimitMs }, 'shutdown overran its limit: exiting');
      process.exit(0);
    }, hardLimitMs).unref();
    worker.then((w) => w.close()).then(
      () => process.exit(0),
      (err: unknown) => {
        logger.error({ err: toError(err) }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
}

function handleProcessErrors(logger: Logger): void {
  // A stray rejection is a bug somewhere, but the jobs and connections are intact: log it and keep serving.
  process.on('unhandledRejection', (reason) => {
    logger.error({ err: toError(reason) }, 'unhandled rejection');
  });
  // After an uncaught exception the process state is unknown: exit non-zero so the platform restarts it.
  process.on('uncaughtException', (err) => {
    logger.fatal({ err }, 'uncaught exception: exiting');
    process.exit(1);
  });
}

if (require.main === module) {
  main().catch((err: unknown) => {
    process.stderr.write(`${JSON.stringify({ level: 'fatal', msg: 'worker failed to start', err: toError(err).message })}\n`);
    process.exit(1);
  });
}
