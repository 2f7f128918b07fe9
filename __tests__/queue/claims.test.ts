import { createLogger } from '../../src/base/logger';
import { Claims } from '../../src/queue/claims';
import type { Claim, FairQueue, Presence } from '../../src/queue/fairQueue';
import { PRESENCE_GRACE_MS } from '../../src/queue/presence';

/**
 * The worker's side of its claims, against a fair queue that answers as told: whether the claims stand, and whether
 * the worker's own subscription is there.
 */
function setup(presence: Presence = 'off') {
  const redis = { stands: true, subscribed: true, asked: 0, absent: 0 };
  const fair = {
    renew: async (claims: Array<{ token: string }>) => {
      redis.asked += 1;
      return { lost: redis.stands ? [] : claims.map((c) => c.token), present: presence === 'off' ? null : redis.subscribed };
    },
  } as unknown as FairQueue;
  const claims = new Claims(fair, 60_000, createLogger('silent'), {
    self: () => ({ presence, worker: 'w' }),
    onAbsent: () => void (redis.absent += 1),
  });
  const claim = { token: 'w.1', job: { fid: '1-1', id: '1' } } as unknown as Claim;
  return { claims, claim, redis };
}

describe('Claims', () => {
  it('trusts a fresh confirmation for half a lease, without asking Redis', async () => {
    const { claims, claim, redis } = setup();
    claims.take(claim);
    expect(await claims.stillOurs(claim)).toBe(true);
    expect(redis.asked).toBe(0);
  });

  it('after its subscription dropped, trusts no confirmation made before it came back', async () => {
    const { claims, claim, redis } = setup();
    claims.take(claim);
    claims.distrust();
    // Meanwhile the fleet took the claim back: the worker looked gone.
    redis.stands = false;
    claims.trust();
    expect(await claims.stillOurs(claim)).toBe(false);
    expect(redis.asked).toBe(1);
  });

  it('a lost claim stops its own run only, not another run of the same job under a new claim', async () => {
    const { claims, claim, redis } = setup();
    const first = claims.take(claim);
    const again = { ...claim, token: 'w.2' };
    const second = claims.take(again);
    redis.stands = false;
    claims.distrust();
    expect(await claims.stillOurs(claim)).toBe(false);
    expect(first.aborted).toBe(true);
    expect(second.aborted).toBe(false);
  });

  describe('with presence on', () => {
    beforeEach(() => jest.useFakeTimers());
    afterEach(() => jest.useRealTimers());

    it("trusts a confirmation only as long as the fleet waits before it takes a silent worker's claims back", async () => {
      const { claims, claim, redis } = setup('channel');
      claims.take(claim);
      jest.advanceTimersByTime(PRESENCE_GRACE_MS - 100);
      expect(await claims.stillOurs(claim)).toBe(true);
      expect(redis.asked).toBe(0);
      jest.advanceTimersByTime(200);
      expect(await claims.stillOurs(claim)).toBe(true);
      expect(redis.asked).toBe(1);
    });

    it('without presence, half a lease', async () => {
      const { claims, claim, redis } = setup('off');
      claims.take(claim);
      jest.advanceTimersByTime(PRESENCE_GRACE_MS + 100);
      expect(await claims.stillOurs(claim)).toBe(true);
      expect(redis.asked).toBe(0);
    });

    it('a renewal that finds its own subscription gone trusts nothing more and has the subscription made again', async () => {
      const { claims, claim, redis } = setup('channel');
      claims.take(claim);
      // A NAT dropped the idle subscriber connection: Redis has no subscriber, the connection said nothing.
      redis.subscribed = false;
      await claims.renew();
      expect(redis.absent).toBe(1);
      // Fresh as the renewal's confirmation is, every check now asks Redis, until the subscription is back.
      expect(await claims.stillOurs(claim)).toBe(true);
      expect(await claims.stillOurs(claim)).toBe(true);
      expect(redis.asked).toBe(3);
      expect(redis.absent).toBe(1);
      // Subscribed again (presence calls trust()): confirmations asked for from now on count.
      redis.subscribed = true;
      claims.trust();
      jest.advanceTimersByTime(1);
      await claims.stillOurs(claim);
      expect(redis.asked).toBe(4);
      await claims.stillOurs(claim);
      expect(redis.asked).toBe(4);
    });
  });
});
