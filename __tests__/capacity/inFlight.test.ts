import { ImageMemory } from '../../src/capacity/imageMemory';
import { INITIAL_LATENCY_MS, InFlightLimit } from '../../src/capacity/inFlight';

describe('InFlightLimit', () => {
  it("fills the team's pace at xAI's latency: 5 per second at 12 s is about 60 requests waiting at once", () => {
    const limit = new InFlightLimit(210);
    expect(limit.observedLatencyMs).toBe(INITIAL_LATENCY_MS);
    expect(limit.limit).toBe(Math.ceil((12_000 / 210) * 1.3) + 2);
    expect(limit.limitedBy).toBe('pace');
  });

  it('follows the latency it observes, down and up', () => {
    const limit = new InFlightLimit(210);
    for (let i = 0; i < 50; i++) limit.observe(1500);
    expect(limit.observedLatencyMs).toBe(1500);
    expect(limit.limit).toBe(Math.ceil((1500 / 210) * 1.3) + 2);
    for (let i = 0; i < 50; i++) limit.observe(9000);
    expect(limit.limit).toBe(Math.ceil((9000 / 210) * 1.3) + 2);
  });

  it('fills any limit at any latency: no count caps it (a team at 50 requests/s, 12 s per image)', () => {
    const limit = new InFlightLimit(21);
    expect(limit.limit).toBe(Math.ceil((12_000 / 21) * 1.3) + 2);
    expect(limit.limit).toBeGreaterThan(600);
  });

  it('CONCURRENCY, when set, is exactly the cap, above or below what the pace would want', () => {
    expect(new InFlightLimit(210, 5).limit).toBe(5);
    expect(new InFlightLimit(210, 500).limit).toBe(500);
    expect(new InFlightLimit(null, 200).limit).toBe(200);
    expect(new InFlightLimit(null, 200).limitedBy).toBe('CONCURRENCY');
    expect(new InFlightLimit(null).limitedBy).toBe('unpaced default');
  });

  it('claims nothing more while the images held fill their budget, and says so', () => {
    const images = new ImageMemory(1000);
    const limit = new InFlightLimit(210, undefined, images);
    const release = images.use(1000);
    expect(limit.limitFor(7)).toBe(7);
    expect(limit.limitedBy).toBe('image memory');
    release();
    expect(limit.limitFor(7)).toBe(limit.limit);
  });
});

describe('ImageMemory', () => {
  it('counts what is held until it is let go, once', async () => {
    const images = new ImageMemory(100);
    const a = images.use(60);
    const b = images.use(60);
    expect(images.used).toBe(120);
    expect(images.full).toBe(true);
    let roomy = false;
    const room = images.room(new AbortController().signal).then(() => (roomy = true));
    a();
    a();
    await room;
    expect(roomy).toBe(true);
    expect(images.used).toBe(60);
    b();
    expect(images.used).toBe(0);
  });

  it('counts each request out as a picture of the size seen lately, until it is answered', () => {
    const KB = 1024;
    // Before any picture is seen, a request out counts as 512 kB: 20 of them fill 10 MB.
    const images = new ImageMemory(10 * 1024 * KB);
    const out = Array.from({ length: 19 }, () => images.expect());
    expect(images.full).toBe(false);
    const last = images.expect();
    expect(images.full).toBe(true);
    last();
    last();
    expect(images.full).toBe(false);
    expect(images.used).toBe(0);
    // Pictures of 100 kB seen since: the same requests out now weigh far less.
    for (let i = 0; i < 20; i++) images.use(100 * KB)();
    out.push(images.expect());
    expect(images.full).toBe(false);
    expect(images.expected).toBeLessThan(20 * 120 * KB);
    out.forEach((answered) => answered());
    expect(images.expected).toBe(0);
  });

  it('a wait for room ends when its signal aborts', async () => {
    const images = new ImageMemory(10);
    images.use(10);
    const controller = new AbortController();
    const waiting = images.room(controller.signal);
    controller.abort(new Error('stop'));
    await expect(waiting).rejects.toThrow('stop');
  });
});
