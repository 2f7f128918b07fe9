import type Bull from 'bull';
import jwt from 'jsonwebtoken';
import { io, Socket } from 'socket.io-client';
import { PRODUCER_DEFAULTS } from '../src/producer';

/** One picture a browser waits for: a story page, or a single image. */
export interface Page {
  user: string;
  number: number;
  prompt: string;
  /** performance.now() of the first ask, and of the first Status true. */
  askedAt: number;
  deliveredAt?: number;
  /** Times the browser asked (1 + re-asks after failures). */
  asks: number;
  /** Status false notifications seen for this page. */
  failures: number;
}

const ROOM_SUFFIX = '_Grok_Image_Generator';

/**
 * StoryBang's browsers: each user joins room `Id + "_Grok_Image_Generator"` on the relay; every page is one
 * `queue.add({Id, Prompt, Token, Number}, {attempts: 1, removeOnComplete, removeOnFail})` with a fresh HS256 token;
 * on `Status == false` the same page is asked again at once; a page is done at its first `Status == true`.
 */
export class Browsers {
  readonly pages = new Map<string, Page>();
  duplicates = 0;
  /** Notifications for a Number this user never asked for. */
  strays = 0;
  private readonly sockets = new Map<string, Socket>();
  private waiters: Array<() => void> = [];
  private stopped = false;

  constructor(
    private readonly relayUrl: string,
    private readonly queue: Bull.Queue,
    private readonly secret: string,
  ) {}

  /** Connects every user's browser and joins its room. */
  async join(users: string[]): Promise<void> {
    await Promise.all(
      users.map(
        (user) =>
          new Promise<void>((resolve, reject) => {
            const socket = io(this.relayUrl, { transports: ['websocket'], reconnection: false });
            this.sockets.set(user, socket);
            socket.once('connect_error', reject);
            socket.once('connect', () => {
              socket.emit('joinRoom', user + ROOM_SUFFIX);
              resolve();
            });
            socket.on('Profile_Response', (m: { Message?: unknown; Status?: unknown; Number?: unknown }) => this.onResponse(user, m));
          }),
      ),
    );
    // The relay never acknowledges: give it a moment to have handled every joinRoom before anything is asked.
    await new Promise((resolve) => setTimeout(resolve, 300));
  }

  /** Asks for pages (all at once, as a story does). */
  async ask(pages: Array<{ user: string; number: number; prompt: string }>): Promise<void> {
    const now = performance.now();
    const added = pages.map((p) => {
      const page: Page = { ...p, askedAt: now, asks: 0, failures: 0 };
      this.pages.set(key(p.user, p.number), page);
      return this.add(page);
    });
    await Promise.all(added);
  }

  /** Resolves once `done(this)` holds, checked after every notification; false after `timeoutMs`. */
  until(done: (b: Browsers) => boolean, timeoutMs: number): Promise<boolean> {
    if (done(this)) return Promise.resolve(true);
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.waiters = this.waiters.filter((w) => w !== check);
        resolve(false);
      }, timeoutMs);
      const check = (): void => {
        if (!done(this)) return;
        clearTimeout(timer);
        this.waiters = this.waiters.filter((w) => w !== check);
        resolve(true);
      };
      this.waiters.push(check);
    });
  }

  delivered(filter: (p: Page) => boolean = () => true): Page[] {
    return [...this.pages.values()].filter((p) => p.deliveredAt !== undefined && filter(p));
  }

  /** Stops re-asking and disconnects every browser. */
  close(): void {
    this.stopped = true;
    for (const socket of this.sockets.values()) socket.disconnect();
  }

  private add(page: Page): Promise<unknown> {
    page.asks++;
    const Token = jwt.sign({ Id: page.user }, this.secret, { algorithm: 'HS256', expiresIn: '1h' });
    return this.queue.add({ Id: page.user, Prompt: page.prompt, Token, Number: page.number }, PRODUCER_DEFAULTS);
  }

  private onResponse(user: string, m: { Status?: unknown; Number?: unknown }): void {
    const page = this.pages.get(key(user, Number(m.Number)));
    if (!page) {
      this.strays++;
      return;
    }
    if (m.Status === true) {
      if (page.deliveredAt !== undefined) this.duplicates++;
      else page.deliveredAt = performance.now();
    } else if (page.deliveredAt === undefined) {
      page.failures++;
      if (!this.stopped) void this.add(page).catch(() => undefined);
    }
    for (const wake of [...this.waiters]) wake();
  }
}

const key = (user: string, number: number): string => `${user}\u0000${number}`;
