import { setMaxListeners } from 'node:events';
import { io, Socket } from 'socket.io-client';
import type { NotifyFormat } from '../../config';
import { linkSignals } from '../../base/abort';
import { abortError, toError, transientError } from '../../base/errors';
import type { Logger } from '../../base/logger';
import { buildPayload } from './payload';
import { backoffDelayMs } from '../../base/retryPolicy';
import { sleep, timeLimit } from '../../base/sleep';
import { Throttle } from '../../base/throttle';
import type { JobEvent, Notifier } from '../ports';

export interface SocketNotifierOptions {
  url: string;
  event: string;
  roomSuffix: string;
  format: NotifyFormat;
  /** > 0: wait this long for the service's acknowledgement; a missing one is a failed delivery. */
  ackTimeoutMs: number;
  /** Give up on one delivery after this long (the image stays checkpointed). */
  maxWaitMs: number;
  logger: Logger;
  /** Backoff between delivery attempts while connected but unacknowledged. */
  retryBaseMs?: number;
  retryMaxMs?: number;
  /** Wait before connecting again after the service disconnected us on purpose (default 1 s). */
  rejoinDelayMs?: number;
  /**
   * Emitted bytes the connection may hold unsent before deliveries wait (default 8 MB). socket.io emits
   * without backpressure: a service that stops reading would otherwise pile every image up in memory.
   */
  maxUnsentBytes?: number;
}

const DEFAULT_MAX_UNSENT_BYTES = 8 * 1024 * 1024;
/** How often a delivery held back by unsent bytes looks again. */
const BACKLOG_POLL_MS = 20;
/** How long close() waits for emitted messages to be written before it closes the socket. */
const CLOSE_FLUSH_LIMIT_MS = 1000;

/** socket.io servers refuse larger messages by default (maxHttpBufferSize). */
const SOCKET_IO_DEFAULT_MAX_BYTES = 1_000_000;

const DEFAULT_REJOIN_DELAY_MS = 1000;

/** One socket.io connection per process to the notification service, reconnecting forever. */
export class SocketNotifier implements Notifier {
  private readonly socket: Socket;
  private closing?: Promise<void>;
  private rejoinTimer?: NodeJS.Timeout;
  /** Aborted by close(): wakes every delivery still waiting, so none outlives the connection. */
  private readonly closed = new AbortController();

  constructor(private readonly options: SocketNotifierOptions) {
    // One listener per delivery in flight: as many as CONCURRENCY, which may be above Node's warning level.
    setMaxListeners(0, this.closed.signal);
    this.socket = io(options.url, {
      // A websocket from the start: with socket.io's default (HTTP long-polling first, then an upgrade), a message
      // emitted before the upgrade completes travels in a pending HTTP request that a shutdown can cut short.
      transports: ['websocket'],
      reconnection: true,
      reconnectionAttempts: Infinity,
      reconnectionDelay: 500,
      reconnectionDelayMax: 5000,
    });
    const log = options.logger.child({ component: 'notifier' });
    this.socket.on('connect', () => log.info({ url: options.url }, 'notification service connected'));
    this.socket.on('disconnect', (reason) => {
      log.warn({ reason }, 'notification service disconnected');
      // socket.io-client reconnects by itself after a lost connection, but not after the server disconnected
      // this socket on purpose; the contract says reconnect forever. The pause keeps a service that keeps
      // refusing us from turning this into a busy loop.
      if (reason === 'io server disconnect') this.rejoin();
    });
    // Reconnection attempts come every few seconds while the service is away: one line a minute is enough.
    const throttle = new Throttle(60_000);
    this.socket.on('connect_error', (err) => {
      // A refusal by the service's middleware also ends socket.io-client's own reconnection (`active` is false).
      if (!this.socket.active) this.rejoin();
      if (!throttle.allow()) return;
      log.warn({ err: { message: err.message } }, 'notification service unreachable, retrying');
    });
  }

  private rejoin(): void {
    if (this.closed.signal.aborted) return;
    clearTimeout(this.rejoinTimer);
    this.rejoinTimer = setTimeout(() => this.socket.connect(), this.options.rejoinDelayMs ?? DEFAULT_REJOIN_DELAY_MS);
  }

