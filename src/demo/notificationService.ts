import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { Server } from 'socket.io';

export interface RelayOptions {
  port?: number;
  /** The event workers emit (NOTIFY_EVENT). */
  event?: string;
  /** socket.io's message limit; its default is 1 MB, too small for large images. */
  maxHttpBufferSize?: number;
  /** Acknowledge each message, for NOTIFY_ACK_TIMEOUT_MS > 0. */
  acknowledge?: boolean;
}

export interface Relay {
  url: string;
  port: number;
  io: Server;
  /** Every payload a worker emitted, in order. */
  received: unknown[];
  close(): Promise<void>;
}

/**
 * A stand-in for the platform's notification service, speaking its relay protocol: clients `joinRoom`
 * with a room name; a worker's `Profile` event `{Id, ...}` is relayed to room `Id` as `Profile_Response`.
 */
export function startRelay(options: RelayOptions = {}): Promise<Relay> {
  const event = options.event ?? 'Profile';
  const server = http.createServer();
  const io = new Server(server, { maxHttpBufferSize: options.maxHttpBufferSize ?? 1e8, cors: { origin: '*' } });
  const received: unknown[] = [];
  io.on('connection', (socket) => {
    socket.on('joinRoom', (room: unknown) => {
      if (typeof room === 'string') void socket.join(room);
    });
    socket.on(event, (payload: { Id?: unknown }, ack?: (answer: unknown) => void) => {
      received.push(payload);
      if (payload && typeof payload.Id === 'string') io.to(payload.Id).emit(`${event}_Response`, payload);
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
