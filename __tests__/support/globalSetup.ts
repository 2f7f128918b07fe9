import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { startRedisServer } from '../../src/demo/redisServer';

/**
 * One private Redis for the whole run (its URL reaches every test file through the environment), and a
 * fresh build: tests that need a worker as a real process run what ships, dist/index.js. dist/ is emptied first:
 * a file left from an older layout (dist/config.js beside dist/config/) would be loaded instead of the new one.
 */
export default async function globalSetup(): Promise<void> {
  const root = path.resolve(__dirname, '..', '..');
  execFileSync('npm', ['run', 'build', '--silent'], { cwd: root, stdio: 'inherit' });
  const server = await startRedisServer();
  process.env.TEST_REDIS_URL = server.url;
  (globalThis as { __TEST_REDIS__?: unknown }).__TEST_REDIS__ = server;
}
