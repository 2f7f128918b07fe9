import path from 'node:path';
import { defineScripts, loadScripts, RedisClient, ScriptCommand } from '../redis/scripts';

const SCRIPTS = loadScripts(path.join(__dirname, 'commands'));

export interface BillLimits {
  /** USER_DAILY_IMAGES: pictures bought for one user per UTC day; 0: no cap. */
  userDailyImages: number;
  /** DAILY_BUDGET_USD: what the fleet may spend per UTC day; 0: no cap. */
  dailyBudgetUsd: number;
}

/** A picture bought for a request about to be sent: settled with what it cost, or given back. */
export interface Purchase {
  /** The picture came back: its cost (xAI's, else the list price it was reserved at) goes on the bill. */
  settle(costUsd: number | undefined): Promise<void>;
  /** No picture came back and none was paid for: the user's and the fleet's allowance get it back. */
  giveBack(): Promise<void>;
}

/** Why a picture may not be bought: the user had their pictures today, or the fleet's budget is spent (`alert`: the first such refusal today). */
export type Refusal = { reason: 'user' | 'budget'; alert: boolean };

/** Today's bill, as the stats line and queue:stats show it. */
export interface BillToday {
  /** The UTC day, `YYYY-MM-DD`. */
  day: string;
  spentUsd: number;
  /** Reserved for requests out now, at their list price. */
  reservedUsd: number;
  usersAtCap: number;
}

const MICROS = 1_000_000;

/**
 * What the fleet buys per UTC day (on Redis' clock), in Redis (see commands/_bill.lua), exact across workers: a
 * request is bought before it is sent (BUY reserves its list price and counts it for its user, or refuses), and
 * settled once its answer is in (SETTLE). So a cap is never passed by workers buying at once, and the budget stops
 * the fleet within one picture's price. A request cut off (a crash) stays reserved: it was most likely paid.
 */
export class Bill {
  private readonly commands: Record<'buy' | 'settle' | 'spend', ScriptCommand>;

  constructor(
    client: RedisClient,
    /** The bill's key, under the queue's prefix (QueueKeys.bill). */
    private readonly key: string,
    private readonly limits: BillLimits,
  ) {
    this.commands = defineScripts(client, SCRIPTS, 'bill', ['buy', 'settle', 'spend']);
  }

  /** Buys one picture for `userId` at `priceUsd` (its list price), or says why it may not. */
  async buy(userId: string, priceUsd: number): Promise<Purchase | Refusal> {
    const price = Math.round(priceUsd * MICROS);
    const { userDailyImages: cap } = this.limits;
    const reply = (await this.commands.buy(this.key, userId, price, cap, Math.round(this.limits.dailyBudgetUsd * MICROS))) as Array<number | string>;
    if (reply[0] !== 1) return { reason: reply[1] === 'user' ? 'user' : 'budget', alert: reply[3] === 1 };
    const day = Number(reply[1]);
    let settled = false;
    const settle = async (costMicros: number): Promise<void> => {
      if (settled) return;
      settled = true;
      await this.commands.settle(this.key, day, userId, price, costMicros, cap);
    };
    return {
      settle: (costUsd) => settle(costUsd === undefined ? price : Math.round(costUsd * MICROS)),
      giveBack: () => settle(-1),
    };
  }

  async today(): Promise<BillToday> {
    const [day, spent, reserved, capped] = (await this.commands.spend(this.key)) as number[];
    return {
      day: new Date(day * 86_400_000).toISOString().slice(0, 10),
      spentUsd: spent / MICROS,
      reservedUsd: reserved / MICROS,
      usersAtCap: capped,
    };
  }
}

export function isRefusal(value: Purchase | Refusal): value is Refusal {
  return 'reason' in value;
}