  get connected(): boolean {
    return this.socket.connected;
  }

  /** Resolves once connected (or at once if already), or after `timeoutMs`. */
  waitForConnection(timeoutMs: number, signal?: AbortSignal): Promise<boolean> {
    if (this.socket.connected) return Promise.resolve(true);
    return new Promise((resolve, reject) => {
      const done = (value: boolean | Error): void => {
        clearTimeout(timer);
        this.socket.off('connect', onConnect);
        signal?.removeEventListener('abort', onAbort);
        if (value instanceof Error) reject(value);
        else resolve(value);
      };
      const onConnect = (): void => done(true);
      const onAbort = (): void => done(abortError());
      const timer = setTimeout(() => done(this.socket.connected), timeoutMs);
      this.socket.on('connect', onConnect);
      if (signal?.aborted) onAbort();
      else signal?.addEventListener('abort', onAbort, { once: true });
    });
  }

  tryNotify(event: JobEvent): boolean {
    const payload = buildPayload(this.options.format, event, this.options.roomSuffix);
    if (!payload || !this.ready()) return false;
    this.socket.emit(this.options.event, payload);
    return true;
  }

  tryDeliver(event: JobEvent): boolean {
    if (this.options.ackTimeoutMs > 0 || !this.ready()) return false;
    const payload = buildPayload(this.options.format, event, this.options.roomSuffix);
    if (!payload) return true;
    this.warnIfTooLarge(event);
    this.socket.emit(this.options.event, payload);
    return true;
  }

  async notify(event: JobEvent, signal: AbortSignal): Promise<void> {
    const payload = buildPayload(this.options.format, event, this.options.roomSuffix);
    if (!payload) return;
    this.warnIfTooLarge(event);
    const wait = linkSignals(signal, this.closed.signal);
    try {
      await this.deliver(payload, wait.signal);
    } catch (err) {
      if (!signal.aborted && this.closed.signal.aborted) throw transientError('Notifier closed before the notification was delivered', { cause: err });
      throw err;
    } finally {
      wait.dispose();
    }
  }

  private async deliver(payload: object, signal: AbortSignal): Promise<void> {
    const deadline = Date.now() + this.options.maxWaitMs;
    let lastError: Error | undefined;
    let failures = 0;
    for (;;) {
      if (signal.aborted) throw abortError();
      if (this.ready()) {
        try {
          await this.emit(payload, signal);
          return;
        } catch (err) {
          if (signal.aborted) throw err;
          lastError = toError(err);
          failures += 1;
        }
      }
      const remaining = deadline - Date.now();
      if (remaining <= 0) {
        throw transientError(`Notification not delivered within ${this.options.maxWaitMs} ms: ${lastError ? lastError.message : 'service unreachable'}`, {
          cause: lastError,
        });
      }
      if (!this.socket.connected) {
        // While disconnected, deliver the moment the connection is back rather than on the next tick of a backoff.
        await this.waitForConnection(remaining, signal);
      } else if (failures === 0) {
        // Connected but over the unsent-bytes limit: not a failure, so no backoff; go as soon as it drains.
        await sleep(Math.min(BACKLOG_POLL_MS, remaining), signal);
      } else {
        const backoff = backoffDelayMs(failures, { baseMs: this.options.retryBaseMs ?? 250, maxMs: this.options.retryMaxMs ?? 5000 });
        await sleep(Math.min(backoff, remaining), signal);
      }
    }
  }

  /** Connected, and not holding more unsent bytes than allowed. */
  private ready(): boolean {
    return this.socket.connected && this.unsentBytes() <= (this.options.maxUnsentBytes ?? DEFAULT_MAX_UNSENT_BYTES);
  }

