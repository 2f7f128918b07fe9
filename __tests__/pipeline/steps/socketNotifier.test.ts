import net from 'node:net';
import { io as connectClient, Socket } from 'socket.io-client';
import type { NotifyFormat } from '../../../src/config';
import { startRelay, Relay } from '../../../src/demo/notificationService';
import { freeFixedPort } from '../../../src/demo/redisServer';
import { USER_MESSAGES, WorkerError } from '../../../src/base/errors';
import { createLogger } from '../../../src/base/logger';
import { SocketNotifier, SocketNotifierOptions } from '../../../src/pipeline/steps/socketNotifier';
import type { JobEvent } from '../../../src/pipeline/ports';
import { waitUntil } from '../../support/helpers';
import { track } from '../../support/liveResources';

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

  const closers: Array<() => Promise<void>> = [];

  afterEach(async () => {
    for (const close of closers.splice(0)) await close();
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
      rejoinDelayMs: 100,
      ...options,
    });
    notifiers.push(created);
    // Open until closed: see leakCheck.
    const untrack = track('notifier', url);
    const close = created.close.bind(created);
    created.close = () => {
      const closing = close();
      void closing.then(untrack);
      return closing;
    };
    return created;
  }

  const pause = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
  const jobIds = (payloads: unknown[]): unknown[] => payloads.map((p) => (p as { jobId?: unknown }).jobId);

  /**
   * Whether `promise` has settled by the next turn of the event loop. An abort or close that ends a wait
   * settles it through promise callbacks alone, before any timer or I/O: "at once" without a clock.
   */
  async function settledByNextTurn(promise: Promise<unknown>): Promise<boolean> {
    let settled = false;
    promise.then(
      () => (settled = true),
      () => (settled = true),
    );
    await new Promise((resolve) => setImmediate(resolve));
    return settled;
  }

  /** The error a delivery of `completed` ended with, checked to be the transient failure the pipeline acts on. */
  async function givenUp(n: SocketNotifier): Promise<Error> {
    const err = await n.notify(completed, new AbortController().signal).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(WorkerError);
    expect(err).toMatchObject({ code: 'GENERATION_FAILED', transient: true });
    return err as Error;
  }

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
      const r = await relay({ relay: 'full' });
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
        error: USER_MESSAGES.CONTENT_REJECTED,
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
      // One connection delivers in order: once the last one is in, a progress event sent before it would be too.
      await waitUntil(() => r.received.some((p) => (p as { Number?: unknown }).Number === 'x'));
      expect(r.received).toEqual([
        { Id: ROOM, Status: true, Message: 'data:image/png;base64,iVBORw0KGgo=', Number: 4 },
        { Id: ROOM, Status: false, Message: USER_MESSAGES.SESSION_EXPIRED, Number: 'x' },
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

      // Connected now: the same call goes through. Had the first one been buffered, the connection would have
      // delivered it before this one.
      expect(n.tryNotify({ userId: USER, number: 1, jobId: 'fresh', status: 'processing' })).toBe(true);
      await waitUntil(() => r.received.length > 0);
      expect(jobIds(r.received)).toEqual(['fresh']);
    });

    it('notify waits for the service to come up and delivers exactly once', async () => {
      const port = await freeFixedPort();
      const n = notifier(`http://127.0.0.1:${port}`, { maxWaitMs: 15_000 });
      const delivering = n.notify(completed, new AbortController().signal);
      // Nothing but the connection can end this wait: a notify that buffered and returned would be done by now.
      expect(await settledByNextTurn(delivering)).toBe(false);

      const r = await relay({ port });
      await delivering;
      // Sent after it on the same connection: once this one is in, any second copy of the first is too.
      await n.notify({ ...completed, jobId: 'after' }, new AbortController().signal);
      await waitUntil(() => jobIds(r.received).includes('after'));
      expect(jobIds(r.received)).toEqual(['31', 'after']);
      expect(r.received[0]).toMatchObject({ Id: ROOM, jobId: '31', status: 'completed' });
    });

    it('gives up with a transient WorkerError after maxWaitMs when nobody listens', async () => {
      const port = await freeFixedPort();
      const n = notifier(`http://127.0.0.1:${port}`, { maxWaitMs: 300 });
      const err = await givenUp(n);
      // The notifier says how long it waited, by its own clock: maxWaitMs.
      expect((err as Error).message).toMatch(/within 300 ms/);
    });

    it('an abort ends the wait for the service at once with AbortError', async () => {
      const n = notifier(`http://127.0.0.1:${await freeFixedPort()}`, { maxWaitMs: 60_000 });
      const controller = new AbortController();
      const pending = n.notify(completed, controller.signal);
      expect(await settledByNextTurn(pending)).toBe(false);
      controller.abort();
      expect(await settledByNextTurn(pending)).toBe(true);
      await expect(pending).rejects.toMatchObject({ name: 'AbortError' });
    });

    it('an already aborted signal rejects at once, even when connected, and sends nothing', async () => {
      const r = await relay();
      const n = notifier(r.url);
      await n.waitForConnection(5000);
      const controller = new AbortController();
      controller.abort();
      const refused = n.notify(completed, controller.signal);
      expect(await settledByNextTurn(refused)).toBe(true);
      await expect(refused).rejects.toMatchObject({ name: 'AbortError' });
      // Sent after it on the same connection: once this one is in, the refused one would be too.
      await n.notify({ ...completed, jobId: 'after' }, new AbortController().signal);
      await waitUntil(() => r.received.length > 0);
      expect(jobIds(r.received)).toEqual(['after']);
    });
  });

  describe('acknowledgements', () => {
    it('with ackTimeoutMs > 0 and a service that never acknowledges: retries, then rejects transient', async () => {
      const r = await relay({ acknowledge: false });
      const n = notifier(r.url, { ackTimeoutMs: 100, maxWaitMs: 800 });
      await n.waitForConnection(5000);
      const err = await givenUp(n);
      expect(err.message).toMatch(/^Notification not delivered within 800 ms: /);
      expect(r.received.length).toBeGreaterThanOrEqual(2);
    });

    it('with ackTimeoutMs > 0 and a service that acknowledges: resolves after one emit', async () => {
      const r = await relay({ acknowledge: true });
      // A wait for the acknowledgement no pause of a loaded machine outlasts: one emit, answered.
      const n = notifier(r.url, { ackTimeoutMs: 10_000, maxWaitMs: 20_000 });
      await n.waitForConnection(5000);
      await n.notify(completed, new AbortController().signal);
      // Acknowledged means the relay already has it: no polling needed.
      expect(r.received).toHaveLength(1);
    });

    it('an abort while an acknowledgement is awaited rejects at once, not after ackTimeoutMs', async () => {
      const r = await relay({ acknowledge: false });
      const n = notifier(r.url, { ackTimeoutMs: 60_000, maxWaitMs: 120_000 });
      await n.waitForConnection(5000);
      const controller = new AbortController();
      const pending = n.notify(completed, controller.signal);
      // The relay has it and will never acknowledge it.
      await waitUntil(() => r.received.length === 1);
      controller.abort();
      expect(await settledByNextTurn(pending)).toBe(true);
      await expect(pending).rejects.toMatchObject({ name: 'AbortError' });
    });

    it('an abort while waiting between unacknowledged attempts rejects at once with AbortError', async () => {
      const ackTimeoutMs = 50;
      const r = await relay({ acknowledge: false });
      const n = notifier(r.url, { ackTimeoutMs, maxWaitMs: 120_000, retryBaseMs: 60_000, retryMaxMs: 60_000 });
      await n.waitForConnection(5000);
      const controller = new AbortController();
      const pending = n.notify(completed, controller.signal);
      await waitUntil(() => r.received.length === 1);
      // The acknowledgement timer started before the relay had the message, so it fires before this one: the
      // notifier is then in its backoff of at least 30 s.
      await pause(ackTimeoutMs * 2);
      controller.abort();
      expect(await settledByNextTurn(pending)).toBe(true);
      await expect(pending).rejects.toMatchObject({ name: 'AbortError' });
      expect(r.received).toHaveLength(1);
    });
  });

  describe('close', () => {
    it('the last delivery reaches the service even when the service reads it together with the close', async () => {
      const r = await relay();
      const proxy = await startHoldingProxy(r.port);
      closers.push(() => proxy.close());
      const n = notifier(proxy.url);
      expect(await n.waitForConnection(5000)).toBe(true);
      // A busy service reads late: the picture and whatever close() sends after it arrive in one chunk.
      proxy.hold();
      await n.notify(completed, new AbortController().signal);
      await n.close();
      proxy.release();
      await waitUntil(() => r.received.length === 1, 5000, 'the picture at the service');
      expect(r.received[0]).toMatchObject({ Id: ROOM, jobId: '31' });
    });

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
      expect(await settledByNextTurn(pending)).toBe(false);
      const closing = n.close();
      expect(await settledByNextTurn(pending)).toBe(true);
      await closing;
      await expect(pending).rejects.toMatchObject({ code: 'GENERATION_FAILED', transient: true });
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

      // Another notifier, kicked out after it, waits just as long before it rejoins: once it is back and has
      // delivered, the closed one's turn to rejoin has come and gone.
      const later = notifier(r.url);
      expect(await later.waitForConnection(5000)).toBe(true);
      r.io.disconnectSockets();
      await waitUntil(() => !later.connected);
      await later.notify(completed, new AbortController().signal);
      await waitUntil(() => r.received.length === 1);
      expect(n.connected).toBe(false);
      expect(r.io.engine.clientsCount).toBe(1);
    });
  });
});

