import type Bull from 'bull';
import jwt from 'jsonwebtoken';
import { PageState, StoryServer, WaitPage, Watch } from './waitPage';

/** One picture one of the crowd waits for. */
export interface Page extends PageState {
  user: string;
}

/**
 * A crowd of StoryBang users, for the capacity scenarios: one wait page per user (waitPage.ts, the one model of
 * StoryBang's browser), behind one StoryBang server whose tokens are signed here (HS256, an hour).
 */
export class Browsers {
  private readonly tabs = new Map<string, WaitPage>();
  private readonly watch = new Watch();
  private readonly server: StoryServer;

  constructor(
    private readonly relayUrl: string,
    queue: Bull.Queue,
    secret: string,
  ) {
    this.server = new StoryServer(queue, async (Id) => jwt.sign({ Id }, secret, { algorithm: 'HS256', expiresIn: '1h' }));
  }

  /** Opens every user's wait page and joins its room. */
  async join(users: string[]): Promise<void> {
    await Promise.all(users.map((user) => this.tab(user).open()));
    // The relay never acknowledges: give it a moment to have handled every joinRoom before anything is asked.
    await new Promise((resolve) => setTimeout(resolve, 300));
  }

  /** Asks for pages, all at once (as a story does); a user who never joined asks without listening. */
  async ask(pages: Array<{ user: string; number: number; prompt: string }>): Promise<void> {
    const byUser = new Map<string, Array<{ number: number; prompt: string }>>();
    for (const { user, number, prompt } of pages) byUser.set(user, [...(byUser.get(user) ?? []), { number, prompt }]);
    await Promise.all([...byUser].map(([user, own]) => this.tab(user).ask(own)));
  }

  /** Resolves true once `done(this)` holds, checked after every notification; false after `timeoutMs`. */
  until(done: (b: Browsers) => boolean, timeoutMs: number): Promise<boolean> {
    return this.watch.until(() => done(this), timeoutMs);
  }

  pages(): Page[] {
    return [...this.tabs.values()].flatMap((tab) => [...tab.pages.values()].map((page) => ({ ...page, user: tab.user })));
  }

  delivered(filter: (p: Page) => boolean = () => true): Page[] {
    return this.pages().filter((p) => p.deliveredAt !== undefined && filter(p));
  }

  /** Pictures that came again for a page that already had one. */
  get duplicates(): number {
    return this.pages().reduce((sum, p) => sum + Math.max(0, p.deliveries - 1), 0);
  }

  /** Stops re-asking and closes every wait page. */
  close(): void {
    for (const tab of this.tabs.values()) tab.close();
  }

  private tab(user: string): WaitPage {
    let tab = this.tabs.get(user);
    if (!tab) this.tabs.set(user, (tab = new WaitPage(user, this.relayUrl, this.server, this.watch.changed)));
    return tab;
  }
}
