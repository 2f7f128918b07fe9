import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { Server } from 'socket.io';
import { failChild, serveParent } from './childProtocol';

/**
 * StoryBang's notification service (Messages_User) as it is: `joinRoom(room)`; on `Profile` it takes exactly
 * `{Id, Message, Status, Number}` and emits `Profile_Response {Message, Status, Number}` to room `Id`. Every other
 * field and event is dropped, nothing is acknowledged, nothing is kept for a browser that has not joined.
 */
async function main(): Promise<void> {
  const server = http.createServer();
  const io = new Server(server, { maxHttpBufferSize: 1e9 });
  io.on('connection', (socket) => {
    socket.on('joinRoom', (room: string) => void socket.join(room));
    socket.on('Profile', (payload: { Id: string; Message: unknown; Status: unknown; Number: unknown }) => {
      const { Id, Message, Status, Number } = payload ?? {};
      io.to(Id).emit('Profile_Response', { Message, Status, Number });
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  serveParent(() => new Promise<void>((done) => void io.close(() => done())), { type: 'relay', url: `http://127.0.0.1:${port}` });
}

main().catch(failChild);
