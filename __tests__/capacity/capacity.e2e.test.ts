import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { TINY_PNG_BASE64 } from '../support/fakeXai';
import { isFinal, signToken, waitUntil } from '../support/helpers';
import { TestSystem, useTestSystem } from '../support/harness';

/**
 * An image API that enforces a team limit the way xAI does: at most `max` requests admitted in any rolling
 * `windowMs`, a 429 beyond. It records every request's prompt and whether it was admitted.
 */
async function startLimitedApi(
  max: number,
  windowMs: number,
  latencyMs: number,
): Promise<{
  url: string;
  requests: Array<{ prompt: string; admitted: boolean }>;
  close: () => Promise<void>;
}> {
  const admittedAt: number[] = [];
  const requests: Array<{ prompt: string; admitted: boolean }> = [];
  const server = http.createServer((req, res) => {
    let body = '';
    req.on('data', (c: Buffer) => (body += c.toString()));
    req.on('end', () => {
      const now = Date.now();
      while (admittedAt.length && admittedAt[0] <= now - windowMs) admittedAt.shift();
      const prompt = String((JSON.parse(body) as { prompt?: unknown }).prompt);
      const admitted = admittedAt.length < max;
      requests.push({ prompt, admitted });
      if (!admitted) {
        res.writeHead(429, { 'Content-Type': 'application/json', 'Retry-After': '1' });
        res.end(JSON.stringify({ code: 'Too many requests', error: `Team rate limit exceeded: ${max} requests per window` }));
        return;
      }
      admittedAt.push(now);
      setTimeout(() => {
        res.writeHead(200, { 'Content-Type': 'application/json' });
        res.end(JSON.stringify({ data: [{ b64_json: TINY_PNG_BASE64, mime_type: 'image/png' }], usage: { cost_in_usd_ticks: 200_000_000 } }));
      }, latencyMs);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1/images/generations`,
    requests,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

describe('sharing the image API', () => {
  let sys: TestSystem;
  useTestSystem('capacity', (s) => (sys = s));

  it("a user's single image is not held behind another user's burst", async () => {
    const light = await sys.user('light');
    // Heavy's first page is drawn until every page is in line, however slowly they were added.
    const release = sys.xai.stall();
    await sys.startWorker({ CONCURRENCY: '1', GROK_RATE_LIMIT: '0' });
    for (let n = 1; n <= 12; n++) await sys.enqueue({ Id: 'heavy', Prompt: `heavy page ${n}`, Token: signToken('heavy'), Number: n });
    await sys.enqueue({ Id: 'light', Prompt: 'light page', Token: signToken('light'), Number: 1 });
    // Taken in oldest first: once light's line exists, heavy's whole burst is in line too.
    await waitUntil(async () => (await sys.redis.exists(`bull:${sys.queueName}:fq:q:light`)) === 1, 10_000, "light's page in line");
    release();

    await light.waitFor(isFinal);
    const order = sys.xai.calls.map((c) => (c.body as { prompt: string }).prompt);
    // First come, first served would make it the 13th request; fair between users, it goes next.
    expect(order.indexOf('light page')).toBe(1);
  });

  it('two workers share one pace: every job delivered, no request answered 429 by an API allowing it', async () => {
    // The workers pace 5 per 1000 ms between them, and the API allows 8: a pace each worker kept for itself would
    // send 10, and a pause of the test's process (which runs both) would have to last most of a second to bunch 9.
    const api = await startLimitedApi(8, 1000, 50);
    try {
      const env = { GROK_API: api.url, GROK_RATE_LIMIT: '5', GROK_RATE_WINDOW_MS: '1000', CONCURRENCY: '4' };
      await sys.startWorker(env);
      await sys.startWorker(env);
      const total = 10;
      for (let n = 1; n <= total; n++) await sys.enqueue({ Id: `user${n % 4}`, Prompt: `picture ${n}`, Token: signToken(`user${n % 4}`), Number: n });
      await waitUntil(() => sys.ends().length >= total, 20_000, 'all ended');
      expect(sys.ends().every((l) => l.outcome === 'completed')).toBe(true);
      expect(api.requests.filter((r) => !r.admitted)).toEqual([]);
      expect(api.requests).toHaveLength(total);
    } finally {
      await api.close();
    }
  });

  it('a rate-limit 429 is a wait: the fleet slows down, nobody fails and no retry is used up', async () => {
    // An API allowing half of what the workers were told: 429s come, and are absorbed.
    const api = await startLimitedApi(3, 1000, 20);
    try {
      // All in line before the worker starts, so they go at the pace and not at the pace of the test's adds.
      const total = 7;
      for (let n = 1; n <= total; n++) await sys.enqueue({ Id: `user${n}`, Prompt: `picture ${n}`, Token: signToken(`user${n}`), Number: n });
      await sys.startWorker({ GROK_API: api.url, GROK_RATE_LIMIT: '6', GROK_RATE_WINDOW_MS: '1000', GROK_MAX_RETRIES: '0', CONCURRENCY: '5' });
      await waitUntil(() => sys.ends().length >= total, 25_000, 'all ended');
      expect(sys.ends().map((l) => l.outcome)).toEqual(Array(total).fill('completed'));
      expect(api.requests.some((r) => !r.admitted)).toBe(true);
      expect(api.requests.filter((r) => r.admitted)).toHaveLength(total);
      expect(sys.logs.lines.some((l) => l.msg === 'image API rate limit reached: waiting')).toBe(true);
    } finally {
      await api.close();
    }
  });
});
