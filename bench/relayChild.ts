import { startRelay } from '../src/demo/notificationService';
import { failChild, FromChild, serveParent } from './childProtocol';

/**
 * The notification service in its own process: parsing and re-broadcasting megabyte messages must not
 * share an event loop with the image API, or the API would answer late whenever the relay is busy.
 * Each final notification is reported to the benchmark over IPC, where completions are counted.
 */
async function main(): Promise<void> {
  const event = process.env.NOTIFY_EVENT ?? 'Profile';
  // 1 MB images are 1.33 MB of base64 in one message: far above socket.io's 1 MB default.
  const relay = await startRelay({ event, maxHttpBufferSize: 64 * 1024 * 1024 });
  // Registered after startRelay's own listener, so it runs once the relay has stored and forwarded the message.
  relay.io.on('connection', (socket) =>
    socket.on(event, (payload: { Id?: unknown; jobId?: unknown; status?: unknown }) => {
      // The relay keeps every payload for the demo's tests; over thousands of images that is gigabytes.
      relay.received.length = 0;
      if (!payload || typeof payload.Id !== 'string' || payload.status === 'processing') return;
      const message: FromChild = { type: 'final', room: payload.Id, jobId: String(payload.jobId), status: String(payload.status) };
      process.send?.(message);
    }),
  );
  serveParent(() => relay.close(), { type: 'relay', url: relay.url });
}

main().catch(failChild);
