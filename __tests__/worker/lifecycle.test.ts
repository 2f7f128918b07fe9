import { execFileSync } from 'node:child_process';
import net from 'node:net';
import path from 'node:path';
import Bull from 'bull';
import Redis from 'ioredis';
import { loadConfig } from '../../src/config';
import { freeFixedPort, RedisServer, startRedisServer } from '../../src/demo/redisServer';
import { createLogger } from '../../src/base/logger';
import { startWorker } from '../../src/worker';
import { WorkerEvents } from '../../src/events/workerEvents';
import type { Notifier } from '../../src/pipeline/ports';
import { LogCapture, signToken, waitUntil } from '../support/helpers';
import { TestSystem, useTestSystem } from '../support/harness';

/**
 * The worker's own life: a start that fails half-way, a start before Redis is up, a shutdown that cannot
 * finish in time. Each uses a Redis of its own where it must watch or break the connection.
 */
describe('worker lifecycle', () => {
  let sys: TestSystem;
  useTestSystem('lifecycle', (s) => (sys = s));
  const servers: RedisServer[] = [];
  const closers: Array<() => Promise<void> | void> = [];
  afterEach(async () => {
    for (const close of closers.splice(0)) await close();
    for (const server of servers.splice(0)) await server.stop();
  });

  async function ownRedis(port?: number): Promise<RedisServer> {
    const server = await startRedisServer(port);
    servers.push(server);
    return server;
  }

  /** Names of the worker's connections open on `server` (every connection names itself grok-image-worker:<type>). */
  async function workerConnections(server: RedisServer): Promise<string[]> {
    const admin = new Redis(server.port, '127.0.0.1');
    try {
      const list = (await admin.client('LIST')) as string;
      return list
        .split('\n')
        .map((line) => /name=(\S*)/.exec(line)?.[1] ?? '')
        .filter((name) => name.startsWith('grok-image-worker'));
    } finally {
      admin.disconnect();
    }
  }

  it('a start that fails half-way closes every connection it had opened', async () => {
    const server = await ownRedis();
    const failing: Notifier = {
      notify: async () => undefined,
      tryDeliver: () => false,
      tryNotify: () => false,
      waitForConnection: () => Promise.reject(new Error('notification service misconfigured')),
      close: async () => undefined,
    };
    const config = loadConfig(sys.env({ REDIS_URL: server.url }));
    const logs = new LogCapture();
    await expect(startWorker(config, createLogger('info', logs), { notifier: failing })).rejects.toThrow('notification service misconfigured');
    // Redis was reached before the failure (the connections existed), and none is left.
    expect(logs.lines.some((l) => l.msg === 'ready')).toBe(false);
    await waitUntil(async () => (await workerConnections(server)).length === 0, 5000, 'connections closed');
  });

  it('events given to the start are heard from the start: worker:ready with the in-flight limit and what bounds it', async () => {
    const events = new WorkerEvents();
    const ready: Array<{ inFlightLimit: number; limitedBy: string }> = [];
    events.on('worker:ready', (e) => ready.push(e));
    const worker = await sys.startWorker({ CONCURRENCY: '3' }, { events });
    expect(worker.events).toBe(events);
    expect(ready).toEqual([expect.objectContaining({ inFlightLimit: 3, limitedBy: 'CONCURRENCY' })]);
  });

  it('says it is waiting for Redis instead of claiming to be ready, and is ready once Redis answers', async () => {
    const port = await freeFixedPort();
    const worker = sys.spawnWorker({ REDIS_URL: `redis://127.0.0.1:${port}` });
    expect(await worker.waitForLog((l) => l.msg === 'waiting for Redis: not ready yet')).toMatchObject({
      level: 'warn',
      redisUrl: `redis://127.0.0.1:${port}`,
    });
    expect(worker.logs.some((l) => l.msg === 'ready')).toBe(false);
    await ownRedis(port);
    await worker.ready;
    worker.child.kill('SIGTERM');
    expect(await worker.exited).toEqual({ code: 0, signal: null });
  });

  it('a shutdown that cannot hand its job back (Redis hangs) does not hang with it: exit 1, and the platform can tell', async () => {
    const server = await ownRedis();
    const proxy = await startFreezableProxy(server.port);
    closers.push(() => proxy.close());
    sys.xai.setDefault({ hang: true });
    const worker = sys.spawnWorker({ REDIS_URL: `redis://127.0.0.1:${proxy.port}`, SHUTDOWN_TIMEOUT_MS: '200' });
    await worker.ready;
    // The worker's Redis is its own: the job goes there, as the front end would add it.
    const queue = new Bull(sys.queueName, { redis: { port: server.port, host: '127.0.0.1' } });
    closers.push(() => queue.close());
    await queue.add({ Id: 'alice', Prompt: 'slow', Token: signToken('alice'), Number: 1 }, { attempts: 1, removeOnComplete: true, removeOnFail: true });
    await waitUntil(() => sys.xai.calls.length >= 1, 10_000, 'generation started');

    proxy.freeze();
    worker.child.kill('SIGTERM');
    expect(await worker.exited).toEqual({ code: 1, signal: null });
    expect(worker.logs.find((l) => l.level === 'error' && typeof l.msg === 'string' && l.msg.startsWith('jobs not handed back'))).toMatchObject({ running: 1 });
    expect(worker.logs.find((l) => l.msg === 'shutdown complete')).toMatchObject({ handedBack: false });
  });
});

/** A TCP proxy to Redis that can freeze: connections stay open but nothing passes any more (a hung Redis). */
async function startFreezableProxy(targetPort: number): Promise<{ port: number; freeze: () => void; close: () => Promise<void> }> {
  let frozen = false;
  const sockets = new Set<net.Socket>();
  const server = net.createServer((client) => {
    const upstream = net.connect(targetPort, '127.0.0.1');
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on('error', () => undefined);
      s.on('close', () => sockets.delete(s));
    }
    client.on('data', (d) => !frozen && upstream.write(d));
    upstream.on('data', (d) => !frozen && client.write(d));
    client.on('close', () => upstream.destroy());
    upstream.on('close', () => client.destroy());
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as net.AddressInfo).port,
    freeze: () => {
      frozen = true;
      // New connections (a reconnect) hang too: accepted, never answered.
      server.removeAllListeners('connection');
      server.on('connection', (s: net.Socket) => sockets.add(s.on('error', () => undefined)));
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

describe('what the worker loads', () => {
  it('never loads the demo and test infrastructure (src/demo) at run time', () => {
    const root = path.resolve(__dirname, '..', '..');
    const loaded = execFileSync(process.execPath, ['-e', "require('./dist/index.js'); console.log(JSON.stringify(Object.keys(require.cache)))"], {
      cwd: root,
    }).toString();
    const files = JSON.parse(loaded) as string[];
    expect(files.some((f) => f.endsWith(path.join('dist', 'worker.js')))).toBe(true);
    expect(files.filter((f) => f.includes(`${path.sep}dist${path.sep}demo${path.sep}`))).toEqual([]);
  });
});
