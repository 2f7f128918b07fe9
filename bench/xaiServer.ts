import { randomBytes } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';

/** What the server answers from now on: an image of `imageBytes` (before base64), after `delayMs`. */
export interface XaiBehaviour {
  imageBytes: number;
  delayMs: number;
}

export interface XaiServer {
  url: string;
  configure(behaviour: XaiBehaviour): void;
  /** Requests answered and TCP connections accepted since start: tells whether clients keep connections alive. */
  counters(): { requests: number; connections: number };
  close(): Promise<void>;
}

/**
 * A stand-in for xAI's images endpoint that costs as little as possible: the JSON answer for each size is
 * encoded once and sent as one buffer, so the benchmark measures the worker, not this server.
 */
export async function startXaiServer(): Promise<XaiServer> {
  const answers = new Map<number, Buffer>();
  let behaviour: XaiBehaviour = { imageBytes: 1024, delayMs: 0 };
  let answer = answerFor(behaviour.imageBytes, answers);
  let requests = 0;
  let connections = 0;
  const sockets = new Set<Socket>();
  const timers = new Set<NodeJS.Timeout>();

  const server = http.createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      requests++;
      const body = answer;
      const send = (): void => {
        res.writeHead(200, { 'Content-Type': 'application/json', 'Content-Length': String(body.length) });
        res.end(body);
      };
      if (behaviour.delayMs <= 0) return send();
      const timer = setTimeout(() => {
        timers.delete(timer);
        send();
      }, behaviour.delayMs);
      timers.add(timer);
    });
  });
  // Idle gaps between batches must not close kept-alive connections under a client about to reuse them.
  server.keepAliveTimeout = 120_000;
  server.on('connection', (socket: Socket) => {
    connections++;
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const { port } = server.address() as AddressInfo;

  return {
    url: `http://127.0.0.1:${port}/v1/images/generations`,
    configure(next) {
      behaviour = next;
      answer = answerFor(next.imageBytes, answers);
    },
    counters: () => ({ requests, connections }),
    close: () =>
      new Promise<void>((resolve) => {
        for (const timer of timers) clearTimeout(timer);
        server.close(() => resolve());
        for (const socket of sockets) socket.destroy();
      }),
  };
}

function answerFor(imageBytes: number, cache: Map<number, Buffer>): Buffer {
  let answer = cache.get(imageBytes);
  if (!answer) {
    // Random bytes: nothing on the way (HTTP, Redis, socket.io) gets to compress them.
    const b64 = randomBytes(imageBytes).toString('base64');
    answer = Buffer.from(JSON.stringify({ data: [{ b64_json: b64, mime_type: 'image/png' }] }));
    cache.set(imageBytes, answer);
  }
  return answer;
}
