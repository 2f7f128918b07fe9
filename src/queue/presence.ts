import { randomBytes } from 'node:crypto';
import { Cluster } from 'ioredis';
import { errorSummary } from '../base/errors';
import type { Logger } from '../base/logger';
import type { RedisClient } from '../redis/scripts';
import type { Presence } from './fairQueue';

/**
 * This worker as the fleet sees it: a random id (its claim tokens start with it, so no token ever repeats) and a
 * subscription to its own channel, held while it lives. A process that dies loses its subscription at once, and the
 * other workers take its claims back within seconds (see reap-14.lua) instead of waiting for their lease; a worker
 * that is frozen or slow keeps its subscription, so its claims lapse by their lease only. While its subscription
 * is down this worker may look gone: `onDown` tells its claims to trust no confirmation until `onUp`.
 *
 * On a Redis Cluster a subscription lives on one node while the scripts run on the queue's node, so presence is off
 * there: a dead worker's claims come back when their lease lapses.
 */
export class WorkerPresence {
  /** 12 hex digits: unique among the workers of a fleet, and never reused. */
  readonly worker = randomBytes(6).toString('hex');
  private mode: Presence = 'off';
  private tokens = 0;

  constructor(
    /** The connection that subscribes to the fleet's wake messages: one more channel costs nothing. */
    private readonly subscriber: RedisClient,
    private readonly channel: (worker: string) => string,
    private readonly hooks: { onDown(): void; onUp(): void },
    private readonly logger: Logger,
  ) {}

  /** How the fleet tells whether a worker is present: 'off' until this worker's own subscription is up. */
  get presence(): Presence {
    return this.mode;
  }

  /** A claim token no other claim ever had: `<worker>.<n>`. */
  token(): string {
    this.tokens += 1;
    return `${this.worker}.${this.tokens.toString(36)}`;
  }

  async start(): Promise<void> {
    if (this.subscriber instanceof Cluster) return;
    const channel = this.channel(this.worker);
    try {
      await this.subscriber.subscribe(channel);
    } catch (err) {
      this.logger.warn({ err: errorSummary(err) }, "presence not announced: a dead worker's jobs come back when their lease lapses");
      return;
    }
    this.mode = 'channel';
    this.subscriber.on('close', () => this.hooks.onDown());
    this.subscriber.on('ready', () => {
      // ioredis subscribes again by itself; confirmed here before any confirmation of a claim is trusted again.
      (this.subscriber.subscribe(channel) as Promise<unknown>).then(
        () => this.hooks.onUp(),
        () => undefined,
      );
    });
  }
}
