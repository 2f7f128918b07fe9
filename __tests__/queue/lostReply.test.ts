import net from 'node:net';
import Bull from 'bull';
import Redis from 'ioredis';
import { createLogger } from '../../src/base/logger';
import { FairQueue } from '../../src/queue/fairQueue';
import { redisClientFactory, redisOptionsFromUrl } from '../../src/redis/connections';
import { redisUrl, uniqueQueueName } from '../support/helpers';

/**
 * A reply lost with the connection (a network blip, a proxy, a failover) after Redis ran a script: ioredis sends
 * the command again once it has reconnected, and a claim runs twice. The worker runs the job of the second; the
 * first is left behind under its token, and is given back (see FairQueue.giveBackOrphans).
 */

/** A TCP proxy to Redis that drops the connection instead of passing the reply to the next command holding `marker`. */
async function dropReplyProxy(target: { host: string; port: number }): Promise<{ port: number; arm(marker: string): void; close(): void }> {
  let armed: string | null = null;
  const sockets = new Set<net.Socket>();
  const server = net.createServer((client) => {
    const upstream = net.connect(target.port, target.host);
    sockets.add(client).add(upstream);
    let dropNext = false;
    client.on('data', (d) => {
      if (armed && d.toString('latin1').includes(armed)) {
        armed = null;
        dropNext = true;
      }
      upstream.write(d);
    });
    upstream.on('data', (d) => {
      if (!dropNext) return void client.write(d);
      client.destroy();
      upstream.destroy();
    });
    for (const [a, b] of [
      [client, upstream],
      [upstream, client],
    ]) {
      a.on('error', () => b.destroy());
      a.on('close', () => b.destroy());
    }
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as net.AddressInfo).port,
    arm: (marker) => void (armed = marker),
    close: () => {
      sockets.forEach((s) => s.destroy());
      server.close();
    },
  };
}

it("a claim run twice after a lost reply leaves a job behind, which the worker's check after the drop gives back", async () => {
  const name = uniqueQueueName('lostreply');
  const prefix = `bull:${name}:`;
  const bull = new Bull(name, redisUrl());
  const direct = new Redis(redisOptionsFromUrl(redisUrl()));
  const options = redisOptionsFromUrl(redisUrl());
  const proxy = await dropReplyProxy({ host: options.host!, port: options.port! });
  const redis = redisClientFactory(
    { url: `redis://127.0.0.1:${proxy.port}/${options.db ?? 0}`, clusterNodes: [], tlsRejectUnauthorized: true },
    createLogger('silent'),
  );
  const fair = new FairQueue(redis.create('client'), prefix, { leaseMs: 60_000, userConcurrency: 0, paced: false, promiseMs: 50, lockMs: 60_000 });
  try {
    for (const user of ['alice', 'bob']) await bull.add({ Id: user, Prompt: 'p', Token: 't', Number: 1 });
    await fair.intake(null, 100);
    proxy.arm('w0.1');
    const got = (await fair.claim('w0.1')).job!;
    // Sent twice: both jobs are claimed under the one token; the worker knows only the second.
    expect(await direct.zcard(`${prefix}fq:claims`)).toBe(2);
    expect(await fair.giveBackOrphans('w0', { running: [{ token: 'w0.1', job: got }], pending: [] })).toBe(1);
    expect((await fair.claim('w0.2')).job?.userId).toBe(got.userId === 'alice' ? 'bob' : 'alice');
  } finally {
    await redis.closeAll();
    proxy.close();
    await bull.close();
    const keys = await direct.keys(`${prefix}*`);
    if (keys.length) await direct.del(...keys);
    direct.disconnect();
  }
});