  /** The websocket under the connection, when it is one: `closed` resolves once its closing handshake is over. */
  private websocket(): { closed(limitMs: number): Promise<void> } | undefined {
    const engine = this.socket.io.engine as unknown as { transport?: { ws?: WebSocketLike } } | undefined;
    const ws = engine?.transport?.ws;
    if (!ws || typeof ws.once !== 'function' || ws.readyState === 3) return undefined;
    const closed = new Promise<void>((resolve) => ws.once!('close', () => resolve()));
    return { closed: (limitMs) => Promise.race([closed, timeLimit(limitMs)]) };
  }

  /** What the websocket has accepted but not yet written to the network (0 on other transports). */
  private unsentBytes(): number {
    const engine = this.socket.io.engine as unknown as { transport?: { ws?: { bufferedAmount?: number } } } | undefined;
    return engine?.transport?.ws?.bufferedAmount ?? 0;
  }

  private async emit(payload: object, signal: AbortSignal): Promise<void> {
    if (this.options.ackTimeoutMs > 0) {
      const acknowledged = this.socket.timeout(this.options.ackTimeoutMs).emitWithAck(this.options.event, payload);
      const aborted = rejectOnAbort(signal);
      try {
        await Promise.race([acknowledged, aborted.promise]);
      } finally {
        aborted.dispose();
      }
      return;
    }
    this.socket.emit(this.options.event, payload);
  }

  private warnIfTooLarge(event: JobEvent): void {
    // base64 dominates the payload; measuring the whole JSON would cost a second copy of the image.
    const approxBytes = (event.image?.base64.length ?? 0) + 256;
    if (approxBytes > SOCKET_IO_DEFAULT_MAX_BYTES) {
      this.options.logger.warn(
        { jobId: event.jobId, payloadBytes: approxBytes },
        'notification payload is over 1 MB: the notification service needs maxHttpBufferSize above it',
      );
    }
  }

  close(): Promise<void> {
    this.closing ??= (async () => {
      this.closed.abort();
      clearTimeout(this.rejoinTimer);
      // A delivery that just went out (the last job before shutdown) must leave the process before the socket goes.
      await this.flushed(CLOSE_FLUSH_LIMIT_MS);
      const websocket = this.websocket();
      this.socket.removeAllListeners();
      // The connection is closed under the socket.io socket, without a socket.io disconnect: a socket.io server runs
      // a received event on the next tick and drops it if the socket disconnected meanwhile, which a disconnect
      // read in the same chunk does (a busy service reads the last picture and the disconnect together). A closed
      // websocket ends the socket only once its connection has closed, after that tick.
      this.socket.io.reconnection(false);
      this.socket.io.engine?.close();
      this.socket.close();
      // ...and reach the service: the websocket's closing handshake ends once the service has read every frame sent
      // before it. A process that exits sooner can leave data unread on its side of the connection; the kernel then
      // resets it, and the service loses what it had not read yet, the last picture among it.
      await websocket?.closed(CLOSE_FLUSH_LIMIT_MS);
    })();
    return this.closing;
  }

  /** Resolves once nothing emitted waits to be written (or after `limitMs`, or at once when disconnected). */
  private async flushed(limitMs: number): Promise<void> {
    const engine = this.socket.io.engine as unknown as { writeBuffer?: unknown[] } | undefined;
    const deadline = Date.now() + limitMs;
    while (this.socket.connected && (this.unsentBytes() > 0 || (engine?.writeBuffer?.length ?? 0) > 0) && Date.now() < deadline) {
      await timeLimit(BACKLOG_POLL_MS);
    }
  }
}

/** The `ws` WebSocket socket.io-client uses in Node, as far as close() needs it (3: CLOSED). */
interface WebSocketLike {
  readyState?: number;
  once?: (event: 'close', listener: () => void) => unknown;
}

/** Rejects when `signal` aborts; `dispose()` detaches it once the race is over. */
function rejectOnAbort(signal: AbortSignal): { promise: Promise<never>; dispose: () => void } {
  let onAbort = (): void => undefined;
  const promise = new Promise<never>((_, reject) => {
    onAbort = () => reject(abortError());
    if (signal.aborted) onAbort();
    else signal.addEventListener('abort', onAbort, { once: true });
  });
  return { promise, dispose: () => signal.removeEventListener('abort', onAbort) };
}
