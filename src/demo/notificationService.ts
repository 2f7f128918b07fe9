import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { Server } from 'socket.io';

export interface RelayOptions {
  port?: number;
  /** The event workers emit (NOTIFY_EVENT). Default `Profile`. */
  event?: string;
  /** socket.io's message limit; StoryBang's service sets 1 GB (socket.io's default is 1 MB). */
  maxHttpBufferSize?: number;
  /**
   * `storybang` (default): exactly what StoryBang's Messages_User does, passing on only
   * `{Message, Status, Number}`. `full`: passes on the whole payload, for NOTIFY_FORMAT=schema.
   */
  relay?: 'storybang' | 'full';
  /** Acknowledge each message, for NOTIFY_ACK_TIMEOUT_MS > 0. StoryBang's service never does. Default false. */
  acknowledge?: boolean;
}

export interface Relay {
  url: string;
  port: number;
  io: Server;
  /** Every payload a worker emitted, in order, as it arrived (before the relay dropped any field). */
  received: unknown[];
  close(): Promise<void>;
}

/**
 * A stand-in for the notification service. By default it behaves like StoryBang's Messages_User: clients
 * `joinRoom(room)`; of a worker's `Profile {Id, Message, Status, Number, ...}` only `{Message, Status, Number}`
 * reach room `Id` as `Profile_Response`; every other field and event is dropped; nothing is acknowledged and
 * nothing is kept for a browser that joins later.
 */
export function startRelay(options: RelayOptions = {}): Promise<Relay> {
  const event = options.event ?? 'Profile';
  const full = options.relay === 'full';
  const server = http.createServer();
  const io = new Server(server, { maxHttpBufferSize: options.maxHttpBufferSize ?? 1e9, cors: { origin: '*' } });
  const received: unknown[] = [];
  io.on('connection', (socket) => {
    socket.on('joinRoom', (room: unknown) => {
      if (typeof room === 'string') void socket.join(room);
    });
    socket.on(event, (payload: unknown, ack?: (answer: unknown) => void) => {
      received.push(payload);
      if (typeof payload === 'object' && payload !== null) {
        const { Id, Message, Status, Number } = payload as Record<string, unknown>;
        if (typeof Id === 'string') io.to(Id).emit(`${event}_Response`, full ? payload : { Message, Status, Number });
      }
      if (options.acknowledge && typeof ack === 'function') ack({ ok: true });
    });
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, '127.0.0.1', () => {
      const { port } = server.address() as AddressInfo;
      resolve({
        url: `http://127.0.0.1:${port}`,
        port,
        io,
        received,
        close: () =>
          // io.close() disconnects every client and closes their connections at once (disconnecting them
          // first would leave idle long-polling clients on a 30 s timer).
          new Promise<void>((done) => void io.close(() => done())),
      });
    });
  });
}
