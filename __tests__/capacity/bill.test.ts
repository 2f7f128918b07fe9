import Redis from 'ioredis';
import { Bill, isRefusal, Purchase } from '../../src/capacity/bill';
import { listPriceUsd } from '../../src/capacity/prices';
import { redisOptionsFromUrl } from '../../src/redis/connections';
import { redisUrl, uniqueQueueName } from '../support/helpers';

/** The daily bill against real Redis, as several workers share it. */
let redis: Redis;
let key: string;

beforeEach(() => {
  redis = new Redis(redisOptionsFromUrl(redisUrl()));
  key = `bull:${uniqueQueueName('bill')}:bill`;
});

afterEach(async () => {
  const keys = await redis.keys(`${key}*`);
  if (keys.length) await redis.del(...keys);
  redis.disconnect();
});

function bought(value: Awaited<ReturnType<Bill['buy']>>): Purchase {
  if (isRefusal(value)) throw new Error(`refused: ${value.reason}`);
  return value;
}

describe('Bill', () => {
  it("a user's daily cap is exact across workers buying at once; a picture not bought is given back", async () => {
    // Three workers, one Redis: 10 purchases for alice at once against a cap of 4.
    const workers = [0, 1, 2].map(() => new Bill(redis, key, { userDailyImages: 4, dailyBudgetUsd: 0 }));
    const tries = await Promise.all(Array.from({ length: 10 }, (_, i) => workers[i % 3].buy('alice', 0.02)));
    const purchases = tries.filter((t): t is Purchase => !isRefusal(t));
    expect(purchases).toHaveLength(4);
    expect(tries.filter(isRefusal)).toEqual(Array(6).fill({ reason: 'user', alert: false }));
    expect(bought(await workers[0].buy('bob', 0.02))).toBeDefined();
    expect((await workers[0].today()).usersAtCap).toBe(1);

    // One request fails without a picture: alice may buy one more.
    await purchases[0].giveBack();
    expect((await workers[1].today()).usersAtCap).toBe(0);
    await bought(await workers[1].buy('alice', 0.02)).settle(0.02);
    expect(isRefusal(await workers[2].buy('alice', 0.02))).toBe(true);
  });

  it('the budget stops the fleet within one picture: a request is bought only if it fits, at its list price', async () => {
    const bill = new Bill(redis, key, { userDailyImages: 0, dailyBudgetUsd: 0.1 });
    const first = bought(await bill.buy('alice', 0.04));
    const second = bought(await bill.buy('bob', 0.04));
    // 0.04 + 0.04 reserved: a third would pass 0.10.
    expect(await bill.buy('carol', 0.04)).toEqual({ reason: 'budget', alert: true });
    // The answers say what they really cost.
    await first.settle(0.02);
    await second.settle(0.02);
    expect(await bill.today()).toMatchObject({ spentUsd: 0.04, reservedUsd: 0 });
    bought(await bill.buy('carol', 0.04));
    bought(await bill.buy('dave', 0.02));
    // Spent 0.04, reserved 0.06: full. Only the first refusal of the day alerts.
    expect(await bill.buy('erin', 0.02)).toEqual({ reason: 'budget', alert: false });
  });

  it("settles each purchase once, on the day it was bought, and tells today's spend", async () => {
    const bill = new Bill(redis, key, { userDailyImages: 2, dailyBudgetUsd: 1 });
    const purchase = bought(await bill.buy('alice', 0.02));
    await purchase.settle(0.015);
    await purchase.settle(0.015);
    await purchase.giveBack();
    const today = await bill.today();
    const [seconds] = await redis.time();
    expect(today).toEqual({ day: new Date(Number(seconds) * 1000).toISOString().slice(0, 10), spentUsd: 0.015, reservedUsd: 0, usersAtCap: 0 });
    expect(await redis.ttl(`${key}:${Math.floor(Number(seconds) / 86400)}`)).toBeGreaterThan(86_400);
  });
});

describe('listPriceUsd', () => {
  it("prices a picture when xAI does not say: the 1.0 model's list price, 2.0 by quality, the unknown at the most", () => {
    expect(listPriceUsd('grok-imagine-image')).toBe(0.02);
    expect(listPriceUsd('grok-imagine-image-2.0', 'low')).toBe(0.02);
    expect(listPriceUsd('grok-imagine-image-2.0', 'high', '2k')).toBe(0.08);
    expect(listPriceUsd('grok-imagine-image-2.0')).toBe(0.04);
    expect(listPriceUsd('grok-imagine-image-3.0')).toBe(0.08);
  });
});
