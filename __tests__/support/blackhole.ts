import net from 'node:net';
import { redisOptionsFromUrl } from '../../src/redis/connections';

/**
 * A TCP proxy in front of a Redis that can drop the worker's subscription connection the way a NAT or a load
 * balancer drops an idle one: Redis sees its side close (the subscription is gone), the worker sees nothing at all.
 */
export interface Blackhole {
  url: string;
  /** Drops every connection named `name` (CLIENT SETNAME) so far; returns how many. */
  drop(name: string): number;
  close(): void;
}

export async function startBlackhole(redisUrl: string): Promise<Blackhole> {
  const { host, port } = redisOptionsFromUrl(redisUrl);
  const pairs: Array<{ client: net.Socket; upstream: net.Socket; seen: string; dead: boolean }> = [];
  const server = net.createServer((client) => {
    const upstream = net.connect(port!, host!);
    const pair = { client, upstream, seen: '', dead: false };
    pairs.push(pair);
    client.on('data', (d) => {
      if (pair.seen.length < 4096) pair.seen += d.toString('latin1');
      if (!pair.dead) upstream.write(d);
    });
    upstream.on('data', (d) => !pair.dead && client.write(d));
    upstream.on('error', () => undefined);
    client.on('error', () => undefined);
    upstream.on('close', () => !pair.dead && client.destroy());
    client.on('close', () => upstream.destroy());
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `redis://127.0.0.1:${(server.address() as net.AddressInfo).port}`,
    drop: (name) => {
      const dropped = pairs.filter((p) => !p.dead && p.seen.includes(name));
      for (const p of dropped) {
        p.dead = true;
        p.upstream.destroy();
      }
      return dropped.length;
    },
    close: () => {
      for (const p of pairs) {
        p.client.destroy();
        p.upstream.destroy();
      }
      server.close();
    },
  };
}
