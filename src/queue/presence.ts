import { randomBytes } from 'node:crypto';
import { Cluster } from 'ioredis';
import { errorSummary } from '../base/errors';
import type { Logger } from '../base/logger';
import { timeLimit } from '../base/sleep';
import type { RedisClient } from '../redis/scripts';
import type { Presence } from './fairQueue';

/** How long a worker without a subscriber stays a suspect before its claims are taken back (see reap-14.lua). */
export const PRESENCE_GRACE_MS = 5000;
/**
 * How often the subscription is asked whether it is alive (a PING): a NAT or a proxy can drop an idle connection
 * without a word to the worker, while Redis drops the subscription. Often while this worker has claims (the fleet
 * takes them back PRESENCE_GRACE_MS after it finds the subscription gone), seldom while it is idle (it only hears
 * wake messages then).
 */
const PING_BUSY_MS = 2000;
const PING_IDLE_MS = 30_000;
/** A PING not answered this long: the connection is dead; it is made again (and subscribes again by itself). */
const PING_TIMEOUT_MS = 1000;

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
  private watch: NodeJS.Timeout | undefined;
  private pingedAt = performance.now();

  constructor(
    /** The connection that subscribes to the fleet's wake messages: one more channel costs nothing. */
    private readonly subscriber: RedisClient,
    private readonly channel: (worker: string) => string,
    private readonly hooks: {
      onDown(): void;
      onUp(): void;
      /** Whether this worker has claims now. */
      busy(): boolean;
    },
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
      // Claiming without presence would have every other worker take this one's claims back as a dead worker's.
      throw new Error(`This worker could not subscribe to its channel, and will not claim jobs: ${errorSummary(err).message}`, { cause: err });
    }
    this.mode = 'channel';
    this.watch = setInterval(() => void this.ping(), PING_BUSY_MS);
    this.watch.unref();
    this.subscriber.on('close', () => this.hooks.onDown());
    this.subscriber.on('ready', () => {
      // ioredis subscribes again by itself; confirmed here before any confirmation of a claim is trusted again.
      (this.subscriber.subscribe(channel) as Promise<unknown>).then(
        () => this.hooks.onUp(),
        () => undefined,
      );
    });
  }

  stop(): void {
    clearInterval(this.watch);
  }

  /** Asks the subscription whether it is alive, when due; a connection that does not answer is made again. */
  private async ping(): Promise<void> {
    if (this.subscriber.status !== 'ready' || performance.now() - this.pingedAt < (this.hooks.busy() ? PING_BUSY_MS : PING_IDLE_MS) - 100) return;
    this.pingedAt = performance.now();
    const answered = await Promise.race([
      this.subscriber.ping().then(
        () => true,
        () => true,
      ),
      timeLimit(PING_TIMEOUT_MS).then(() => false),
    ]);
    if (answered || this.subscriber.status !== 'ready') return;
    this.logger.warn({ component: 'presence' }, 'subscription not answering: connecting again');
    this.subscriber.disconnect(true);
  }
}
