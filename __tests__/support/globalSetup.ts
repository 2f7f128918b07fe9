import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { startRedisServer } from '../../src/demo/redisServer';

/**
 * One private Redis for the whole run (its URL reaches every test file through the environment), and a
 * fresh build: tests that need a worker as a real process run what ships, dist/index.js.
 */
export default async function globalSetup(): Promise<void> {
  const root = path.resolve(__dirname, '..', '..');
  execFileSync('npm', ['run', 'build', '--silent'], { cwd: root, stdio: 'inherit' });
  const server = await startRedisServer();
  process.env.TEST_REDIS_URL = server.url;
  (globalThis as { __TEST_REDIS__?: unknown }).__TEST_REDIS__ = server;
}
