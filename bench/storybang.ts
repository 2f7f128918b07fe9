import type Bull from 'bull';
import { io, Socket } from 'socket.io-client';
import { PRODUCER_DEFAULTS } from '../src/producer';

/** The room StoryBang's wait page joins: its user's Id and this. */
const ROOM_SUFFIX = '_Grok_Image_Generator';

/**
 * StoryBang's server side of an image request: a fresh token from the JWT service (`Create_Jwt` with the Id the
 * browser sent) and one `queue.add`. The real one also opens a Redis connection (`new Queue(...)`) per request and
 * never closes it; that is not reproduced, it is counted: `asks` is the connections it would have leaked.
 */
export class StoryServer {
  asks = 0;

  constructor(
    private readonly queue: Bull.Queue,
    private readonly mintToken: (id: string) => Promise<string>,
  ) {}

  async ask(Id: string, Prompt: string, Number: number): Promise<void> {
    this.asks++;
    const Token = await this.mintToken(Id);
    await this.queue.add({ Id, Prompt, Token, Number }, PRODUCER_DEFAULTS);
  }
}

/**
 * StoryBang's browser, the bench's one model of it (shared/STORYBANG.md): its server's side of an ask and its wait
 * page. Times are performance.now().
 */

/** One picture the wait page waits for. */
export interface PageState {
  number: number;
  prompt: string;
  askedAt: number;
  /** The first Status true. */
  deliveredAt?: number;
  /** 1 + re-asks after Status false. */
  asks: number;
  /** Status false seen. */
  failures: number;
  /** Status true seen: more than 1 is a picture delivered again (the page ignores it). */
  deliveries: number;
}

/**
 * StoryBang's wait page in one browser tab: it connects to the notification service, joins its room
 * `Id + "_Grok_Image_Generator"` once (socket.io reconnects, the page never joins again), asks for every page of
 * the story at once (`Number` = page index), asks again at once on `Status == false`, with no limit, for a page it
 * has no picture for, and keeps the first picture of each `Number`. The story is complete when every page has one.
 * `close()` is the tab going away (a reload): its socket closes and it asks nothing more.
 */
export class WaitPage {
  readonly pages = new Map<number, PageState>();
  /** When every page had a picture. */
  completedAt?: number;
  /** Status true that arrived once the story was complete. */
  afterComplete = 0;
  /** Every Profile_Response seen, and those for a Number this page never asked for. */
  answers = 0;
  strays = 0;
  private socket?: Socket;
  private closed = false;

  constructor(
    readonly user: string,
    private readonly relayUrl: string,
    private readonly server: StoryServer,
    private readonly onChange: () => void,
  ) {}

  /** Connects and joins the room once; resolves once the join has been sent (the relay never acknowledges it). */
  open(): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const socket = io(this.relayUrl, { transports: ['websocket'] });
      this.socket = socket;
      const failed = (err: Error): void => reject(err);
      socket.once('connect_error', failed);
      socket.once('connect', () => {
        socket.off('connect_error', failed);
        socket.emit('joinRoom', this.user + ROOM_SUFFIX);
        resolve();
      });
      socket.on('Profile_Response', (m: { Status?: unknown; Number?: unknown }) => this.onResponse(m));
    });
  }

  /** Asks for these pages, all at once. */
  async ask(pages: Array<{ number: number; prompt: string }>): Promise<void> {
    const now = performance.now();
    const states = pages.map((p) => {
      const state: PageState = { ...p, askedAt: now, asks: 0, failures: 0, deliveries: 0 };
      this.pages.set(p.number, state);
      return state;
    });
    await Promise.all(states.map((s) => this.send(s)));
  }

  delivered(): PageState[] {
    return [...this.pages.values()].filter((p) => p.deliveredAt !== undefined);
  }

  /** Status false seen, all pages. */
  failures(): number {
    return [...this.pages.values()].reduce((sum, p) => sum + p.failures, 0);
  }

  close(): void {
    this.closed = true;
    this.socket?.disconnect();
  }

  private send(page: PageState): Promise<void> {
    page.asks++;
    return this.server.ask(this.user, page.prompt, page.number);
  }

  private onResponse(m: { Status?: unknown; Number?: unknown }): void {
    if (this.closed) return;
    this.answers++;
    const page = this.pages.get(Number(m.Number));
    if (!page) {
      this.strays++;
    } else if (m.Status === true) {
      page.deliveries++;
      if (this.completedAt !== undefined) this.afterComplete++;
      if (page.deliveredAt === undefined) {
        page.deliveredAt = performance.now();
        if ([...this.pages.values()].every((p) => p.deliveredAt !== undefined)) this.completedAt = page.deliveredAt;
      }
    } else {
      page.failures++;
      if (page.deliveredAt === undefined) void this.send(page).catch(() => undefined);
    }
    this.onChange();
  }
}

/** Wakes waiters whenever something changed; `until` resolves true once its condition holds, false at the cap. */
export class Watch {
  private waiters: Array<() => void> = [];

  changed = (): void => {
    for (const wake of [...this.waiters]) wake();
  };

  until(done: () => boolean, timeoutMs: number): Promise<boolean> {
    if (done()) return Promise.resolve(true);
    return new Promise((resolve) => {
      const finish = (ok: boolean): void => {
        clearTimeout(timer);
        this.waiters = this.waiters.filter((w) => w !== check);
        resolve(ok);
      };
      const timer = setTimeout(() => finish(false), Math.max(0, timeoutMs));
      const check = (): void => {
        if (done()) finish(true);
      };
      this.waiters.push(check);
    });
  }
}
