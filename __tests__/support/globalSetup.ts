import type { GlobalConfig } from 'jest';
import { startRedisServer } from '../../src/demo/redisServer';
import { ensureCompiledOutput } from './compiledOutput';

/**
 * One private Redis for the whole run (its URL reaches every test file through the environment), and dist built
 * from the current sources when a selected test runs a worker as a real process (see compiledOutput.ts).
 */
export default async function globalSetup(config: GlobalConfig): Promise<void> {
  await ensureCompiledOutput(config);
  const server = await startRedisServer();
  process.env.TEST_REDIS_URL = server.url;
  (globalThis as { __TEST_REDIS__?: unknown }).__TEST_REDIS__ = server;
}
