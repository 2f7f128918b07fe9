import { createHash } from 'node:crypto';
import { WorkerError } from '../../../src/base/errors';
import { GrokImageProvider, GrokProviderOptions, hashUserId, sniffImageType } from '../../../src/pipeline/steps/grokProvider';
import { DEFAULT_COST_TICKS, FakeXai, TINY_PNG, TINY_PNG_BASE64, startFakeXai } from '../../support/fakeXai';

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

const JPEG = Buffer.from([0xff, 0xd8, 0xff, 0xe0, 0x00, 0x10, 0x4a, 0x46, 0x49, 0x46, 0x00, 0x01]);
const WEBP = Buffer.concat([Buffer.from('RIFF'), Buffer.from([0x24, 0, 0, 0]), Buffer.from('WEBPVP8 ')]);
const GIF = Buffer.from('GIF89a\x01\x00\x01\x00', 'latin1');
const UNKNOWN = Buffer.from('not an image at all');

describe('request', () => {
  it('posts exactly model, prompt, n, response_format and the hashed user, with the bearer key', async () => {
    await provider().generate({ prompt: 'a red fox', userId: 'user-1' }, signal());
    expect(fake.calls).toHaveLength(1);
    const { headers, body } = fake.calls[0];
    expect(body).toEqual({ model: 'grok-imagine-image', prompt: 'a red fox', n: 1, response_format: 'b64_json', user: hashUserId('user-1') });
    expect(body).not.toHaveProperty('size');
    expect(body).not.toHaveProperty('quality');
    expect(body).not.toHaveProperty('style');
    expect(headers.authorization).toBe(`Bearer ${API_KEY}`);
    expect(headers['content-type']).toBe('application/json');
  });

  it("sends a one-way hash of the user's Id: stable, different per user, never the Id itself", async () => {
    await provider().generate({ prompt: 'x', userId: 'alice@example.com' }, signal());
    await provider().generate({ prompt: 'x', userId: 'alice@example.com', deadlineAt: Date.now() + 1000 }, signal());
    await provider().generate({ prompt: 'x', userId: 'bob' }, signal());
    const users = fake.calls.map((c) => (c.body as { user: string }).user);
    expect(users[0]).toMatch(/^[0-9a-f]{64}$/);
    expect(users[1]).toBe(users[0]);
    expect(users[2]).not.toBe(users[0]);
    expect(users[0]).not.toBe(createHash('sha256').update('alice@example.com').digest('hex'));
    expect(JSON.stringify(fake.calls.map((c) => c.body))).not.toMatch(/alice|bob|deadline/);
  });

  it('sends aspect_ratio and resolution only when set', async () => {
    await provider({ aspectRatio: '3:4', resolution: '2k' }).generate({ prompt: 'x', userId: 'u' }, signal());
    await provider({ resolution: '1k' }).generate({ prompt: 'x', userId: 'u' }, signal());
    expect(fake.calls[0].body).toMatchObject({ aspect_ratio: '3:4', resolution: '2k' });
    expect(fake.calls[1].body).toMatchObject({ resolution: '1k' });
    expect(fake.calls[1].body).not.toHaveProperty('aspect_ratio');
    for (const { body } of fake.calls) for (const refused of ['size', 'quality', 'style']) expect(body).not.toHaveProperty(refused);
  });

  it("sends grok-imagine-image-2.0's quality, 1.5k and 21:9 as set", async () => {
    await provider({ model: 'grok-imagine-image-2.0', quality: 'high', resolution: '1.5k', aspectRatio: '21:9' }).generate(
      { prompt: 'x', userId: 'u' },
      signal(),
    );
    await provider({ model: 'grok-imagine-image-2.0', quality: 'low' }).generate({ prompt: 'x', userId: 'u' }, signal());
    expect(fake.calls[0].body).toEqual({
      model: 'grok-imagine-image-2.0',
      prompt: 'x',
      n: 1,
      response_format: 'b64_json',
      user: hashUserId('u'),
      quality: 'high',
      resolution: '1.5k',
      aspect_ratio: '21:9',
    });
    expect(fake.calls[1].body).toMatchObject({ quality: 'low' });
    expect(fake.calls[1].body).not.toHaveProperty('resolution');
    expect(fake.calls[1].body).not.toHaveProperty('aspect_ratio');
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

  it('without mime_type reads the type from the bytes, and leaves out absent usage', async () => {
    fake.script([
      { status: 200, json: { data: [{ b64_json: TINY_PNG_BASE64 }] } },
      { status: 200, json: { data: [{ b64_json: JPEG.toString('base64') }] } },
      { status: 200, json: { data: [{ b64_json: `data:image/jpeg;base64,${WEBP.toString('base64')}` }] } },
    ]);
    expect(await provider().generate({ prompt: 'x', userId: 'user-1' }, signal())).toEqual({ base64: TINY_PNG_BASE64, mimeType: 'image/png' });
    expect((await provider().generate({ prompt: 'x', userId: 'user-1' }, signal())).mimeType).toBe('image/jpeg');
    expect((await provider().generate({ prompt: 'x', userId: 'user-1' }, signal())).mimeType).toBe('image/webp');
  });

  it('never labels a PNG as JPEG, whatever mime_type says', async () => {
    fake.script([{ status: 200, json: { data: [{ b64_json: TINY_PNG_BASE64, mime_type: 'image/jpeg' }] } }]);
    expect((await provider().generate({ prompt: 'x', userId: 'user-1' }, signal())).mimeType).toBe('image/png');
  });

  it('takes mime_type for bytes it does not recognise, lower-cased, and only when it is an image type', async () => {
    fake.script([
      { status: 200, json: { data: [{ b64_json: UNKNOWN.toString('base64'), mime_type: 'Image/AVIF' }] } },
      { status: 200, json: { data: [{ b64_json: UNKNOWN.toString('base64'), mime_type: 'image/png"><script>alert(1)</script>' }] } },
      { status: 200, json: { data: [{ b64_json: UNKNOWN.toString('base64'), mime_type: 'text/html' }] } },
      { status: 200, json: { data: [{ b64_json: Buffer.from('<svg onload="alert(1)"/>').toString('base64'), mime_type: 'image/svg+xml' }] } },
      { status: 200, json: { data: [{ b64_json: UNKNOWN.toString('base64') }] } },
    ]);
    expect((await provider().generate({ prompt: 'x', userId: 'user-1' }, signal())).mimeType).toBe('image/avif');
    for (let i = 0; i < 4; i++) {
      const err = await failure();
      expect(err).toMatchObject({ code: 'GENERATION_FAILED', transient: false });
      expect(err.message).toMatch(/unknown type/);
    }
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

  it('types a download by its bytes first, then mime_type, then Content-Type', async () => {
    fake.setFile('png-said-jpeg', { status: 200, body: TINY_PNG, headers: { 'Content-Type': 'image/jpeg' } });
    fake.setFile('gif-octets', { status: 200, body: GIF, headers: { 'Content-Type': 'application/octet-stream' } });
    fake.setFile('odd', { status: 200, body: UNKNOWN, headers: { 'Content-Type': 'image/png' } });
    fake.setFile('odd-octets', { status: 200, body: UNKNOWN, headers: { 'Content-Type': 'application/octet-stream' } });
    fake.script([
      { status: 200, json: { data: [{ url: fake.fileUrl('png-said-jpeg'), mime_type: 'image/jpeg' }] } },
      { status: 200, json: { data: [{ url: fake.fileUrl('gif-octets') }] } },
      { status: 200, json: { data: [{ url: fake.fileUrl('odd'), mime_type: 'image/heic' }] } },
      { status: 200, json: { data: [{ url: fake.fileUrl('odd') }] } },
      { status: 200, json: { data: [{ url: fake.fileUrl('odd-octets') }] } },
    ]);
    const mimeOf = async (): Promise<string> => (await provider().generate({ prompt: 'x', userId: 'user-1' }, signal())).mimeType;
    expect(await mimeOf()).toBe('image/png');
    expect(await mimeOf()).toBe('image/gif');
    expect(await mimeOf()).toBe('image/heic');
    expect(await mimeOf()).toBe('image/png');
    expect(await failure()).toMatchObject({ code: 'GENERATION_FAILED', transient: false });
    // An unusable paid file is not downloaded again.
    expect(fake.downloads).toHaveLength(5);
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
    fake.script([{ status: 400, json: { code: 'Client specified an invalid argument', error: 'Prompt is too long' } }]);
    const err = await failure();
    expect(err).toMatchObject({ code: 'GENERATION_FAILED', transient: false, status: 400 });
    expect(err.message).toBe('Image API 400: Prompt is too long');
  });

  it('a 400 about moderation that also names a field is still CONTENT_REJECTED', async () => {
    fake.script([
      { status: 400, json: { code: 'Client specified an invalid argument', error: 'Generated image at quality high rejected by content moderation.' } },
    ]);
    expect(await failure()).toMatchObject({ code: 'CONTENT_REJECTED', kind: 'permanent', status: 400, alert: undefined });
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
    expect(await failure()).toMatchObject({ code: 'GENERATION_FAILED', kind: 'misconfiguration', transient: false, status, alert: 'misconfiguration' });
  });

  it('other 4xx are permanent but not a misconfiguration', async () => {
    fake.script([
      { status: 400, json: { error: 'Prompt is too long' } },
      { status: 400, json: { code: 'Client specified an invalid argument', error: 'The user prompt cannot be empty' } },
      { status: 409, json: { error: 'Conflict' } },
    ]);
    for (const status of [400, 400, 409]) {
      expect(await failure()).toMatchObject({ code: 'GENERATION_FAILED', kind: 'permanent', status, alert: undefined });
    }
  });

  it.each([
    [400, { code: 'Client specified an invalid argument', error: 'Argument not supported: quality' }],
    [400, { code: 'Client specified an invalid argument', error: 'Argument not supported: size' }],
    [400, { error: { message: 'Invalid aspect_ratio 7:3: not one of the supported ratios', type: 'invalid_request_error', code: 'invalid_argument' } }],
    [400, { code: 'Client specified an invalid argument', error: 'Unsupported resolution 4k for this model' }],
    [422, { error: { message: 'quality must be one of low, medium, high', type: 'invalid_request_error', code: 'x' } }],
    [400, { code: 'Client specified an invalid argument', error: 'The model grok-imagine-image-9 does not exist or you do not have access to it' }],
    [400, { error: { message: "Invalid value for 'response_format'", type: 'invalid_request_error', code: 'x' } }],
    [400, { code: 'Client specified an invalid argument', error: 'n must be between 1 and 10' }],
    [400, { code: 'Client specified an invalid argument', error: "Invalid field 'user': too long" }],
  ])('%i %j names a request field: a misconfiguration, not retried', async (status, json) => {
    fake.script([{ status, json }]);
    expect(await failure()).toMatchObject({ code: 'GENERATION_FAILED', kind: 'misconfiguration', transient: false, status, alert: 'misconfiguration' });
  });

  it('a field named only inside the quoted prompt is not a misconfiguration', async () => {
    const prompt = 'a high quality model of a sailing ship';
    fake.script([{ status: 400, json: { code: 'Client specified an invalid argument', error: `Could not read the prompt "${prompt}"` } }]);
    const err = await failure(provider(), prompt);
    expect(err).toMatchObject({ code: 'GENERATION_FAILED', kind: 'permanent', status: 400 });
    expect(err.message).toBe('Image API 400: Could not read the prompt "[prompt]"');
  });

  it('a 5xx naming a field is still transient', async () => {
    fake.script([{ status: 503, json: { error: 'model overloaded' } }]);
    expect(await failure()).toMatchObject({ kind: 'transient', transient: true, status: 503 });
  });

  it('429 with Retry-After is the rate limit: transient, rateLimited, and says how long to wait', async () => {
    fake.script([{ status: 429, json: { error: 'Too many requests' }, headers: { 'Retry-After': '3' } }]);
    const err = await failure();
    expect(err).toMatchObject({ code: 'GENERATION_FAILED', kind: 'rateLimited', transient: true, status: 429, retryAfterMs: 3000 });
    expect(err.alert).toBeUndefined();
  });

  it('429 without Retry-After is the rate limit with no wait of its own', async () => {
    fake.script([{ status: 429, json: { error: { message: 'slow down', type: 'rate_limit_exceeded', code: 'rate_limit' } } }]);
    const err = await failure();
    expect(err).toMatchObject({ kind: 'rateLimited', transient: true });
    expect(err.retryAfterMs).toBeUndefined();
  });

  it.each([
    [429, { code: 'Too many requests', error: 'Your team has either used all available credits or reached its monthly spending limit.' }],
    [429, { error: { message: 'quota exhausted', type: 'insufficient_quota', code: 'x' } }],
    [403, { code: 'Forbidden', error: 'Your team has run out of credits. Purchase more to continue.' }],
    [403, { error: { message: 'Monthly spending limit reached', type: 'forbidden', code: 'permission_denied' } }],
    [403, { error: { message: 'Access denied', type: 'billing_error', code: 'x' } }],
  ])('%i %j is used-up money: permanent, alert billing, not a rate limit or misconfiguration', async (status, json) => {
    fake.script([{ status, json, headers: { 'Retry-After': '3' } }]);
    const err = await failure();
    expect(err).toMatchObject({ code: 'GENERATION_FAILED', kind: 'billing', transient: false, status, alert: 'billing' });
    // Money is not load: the Retry-After the answer carried does not make it a wait.
    expect(err.retryAfterMs).toBeUndefined();
  });

  it.each([408, 500, 503])('%i is transient, not a rate limit', async (status) => {
    fake.script([{ status, body: 'try later' }]);
    expect(await failure()).toMatchObject({ code: 'GENERATION_FAILED', kind: 'transient', transient: true, status });
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
    const err = await failure(provider({ timeoutMs: 200 }));
    expect(err).toMatchObject({ code: 'GENERATION_FAILED', transient: true });
    expect(err.message).toBe('Image API did not answer within 200 ms');
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

describe('sniffImageType', () => {
  it.each([
    ['PNG', TINY_PNG, 'image/png'],
    ['JPEG', JPEG, 'image/jpeg'],
    ['WebP', WEBP, 'image/webp'],
    ['GIF89a', GIF, 'image/gif'],
    ['GIF87a', Buffer.from('GIF87a', 'latin1'), 'image/gif'],
  ])('recognises %s', (_name, bytes, mime) => {
    expect(sniffImageType(bytes)).toBe(mime);
  });

  it.each([
    ['text', UNKNOWN],
    ['nothing', Buffer.alloc(0)],
    ['a cut PNG signature', TINY_PNG.subarray(0, 7)],
    ['RIFF that is not WebP', Buffer.concat([Buffer.from('RIFF'), Buffer.alloc(4), Buffer.from('WAVE')])],
  ])('does not guess for %s', (_name, bytes) => {
    expect(sniffImageType(bytes)).toBeUndefined();
  });
});
