import { WorkerError } from '../src/errors';
import { GrokImageProvider, GrokProviderOptions } from '../src/grokProvider';
import { DEFAULT_COST_TICKS, FakeXai, TINY_PNG, TINY_PNG_BASE64, startFakeXai } from './support/fakeXai';

const API_KEY = 'xai-test-secret-key-123';

let fake: FakeXai;
beforeEach(async () => {
  fake = await startFakeXai();
});
afterEach(async () => {
  await fake.close();
});

function provider(overrides: Partial<GrokProviderOptions> = {}): GrokImageProvider {
  return new GrokImageProvider({ apiUrl: fake.url, apiKey: API_KEY, model: 'grok-imagine-image', timeoutMs: 5000, ...overrides });
}

const signal = (): AbortSignal => new AbortController().signal;

/** Runs generate and returns what it threw, failing the test if it resolved. */
async function failure(p: GrokImageProvider = provider(), prompt = 'a cat'): Promise<WorkerError> {
  const err = await p.generate({ prompt: prompt, userId: 'user-1' }, signal()).then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(WorkerError);
  expect(String((err as Error).message)).not.toContain(API_KEY);
  return err as WorkerError;
}

describe('request', () => {
  it('posts exactly model, prompt, n and response_format with the bearer key', async () => {
    await provider().generate({ prompt: 'a red fox', userId: 'user-1' }, signal());
    expect(fake.calls).toHaveLength(1);
    const { headers, body } = fake.calls[0];
    expect(body).toEqual({ model: 'grok-imagine-image', prompt: 'a red fox', n: 1, response_format: 'b64_json' });
    expect(body).not.toHaveProperty('size');
    expect(body).not.toHaveProperty('quality');
    expect(body).not.toHaveProperty('style');
    expect(headers.authorization).toBe(`Bearer ${API_KEY}`);
    expect(headers['content-type']).toBe('application/json');
  });

  it('passes the configured model through', async () => {
    await provider({ model: 'grok-2-image-1212' }).generate({ prompt: 'x', userId: 'user-1' }, signal());
    expect(fake.calls[0].body).toMatchObject({ model: 'grok-2-image-1212' });
  });
});

describe('successful answers', () => {
  it('returns a b64 answer with mime type, revised prompt and cost', async () => {
    const image = await provider().generate({ prompt: 'a red fox', userId: 'user-1' }, signal());
    expect(image).toEqual({
      base64: TINY_PNG_BASE64,
      mimeType: 'image/png',
      revisedPrompt: 'Revised: a red fox',
      costUsd: DEFAULT_COST_TICKS / 1e10,
    });
    expect(image.costUsd).toBeCloseTo(0.02);
  });

  it('defaults the mime type to image/jpeg and leaves out absent usage', async () => {
    fake.script([{ status: 200, json: { data: [{ b64_json: 'AAAA' }] } }]);
    const image = await provider().generate({ prompt: 'x', userId: 'user-1' }, signal());
    expect(image).toEqual({ base64: 'AAAA', mimeType: 'image/jpeg' });
  });

  it('downloads a url answer, without the API key, and takes the mime from Content-Type', async () => {
    fake.setFile('fox.png', { status: 200, body: TINY_PNG, headers: { 'Content-Type': 'image/png' } });
    fake.script([{ status: 200, json: { data: [{ url: fake.fileUrl('fox.png') }], usage: { cost_in_usd_ticks: 5e8 } } }]);
    const image = await provider().generate({ prompt: 'x', userId: 'user-1' }, signal());
    expect(image.base64).toBe(TINY_PNG_BASE64);
    expect(image.mimeType).toBe('image/png');
    expect(image.costUsd).toBeCloseTo(0.05);
    expect(fake.downloads).toHaveLength(1);
    expect(fake.downloads[0].headers.authorization).toBeUndefined();
  });

  it('prefers mime_type over the download, and falls back to jpeg for a non-image Content-Type', async () => {
    fake.setFile('a', { status: 200, body: 'bytes', headers: { 'Content-Type': 'application/octet-stream' } });
    fake.setFile('b', { status: 200, body: 'bytes', headers: { 'Content-Type': 'image/png' } });
    fake.script([
      { status: 200, json: { data: [{ url: fake.fileUrl('a') }] } },
      { status: 200, json: { data: [{ url: fake.fileUrl('b'), mime_type: 'image/webp' }] } },
    ]);
    expect((await provider().generate({ prompt: 'x', userId: 'user-1' }, signal())).mimeType).toBe('image/jpeg');
    expect((await provider().generate({ prompt: 'x', userId: 'user-1' }, signal())).mimeType).toBe('image/webp');
  });

  it('retries a failed download on its own, never the paid API call', async () => {
    let downloads = 0;
    fake.setFile('flaky', { status: 503, body: 'later' });
    fake.script([{ status: 200, json: { data: [{ url: fake.fileUrl('flaky') }] } }]);
    const flaky = provider({ downloadRetries: 2, retryDelay: () => (++downloads === 2 && fake.setFile('flaky', { status: 200, body: TINY_PNG }), 5) });
    const image = await flaky.generate({ prompt: 'x', userId: 'user-1' }, signal());
    expect(image.base64).toBe(TINY_PNG_BASE64);
    expect(fake.calls).toHaveLength(1);
    expect(fake.downloads).toHaveLength(3);
  });

  it('fails permanently when the paid image cannot be downloaded, so the caller does not buy another', async () => {
    fake.setFile('busy', { status: 503, body: 'later' });
    fake.script([
      { status: 200, json: { data: [{ url: fake.fileUrl('busy') }] } },
      { status: 200, json: { data: [{ url: fake.fileUrl('missing') }] } },
    ]);
    const err = await failure(provider({ downloadRetries: 2, retryDelay: () => 1 }));
    expect(err).toMatchObject({ transient: false, code: 'GENERATION_FAILED', status: undefined });
    expect(err.message).toMatch(/^The image was generated but could not be downloaded: Image download failed with status 503/);
    expect(fake.downloads).toHaveLength(3);
    expect(await failure()).toMatchObject({ transient: false, code: 'GENERATION_FAILED', status: undefined });
    expect(fake.downloads).toHaveLength(4);
    expect(fake.calls).toHaveLength(2);
  });
});

