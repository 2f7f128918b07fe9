import { randomBytes } from 'node:crypto';
import path from 'node:path';
import Bull from 'bull';
import Redis from 'ioredis';
import jwt from 'jsonwebtoken';
import { startStorybangJwt, StorybangJwt } from '../__tests__/support/storybangJwt';
import { RedisServer, startRedisServer } from '../src/demo/redisServer';
import { redisOptionsFromUrl } from '../src/redis/connections';
import { Child, FromChild } from './child';
import { startXaiServer, XaiServer } from './xaiServer';

const JWT_SECRET = 'bench-secret-0123456789abcdef0123456789';

/** A worker child once ready, with what its `worker:ready` event said. */
export interface StartedWorker {
  child: Child;
  inFlightLimit: number;
  limitedBy: string;
}

/**
 * Everything a run uses, private to it: a redis-server on a free port, the stand-in image API, StoryBang's relay
 * (counting what it relays) and JWT service. Children started through it are stopped by `close`.
 */
export class Rig {
  /** What the relay relayed, as reported every 100 ms (performance.now() of the report). */
  readonly relayed: Array<{ at: number; ok: number; failed: number }> = [];
  private readonly children = new Set<Child>();
  private infoCalls = 0;
  private count = 0;

  private constructor(
    readonly dir: string,
    readonly quick: boolean,
    readonly redis: RedisServer,
    readonly admin: Redis,
    readonly xai: XaiServer,
    readonly relay: Child,
    readonly relayUrl: string,
    readonly jwtService: StorybangJwt,
  ) {}

  static async start(dir: string, quick: boolean): Promise<Rig> {
    const redis = await startRedisServer();
    const admin = new Redis(redisOptionsFromUrl(redis.url));
    const xai = await startXaiServer();
    const relay = new Child('relayChild', {}, path.join(dir, 'logs', 'relay.log'));
    const ready = await relay.ready;
    const rig = new Rig(dir, quick, redis, admin, xai, relay, String((ready as { url?: string }).url), await startStorybangJwt());
    relay.events.on('relayed', (m: Extract<FromChild, { type: 'relayed' }>) => rig.relayed.push({ at: performance.now(), ok: m.ok, failed: m.failed }));
    return rig;
  }

  /** A queue name no earlier scenario used. */
  queueName(scenario: string): string {
    return `${scenario}_${++this.count}_${randomBytes(2).toString('hex')}`;
  }

  /** The producer: Bull with its own default prefix, as StoryBang's server. */
  producer(queueName: string): Bull.Queue {
    return new Bull(queueName, { redis: redisOptionsFromUrl(this.redis.url) });
  }

  token(Id: string): string {
    return jwt.sign({ Id }, JWT_SECRET, { algorithm: 'HS256', expiresIn: '1h' });
  }

  /** The contract's variables for a worker (or the bare pipeline) on `queueName`, a local JWT secret. */
  contractEnv(queueName: string, more: Record<string, string> = {}): Record<string, string> {
    return {
      REDIS_URL: this.redis.url,
      QUEUE_NAME: queueName,
      GROK_API: this.xai.url,
      GROK_API_KEY: 'xai-bench-key',
      JWT_SECRET,
      PORT_MESSAGES_USERS: this.relayUrl,
      LOG_LEVEL: 'info',
      SHUTDOWN_TIMEOUT_MS: '3000',
      ...more,
    };
  }

  /** StoryBang's original `.env` only (plus the stand-in's URL, a fresh queue and the bench's log and stop settings). */
  storybangEnv(queueName: string, more: Record<string, string> = {}): Record<string, string> {
    return {
      BULL_GENERATOR_HOST: '127.0.0.1',
      BULL_GENERATOR_PORT: String(this.redis.port),
      PORT_MESSAGES_USERS: this.relayUrl,
      API_JWT: this.jwtService.baseUrl,
      API_GROK: 'xai-bench-key',
      PORT: '4000',
      GROK_API: this.xai.url,
      QUEUE_NAME: queueName,
      LOG_LEVEL: 'info',
      SHUTDOWN_TIMEOUT_MS: '3000',
      ...more,
    };
  }

  /** The worker in a child (workerChild.ts), ready. */
  async worker(name: string, env: Record<string, string>): Promise<StartedWorker> {
    const child = this.track(new Child('workerChild', env, path.join(this.dir, 'logs', `${name}.log`)));
    const ready = child.next('worker:ready');
    await child.ready;
    const { data } = await ready;
    return { child, inFlightLimit: Number(data.inFlightLimit), limitedBy: String(data.limitedBy) };
  }

  /** The bare pipeline (or with BARE_NOOP=1 a do-nothing Bull consumer) in a child, ready. */
  async bare(name: string, env: Record<string, string>): Promise<Child> {
    const child = this.track(new Child('bareChild', env, path.join(this.dir, 'logs', `${name}.log`)));
    await child.ready;
    return child;
  }

  async stop(child: Child): Promise<void> {
    await child.stop();
    this.children.delete(child);
  }

  /** Pictures the relay relayed with a report between `from` and `to` (performance.now()). */
  deliveredBetween(from: number, to = Infinity): number {
    return this.relayed.filter((r) => r.at > from && r.at <= to).reduce((sum, r) => sum + r.ok, 0);
  }

  /**
   * Commands Redis has run so far (INFO commandstats: the sum of `calls` over every command, those inside Lua
   * scripts counted), less the INFO calls of this method: a difference of two readings is everyone else's.
   */
  async commands(): Promise<number> {
    const info = await this.admin.info('commandstats');
    const own = this.infoCalls++;
    let total = 0;
    for (const m of info.matchAll(/^cmdstat_[^:]+:calls=(\d+)/gm)) total += Number(m[1]);
    return total - own;
  }

  async close(): Promise<void> {
    for (const child of this.children) await child.stop().catch(() => undefined);
    await this.relay.stop().catch(() => undefined);
    await this.jwtService.close().catch(() => undefined);
    await this.xai.close().catch(() => undefined);
    this.admin.disconnect();
    await this.redis.stop().catch(() => undefined);
  }

  private track(child: Child): Child {
    this.children.add(child);
    void child.exited.then(() => this.children.delete(child));
    return child;
  }
}

export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, Math.max(0, ms)));
