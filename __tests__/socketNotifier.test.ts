import { io as connectClient, Socket } from 'socket.io-client';
import type { NotifyFormat } from '../src/config';
import { startRelay, Relay } from '../src/demo/notificationService';
import { freeFixedPort } from '../src/demo/redisServer';
import { WorkerError } from '../src/errors';
import { createLogger } from '../src/logger';
import { SocketNotifier, SocketNotifierOptions } from '../src/socketNotifier';
import { SESSION_EXPIRED_MESSAGE } from '../src/tokenVerifier';
import type { JobEvent } from '../src/types';
import { waitUntil } from './support/harness';

const SUFFIX = '_Grok_Image_Generator';
const USER = 'user-7';
const ROOM = USER + SUFFIX;

const completed: JobEvent = {
  userId: USER,
  number: 4,
  jobId: '31',
  status: 'completed',
  image: { base64: 'iVBORw0KGgo=', mimeType: 'image/png' },
};

describe('SocketNotifier', () => {
  const relays: Relay[] = [];
  const notifiers: SocketNotifier[] = [];
  const clients: Socket[] = [];

  afterEach(async () => {
    for (const client of clients.splice(0)) client.close();
    await Promise.all(notifiers.splice(0).map((n) => n.close()));
    await Promise.all(relays.splice(0).map((r) => r.close()));
  });

  async function relay(options: Parameters<typeof startRelay>[0] = {}): Promise<Relay> {
    const started = await startRelay(options);
    relays.push(started);
    return started;
  }

  function notifier(url: string, options: Partial<SocketNotifierOptions> = {}): SocketNotifier {
    const created = new SocketNotifier({
      url,
      event: 'Profile',
      roomSuffix: SUFFIX,
      format: 'schema',
      ackTimeoutMs: 0,
      maxWaitMs: 5000,
      logger: createLogger('silent'),
      retryBaseMs: 20,
      retryMaxMs: 100,
      ...options,
    });
    notifiers.push(created);
    return created;
  }

  const pause = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

  /** A user's browser joined to its room, collecting what the relay passes on. */
  async function userIn(target: Relay, room: string): Promise<Array<Record<string, unknown>>> {
    const socket = connectClient(target.url, { transports: ['websocket'] });
    clients.push(socket);
    const received: Array<Record<string, unknown>> = [];
    socket.on('Profile_Response', (payload: Record<string, unknown>) => received.push(payload));
    await new Promise<void>((resolve) => socket.once('connect', () => resolve()));
    socket.emit('joinRoom', room);
    await waitUntil(() => target.io.sockets.adapter.rooms.get(room)?.has(socket.id!) === true);
    return received;
  }

  describe('delivery', () => {
    it('emits the schema payload to the relay, routed to the user room', async () => {
      const r = await relay();
      const inbox = await userIn(r, ROOM);
      const n = notifier(r.url);
      await n.notify(completed, new AbortController().signal);
      await waitUntil(() => inbox.length === 1);
      const expected = {
        Id: ROOM,
        Number: 4,
        jobId: '31',
        status: 'completed',
        success: true,
        data: { image: 'iVBORw0KGgo=', mimeType: 'image/png' },
        error: null,
        code: null,
      };
      expect(r.received).toEqual([expected]);
      expect(inbox).toEqual([expected]);
    });

    it('emits a failure in the schema format with its code', async () => {
      const r = await relay();
      const n = notifier(r.url);
      await n.notify(
        { userId: USER, number: null, jobId: '32', status: 'failed', error: { code: 'CONTENT_REJECTED', message: 'refused' } },
        new AbortController().signal,
      );
      await waitUntil(() => r.received.length === 1);
      expect(r.received[0]).toEqual({
        Id: ROOM,
        Number: null,
        jobId: '32',
        status: 'failed',
        success: false,
        data: null,
        error: 'refused',
        code: 'CONTENT_REJECTED',
      });
    });

    it('emits the legacy payload: a data URL on success, the session message when expired, no progress', async () => {
      const r = await relay();
      const n = notifier(r.url, { format: 'legacy' as NotifyFormat });
      await n.waitForConnection(5000);
      expect(n.tryNotify({ userId: USER, number: 4, jobId: '31', status: 'processing' })).toBe(false);
      await n.notify({ userId: USER, number: 4, jobId: '31', status: 'processing' }, new AbortController().signal);
      await n.notify(completed, new AbortController().signal);
      await n.notify(
        { userId: USER, number: 'x', jobId: '33', status: 'failed', error: { code: 'SESSION_EXPIRED', message: 'jwt expired' } },
        new AbortController().signal,
      );
      await waitUntil(() => r.received.length === 2);
      await pause(50);
      expect(r.received).toEqual([
        { Id: ROOM, Status: true, Message: 'data:image/png;base64,iVBORw0KGgo=', Number: 4 },
        { Id: ROOM, Status: false, Message: SESSION_EXPIRED_MESSAGE, Number: 'x' },
      ]);
    });

    it('sends a progress event with tryNotify when connected', async () => {
      const r = await relay();
      const n = notifier(r.url);
      expect(await n.waitForConnection(5000)).toBe(true);
      expect(n.tryNotify({ userId: USER, number: 1, jobId: '34', status: 'processing' })).toBe(true);
      await waitUntil(() => r.received.length === 1);
      expect(r.received[0]).toMatchObject({ Id: ROOM, status: 'processing', success: false, data: null, code: null });
    });
  });

  describe('while the service is away', () => {
    it('tryNotify sends nothing and buffers nothing while disconnected', async () => {
      const port = await freeFixedPort();
      const n = notifier(`http://127.0.0.1:${port}`);
      expect(n.connected).toBe(false);
      expect(n.tryNotify({ userId: USER, number: 1, jobId: 'stale', status: 'processing' })).toBe(false);

      const r = await relay({ port });
      expect(await n.waitForConnection(10_000)).toBe(true);
      await pause(200);
      expect(r.received).toEqual([]);

      // Connected now: the same call goes through, so the empty inbox above means something.
      expect(n.tryNotify({ userId: USER, number: 1, jobId: 'fresh', status: 'processing' })).toBe(true);
      await waitUntil(() => r.received.length === 1);
      expect(r.received.map((p) => (p as { jobId: string }).jobId)).toEqual(['fresh']);
    });

    it('notify waits for the service to come up and delivers exactly once', async () => {
      const port = await freeFixedPort();
      const n = notifier(`http://127.0.0.1:${port}`, { maxWaitMs: 15_000 });
      const delivering = n.notify(completed, new AbortController().signal);
      let settled = false;
      void delivering.then(() => (settled = true), () => (settled = true));
      await pause(300);
      expect(settled).toBe(false);

      const r = await relay({ port });
      await delivering;
      await waitUntil(() => r.received.length >= 1);
      await pause(300);
      expect(r.received).toHaveLength(1);
      expect(r.received[0]).toMatchObject({ Id: ROOM, jobId: '31', status: 'completed' });
    });

    it('gives up with a transient WorkerError after maxWaitMs when nobody listens', async () => {
      const port = await freeFixedPort();
      const n = notifier(`http://127.0.0.1:${port}`, { maxWaitMs: 300 });
      const started = Date.now();
      const err = await n.notify(completed, new AbortController().signal).then(
        () => undefined,
        (e: unknown) => e,
      );
      const elapsed = Date.now() - started;
      expect(err).toBeInstanceOf(WorkerError);
      expect(err).toMatchObject({ code: 'GENERATION_FAILED', transient: true });
      expect((err as Error).message).toMatch(/within 300 ms/);
      expect(elapsed).toBeGreaterThanOrEqual(290);
      expect(elapsed).toBeLessThan(2000);
    });

    it('an abort ends the wait promptly with AbortError', async () => {
      const port = await freeFixedPort();
      const n = notifier(`http://127.0.0.1:${port}`, { maxWaitMs: 30_000 });
      const controller = new AbortController();
      const started = Date.now();
      setTimeout(() => controller.abort(), 100);
      await expect(n.notify(completed, controller.signal)).rejects.toMatchObject({ name: 'AbortError' });
      expect(Date.now() - started).toBeLessThan(1000);
    });

    it('an already aborted signal rejects at once, even when connected, and sends nothing', async () => {
      const r = await relay();
      const n = notifier(r.url);
      await n.waitForConnection(5000);
      const controller = new AbortController();
      controller.abort();
      await expect(n.notify(completed, controller.signal)).rejects.toMatchObject({ name: 'AbortError' });
      await pause(100);
      expect(r.received).toEqual([]);
    });
  });

  describe('acknowledgements', () => {
    it('with ackTimeoutMs > 0 and a service that never acknowledges: retries, then rejects transient', async () => {
      const r = await relay({ acknowledge: false });
      const n = notifier(r.url, { ackTimeoutMs: 100, maxWaitMs: 700 });
      await n.waitForConnection(5000);
      const started = Date.now();
      const err = await n.notify(completed, new AbortController().signal).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(WorkerError);
      expect(err).toMatchObject({ code: 'GENERATION_FAILED', transient: true });
      expect(Date.now() - started).toBeGreaterThanOrEqual(690);
      expect(r.received.length).toBeGreaterThanOrEqual(2);
    });

    it('with ackTimeoutMs > 0 and a service that acknowledges: resolves after one emit', async () => {
      const r = await relay({ acknowledge: true });
      const n = notifier(r.url, { ackTimeoutMs: 1000, maxWaitMs: 3000 });
      await n.waitForConnection(5000);
      await n.notify(completed, new AbortController().signal);
      // Acknowledged means the relay already has it: no polling needed.
      expect(r.received).toHaveLength(1);
    });

    it('an abort while an acknowledgement is awaited rejects at once, not after ackTimeoutMs', async () => {
      const r = await relay({ acknowledge: false });
      const n = notifier(r.url, { ackTimeoutMs: 10_000, maxWaitMs: 30_000 });
      await n.waitForConnection(5000);
      const controller = new AbortController();
      const started = Date.now();
      setTimeout(() => controller.abort(), 100);
      await expect(n.notify(completed, controller.signal)).rejects.toMatchObject({ name: 'AbortError' });
      expect(Date.now() - started).toBeLessThan(2000);
    });

    it('an abort while waiting between unacknowledged attempts rejects with AbortError', async () => {
      const r = await relay({ acknowledge: false });
      const n = notifier(r.url, { ackTimeoutMs: 50, maxWaitMs: 30_000, retryBaseMs: 5000, retryMaxMs: 5000 });
      await n.waitForConnection(5000);
      const controller = new AbortController();
      const started = Date.now();
      setTimeout(() => controller.abort(), 200);
      await expect(n.notify(completed, controller.signal)).rejects.toMatchObject({ name: 'AbortError' });
      expect(Date.now() - started).toBeLessThan(1500);
      expect(r.received).toHaveLength(1);
    });
  });

  describe('close', () => {
    it('is safe to call twice and disconnects', async () => {
      const r = await relay();
      const n = notifier(r.url);
      await n.waitForConnection(5000);
      expect(n.connected).toBe(true);
      const first = n.close();
      const second = n.close();
      expect(second).toBe(first);
      await Promise.all([first, second]);
      await n.close();
      expect(n.connected).toBe(false);
      expect(n.tryNotify({ userId: USER, number: 1, jobId: 'late', status: 'processing' })).toBe(false);
    });

    it('ends a delivery still waiting for the service with a transient error, at once', async () => {
      const n = notifier(`http://127.0.0.1:${await freeFixedPort()}`, { maxWaitMs: 60_000 });
      const pending = n.notify(completed, new AbortController().signal);
      await pause(100);
      const started = Date.now();
      await n.close();
      await expect(pending).rejects.toMatchObject({ code: 'GENERATION_FAILED', transient: true });
      expect(Date.now() - started).toBeLessThan(1000);
    });
  });

  describe('reconnection', () => {
    it('reconnects after the service restarts, even when it disconnected us on purpose', async () => {
      const port = await freeFixedPort();
      const first = await relay({ port });
      const n = notifier(`http://127.0.0.1:${port}`, { maxWaitMs: 15_000 });
      expect(await n.waitForConnection(5000)).toBe(true);

      // The relay's close() disconnects every socket server-side ("io server disconnect") before it stops.
      relays.splice(relays.indexOf(first), 1);
      await first.close();
      await waitUntil(() => !n.connected);

      const second = await relay({ port });
      await n.notify(completed, new AbortController().signal);
      await waitUntil(() => second.received.length === 1);
      expect(second.received[0]).toMatchObject({ Id: ROOM, jobId: '31' });
    });

    it('reconnects after the service kicks it out without closing the connection', async () => {
      const r = await relay();
      const n = notifier(r.url, { maxWaitMs: 10_000 });
      expect(await n.waitForConnection(5000)).toBe(true);
      // socket.io-client does not reconnect by itself after a server-side socket.disconnect().
      r.io.disconnectSockets();
      await waitUntil(() => !n.connected);
      await n.notify(completed, new AbortController().signal);
      await waitUntil(() => r.received.length === 1);
      expect(n.connected).toBe(true);
    });

    it("keeps trying after the service's middleware refused the connection", async () => {
      const r = await relay();
      let refusals = 1;
      r.io.use((_socket, next) => (refusals-- > 0 ? next(new Error('not now')) : next()));
      const n = notifier(r.url, { maxWaitMs: 10_000 });
      await n.notify(completed, new AbortController().signal);
      await waitUntil(() => r.received.length === 1);
      expect(refusals).toBeLessThan(0);
    });

    it('does not reconnect once closed', async () => {
      const r = await relay();
      const n = notifier(r.url);
      expect(await n.waitForConnection(5000)).toBe(true);
      r.io.disconnectSockets();
      await waitUntil(() => !n.connected);
      await n.close();
      await pause(1500);
      expect(n.connected).toBe(false);
      expect(r.io.engine.clientsCount).toBe(0);
    });
  });
});
