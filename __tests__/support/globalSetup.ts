import { startRedisServer } from '../../src/demo/redisServer';

/** One private Redis for the whole run; its URL reaches every test file through the environment. */
export default async function globalSetup(): Promise<void> {
  const server = await startRedisServer();
  process.env.TEST_REDIS_URL = server.url;
  (globalThis as { __TEST_REDIS__?: unknown }).__TEST_REDIS__ = server;
}
