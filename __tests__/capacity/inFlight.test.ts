import { INITIAL_LATENCY_MS, InFlightLimit, MAX_IN_FLIGHT } from '../../src/capacity/inFlight';

describe('InFlightLimit', () => {
  it("fills the team's pace at xAI's latency: 5 per second at 12 s is about 60 requests waiting at once", () => {
    const limit = new InFlightLimit(210);
    expect(limit.observedLatencyMs).toBe(INITIAL_LATENCY_MS);
    expect(limit.limit).toBe(Math.ceil((12_000 / 210) * 1.3) + 2);
  });

  it('follows the latency it observes, down and up', () => {
    const limit = new InFlightLimit(210);
    for (let i = 0; i < 50; i++) limit.observe(1500);
    expect(limit.observedLatencyMs).toBe(1500);
    expect(limit.limit).toBe(Math.ceil((1500 / 210) * 1.3) + 2);
    for (let i = 0; i < 50; i++) limit.observe(9000);
    expect(limit.limit).toBe(Math.ceil((9000 / 210) * 1.3) + 2);
  });

  it('is bounded by memory, and by CONCURRENCY when set', () => {
    const slowApi = new InFlightLimit(10);
    expect(slowApi.limit).toBe(MAX_IN_FLIGHT);
    expect(new InFlightLimit(210, 5).limit).toBe(5);
    expect(new InFlightLimit(null).limit).toBe(MAX_IN_FLIGHT);
    expect(new InFlightLimit(null, 3).limit).toBe(3);
  });
});