/**
 * A TCP proxy to a local port. While held, what the client sends is kept; released, it goes on in one write, so
 * the server reads it in one chunk, as a busy server reads what piled up.
 */
async function startHoldingProxy(port: number): Promise<{ url: string; hold(): void; release(): void; close(): Promise<void> }> {
  let holding = false;
  const pairs: Array<{ client: net.Socket; upstream: net.Socket; held: Buffer[] }> = [];
  const server = net.createServer((client) => {
    const pair = { client, upstream: net.connect(port, '127.0.0.1'), held: [] as Buffer[] };
    pairs.push(pair);
    for (const s of [client, pair.upstream]) s.on('error', () => undefined);
    client.on('data', (d) => (holding ? pair.held.push(d) : pair.upstream.write(d)));
    pair.upstream.on('data', (d) => client.write(d));
    client.on('close', () => pair.upstream.destroy());
    pair.upstream.on('close', () => client.destroy());
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as net.AddressInfo).port}`,
    hold: () => void (holding = true),
    release: () => {
      holding = false;
      for (const pair of pairs) if (pair.held.length > 0) pair.upstream.write(Buffer.concat(pair.held.splice(0)));
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const { client, upstream } of pairs) [client, upstream].forEach((s) => s.destroy());
        server.close(() => resolve());
      }),
  };
}