describe('refused content', () => {
  it.each([
    [400, { code: 'Client specified an invalid argument', error: 'Generated image rejected by content moderation.' }],
    [400, { error: { message: 'Your request was rejected by our safety system', type: 'invalid_request_error', code: 'x' } }],
    [422, { error: { message: 'Prompt not allowed', type: 'invalid_request_error', code: 'content_policy_violation' } }],
  ])('%i %j -> CONTENT_REJECTED', async (status, json) => {
    fake.script([{ status, json }]);
    const err = await failure();
    expect(err).toMatchObject({ code: 'CONTENT_REJECTED', transient: false, status });
  });

  it('a 200 with empty data is withheld content', async () => {
    fake.script([{ status: 200, json: { data: [] } }]);
    expect(await failure()).toMatchObject({ code: 'CONTENT_REJECTED', transient: false });
  });

  it('a 200 with respect_moderation false is withheld content, even with an image', async () => {
    fake.script([{ status: 200, json: { data: [{ b64_json: 'AAAA', respect_moderation: false }] } }]);
    expect(await failure()).toMatchObject({ code: 'CONTENT_REJECTED', transient: false });
  });

  it('a 400 about something else is a permanent generation failure', async () => {
    fake.script([{ status: 400, json: { code: 'Client specified an invalid argument', error: 'Argument not supported: size' } }]);
    const err = await failure();
    expect(err).toMatchObject({ code: 'GENERATION_FAILED', transient: false, status: 400 });
    expect(err.message).toBe('Image API 400: Argument not supported: size');
  });
});

describe('error answers', () => {
  it('parses the {code, error} shape', async () => {
    fake.script([{ status: 400, json: { code: 'Some code', error: 'Bad prompt' } }]);
    expect((await failure()).message).toBe('Image API 400: Bad prompt');
  });

  it('parses the {error: {message}} shape', async () => {
    fake.script([{ status: 404, json: { error: { message: 'Model not found', type: 'not_found', code: 'model_not_found' } } }]);
    expect((await failure()).message).toBe('Image API 404: Model not found');
  });

  it('uses a plain-text body as the message', async () => {
    fake.script([{ status: 502, body: '<html>Bad gateway</html>' }]);
    expect((await failure()).message).toBe('Image API 502: <html>Bad gateway</html>');
  });

  it('never repeats the API key the server echoes back', async () => {
    fake.script([{ status: 401, json: { error: `Incorrect API key provided: ${API_KEY}` } }]);
    const err = await failure();
    expect(err.message).toBe('Image API 401: Incorrect API key provided: [redacted]');
  });

  it.each([401, 403, 404])('%i is permanent, keeps its status and marks a misconfiguration', async (status) => {
    fake.script([{ status, json: { error: 'nope' } }]);
    expect(await failure()).toMatchObject({ code: 'GENERATION_FAILED', transient: false, status, misconfiguration: true });
  });

  it('other 4xx are permanent but not a misconfiguration', async () => {
    fake.script([{ status: 400, json: { error: 'Argument not supported: size' } }]);
    expect(await failure()).toMatchObject({ code: 'GENERATION_FAILED', transient: false, status: 400, misconfiguration: false });
  });

  it('429 with Retry-After is transient and says how long to wait', async () => {
    fake.script([{ status: 429, json: { error: 'Too many requests' }, headers: { 'Retry-After': '3' } }]);
    expect(await failure()).toMatchObject({ code: 'GENERATION_FAILED', transient: true, status: 429, retryAfterMs: 3000 });
  });

  it('429 without Retry-After is transient with no wait of its own', async () => {
    fake.script([{ status: 429, json: { error: 'slow down' } }]);
    const err = await failure();
    expect(err.transient).toBe(true);
    expect(err.retryAfterMs).toBeUndefined();
  });

  it.each([
    'Your team has either used all available credits or reached its monthly spending limit.',
    'quota exhausted',
  ])('429 "%s" is permanent', async (message) => {
    fake.script([{ status: 429, json: { code: 'Too many requests', error: message } }]);
    expect(await failure()).toMatchObject({ code: 'GENERATION_FAILED', transient: false, status: 429 });
  });

  it.each([408, 500, 503])('%i is transient', async (status) => {
    fake.script([{ status, body: 'try later' }]);
    expect(await failure()).toMatchObject({ code: 'GENERATION_FAILED', transient: true, status });
  });
});

