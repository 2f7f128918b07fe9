import fs from 'node:fs';
import path from 'node:path';
import Redis from 'ioredis';
import { RedisServer, startRedisServer } from '../src/demo/redisServer';
import { redisOptionsFromUrl } from '../src/redis/connections';
import { BenchChild } from './benchChild';
import { DeliveryCounter } from './deliveryCounter';
import { startXaiServer, XaiServer } from './xaiServer';

/** Everything the consumers talk to, private to this run: Redis, the image API and the notification relay. */
export interface BenchSystem {
  redisServer: RedisServer;
  /** For the producer's bookkeeping and the footprint; never used by a consumer. */
  admin: Redis;
  xai: XaiServer;
  relay: BenchChild;
  relayUrl: string;
  deliveries: DeliveryCounter;
  close(): Promise<void>;
}

export async function startSystem(tmpDir: string): Promise<BenchSystem> {
  const releasers: Array<() => Promise<unknown>> = [];
  const close = async (): Promise<void> => {
    for (const release of releasers.reverse()) await release().catch(() => undefined);
  };
  try {
    const redisServer = await startRedisServer();
    releasers.push(() => redisServer.stop());
    const admin = new Redis(redisOptionsFromUrl(redisServer.url));
    releasers.push(async () => admin.disconnect());
    const xai = await startXaiServer();
    releasers.push(() => xai.close());
    fs.mkdirSync(path.join(tmpDir, 'logs'), { recursive: true });
    const relay = new BenchChild('relay', { env: {}, logFile: path.join(tmpDir, 'logs', 'relay.log') });
    releasers.push(() => relay.stop());
    const ready = await relay.ready;
    if (ready.type !== 'relay') throw new Error('the relay did not say its URL');
    const deliveries = new DeliveryCounter(relay);
    return { redisServer, admin, xai, relay, relayUrl: ready.url, deliveries, close };
  } catch (err) {
    await close();
    throw err;
  }
}
