import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { Server } from 'socket.io';
import { failChild, FromChild, serveParent } from './child';

/**
 * StoryBang's notification service (Messages_User) as it is, in its own process: `joinRoom(room)`; on `Profile` it
 * takes exactly `{Id, Message, Status, Number}` and emits `Profile_Response {Message, Status, Number}` to room `Id`.
 * Every other field and event is dropped, nothing is acknowledged or kept. It also counts what it relays, and tells
 * the bench every 100 ms (pictures and failures since the last report): no browser is needed to count deliveries.
 */
async function main(): Promise<void> {
  const server = http.createServer();
  const io = new Server(server, { maxHttpBufferSize: 1e9 });
  let ok = 0;
  let failed = 0;
  io.on('connection', (socket) => {
    socket.on('joinRoom', (room: string) => void socket.join(room));
    socket.on('Profile', (payload: { Id: string; Message: unknown; Status: unknown; Number: unknown }) => {
      const { Id, Message, Status, Number } = payload ?? {};
      if (Status === true) ok++;
      else failed++;
      io.to(Id).emit('Profile_Response', { Message, Status, Number });
    });
  });
  setInterval(() => {
    if (ok + failed === 0) return;
    const report: FromChild = { type: 'relayed', ok, failed };
    process.send?.(report);
    ok = failed = 0;
  }, 100).unref();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  serveParent(() => new Promise<void>((done) => void io.close(() => done())), { type: 'ready', url: `http://127.0.0.1:${port}` });
}

main().catch(failChild);
