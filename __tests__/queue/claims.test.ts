import { createLogger } from '../../src/base/logger';
import { Claims } from '../../src/queue/claims';
import type { Claim, FairQueue } from '../../src/queue/fairQueue';

/** The worker's side of its claims, against a fair queue that answers as told. */
function setup(): { claims: Claims; claim: Claim; redis: { held: boolean; asked: number } } {
  const redis = { held: true, asked: 0 };
  const fair = {
    renew: async (claims: Array<{ token: string }>) => {
      redis.asked += 1;
      return redis.held ? [] : claims.map((c) => c.token);
    },
  } as unknown as FairQueue;
  const claims = new Claims(fair, 60_000, createLogger('silent'));
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
    redis.held = false;
    claims.trust();
    expect(await claims.stillOurs(claim)).toBe(false);
    expect(redis.asked).toBe(1);
  });

  it('a lost claim stops its own run only, not another run of the same job under a new claim', async () => {
    const { claims, claim, redis } = setup();
    const first = claims.take(claim);
    const again = { ...claim, token: 'w.2' };
    const second = claims.take(again);
    redis.held = false;
    claims.distrust();
    expect(await claims.stillOurs(claim)).toBe(false);
    expect(first.aborted).toBe(true);
    expect(second.aborted).toBe(false);
  });
});
