import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import Redis from 'ioredis';
import { freeFixedPort, RedisServer, startRedisServer } from '../../src/demo/redisServer';

const run = promisify(execFile);

/** A private three-node Redis Cluster on free loopback ports, no replicas: what cluster-only hosting gives. */
export interface RedisCluster {
  nodes: RedisServer[];
  /** `redis://127.0.0.1:<port>` of each node, as REDIS_CLUSTER_NODES takes them. */
  urls: string[];
  stop(): Promise<void>;
}

export async function startRedisCluster(): Promise<RedisCluster> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'redis-cluster-'));
  const nodes: RedisServer[] = [];
  try {
    for (let i = 0; i < 3; i++) {
      const file = path.join(dir, `nodes-${i}.conf`);
      nodes.push(
        await startRedisServer(await clusterPort(), [
          '--cluster-enabled',
          'yes',
          '--cluster-config-file',
          file,
          '--cluster-node-timeout',
          '2000',
          '--dir',
          dir,
        ]),
      );
    }
    const addresses = nodes.map((n) => `127.0.0.1:${n.port}`);
    await run('redis-cli', ['--cluster', 'create', ...addresses, '--cluster-replicas', '0', '--cluster-yes']);
    await Promise.all(nodes.map((n) => waitForClusterOk(n.port)));
  } catch (err) {
    await Promise.all(nodes.map((n) => n.stop()));
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
  return {
    nodes,
    urls: nodes.map((n) => n.url),
    stop: async () => {
      await Promise.all(nodes.map((n) => n.stop()));
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/**
 * A node's cluster bus listens on its port + 10000, so the port must leave room for that (an ephemeral port above
 * 55535 would not) and the bus port must be free too.
 */
async function clusterPort(): Promise<number> {
  for (;;) {
    const port = await freeFixedPort();
    if (await isFree(port + 10000)) return port;
  }
}

function isFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const srv = net.createServer();
    srv.once('error', () => resolve(false));
    srv.listen(port, '127.0.0.1', () => srv.close(() => resolve(true)));
  });
}

async function waitForClusterOk(port: number): Promise<void> {
  const redis = new Redis({ port, host: '127.0.0.1', lazyConnect: true });
  try {
    await redis.connect();
    for (let i = 0; i < 200; i++) {
      if (/cluster_state:ok/.test(await redis.cluster('INFO'))) return;
      await new Promise((r) => setTimeout(r, 50));
    }
    throw new Error(`cluster node ${port} never reached cluster_state:ok`);
  } finally {
    redis.disconnect();
  }
}