describe('broken answers and the network', () => {
  // A 200 may have been billed: only network errors, timeouts, 408, 429 and 5xx are worth asking again.
  it('a 200 that is not JSON is permanent', async () => {
    fake.script([{ status: 200, body: '<html>oops</html>' }]);
    expect(await failure()).toMatchObject({ code: 'GENERATION_FAILED', transient: false });
  });

  it('a 200 with an item but no image is permanent', async () => {
    fake.script([{ status: 200, json: { data: [{ revised_prompt: 'x' }] } }]);
    expect(await failure()).toMatchObject({ code: 'GENERATION_FAILED', transient: false });
  });

  it('a connection dropped halfway through the body is transient', async () => {
    fake.script([{ truncate: true, status: 200, json: { data: [{ b64_json: TINY_PNG_BASE64 }] } }]);
    const err = await failure(provider({ timeoutMs: 10_000 }));
    expect(err).toMatchObject({ code: 'GENERATION_FAILED', transient: true });
    expect(err.message).toBe('Image API request failed: ERR_STREAM_PREMATURE_CLOSE');
  });

  it('a body cut short of its Content-Length ends at the timeout, still transient', async () => {
    fake.script([{ truncate: true, contentLength: true, status: 200, json: { data: [{ b64_json: TINY_PNG_BASE64 }] } }]);
    const err = await failure(provider({ timeoutMs: 300 }));
    expect(err).toMatchObject({ code: 'GENERATION_FAILED', transient: true });
    expect(err.message).toBe('Image API did not answer within 300 ms');
  });

  it('a refused connection is transient', async () => {
    const url = fake.url;
    await fake.close();
    const err = await failure(provider({ apiUrl: url }));
    expect(err).toMatchObject({ transient: true });
    expect(err.message).toContain('ECONNREFUSED');
  });

  it('a server that never answers times out as a transient error', async () => {
    fake.script([{ hang: true }]);
    const started = Date.now();
    const err = await failure(provider({ timeoutMs: 200 }));
    expect(err).toMatchObject({ code: 'GENERATION_FAILED', transient: true });
    expect(err.message).toBe('Image API did not answer within 200 ms');
    expect(Date.now() - started).toBeLessThan(5000);
  });

  it('a download that never answers times out too', async () => {
    fake.setFile('slow', { hang: true });
    fake.script([{ status: 200, json: { data: [{ url: fake.fileUrl('slow') }] } }]);
    const err = await failure(provider({ timeoutMs: 200, downloadRetries: 1, retryDelay: () => 1 }));
    expect(err).toMatchObject({ transient: false, code: 'GENERATION_FAILED' });
    expect(err.message).toBe('The image was generated but could not be downloaded: Image download did not answer within 200 ms');
    expect(fake.downloads).toHaveLength(2);
  });

  it("the caller's abort rejects with an AbortError, not a WorkerError", async () => {
    fake.script([{ hang: true }]);
    const controller = new AbortController();
    const run = provider().generate({ prompt: 'x', userId: 'user-1' }, controller.signal);
    setTimeout(() => controller.abort(), 50);
    const err = await run.catch((e: unknown) => e);
    expect(err).toMatchObject({ name: 'AbortError' });
    expect(err).not.toBeInstanceOf(WorkerError);
  });

  it('an already aborted signal sends nothing', async () => {
    const controller = new AbortController();
    controller.abort();
    await expect(provider().generate({ prompt: 'x', userId: 'user-1' }, controller.signal)).rejects.toMatchObject({ name: 'AbortError' });
    expect(fake.calls).toHaveLength(0);
  });
});
