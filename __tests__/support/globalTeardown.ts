import type { RedisServer } from '../../src/demo/redisServer';

export default async function globalTeardown(): Promise<void> {
  const server = (globalThis as { __TEST_REDIS__?: RedisServer }).__TEST_REDIS__;
  await server?.stop();
}
