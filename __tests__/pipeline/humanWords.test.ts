import fc from 'fast-check';
import { USER_MESSAGES } from '../../src/base/errors';
import { GrokImageProvider } from '../../src/pipeline/steps/grokProvider';
import { createLogger } from '../../src/base/logger';
import { buildPayload, LegacyPayload, SchemaPayload } from '../../src/pipeline/steps/payload';
import { failureEvent, runJob } from '../../src/pipeline/runJob';
import type { JobEvent } from '../../src/pipeline/ports';
import { FakeResponse, FakeXai, startFakeXai, TINY_PNG_BASE64 } from '../support/fakeXai';
import { recordingNotifier } from '../support/helpers';

/**
 * Whatever the prompt and whatever the image API answers, a person is shown one of the fixed sentences
 * (or, on success, the image as a data URL): never API or HTTP text, a stack, or their own input echoed.
 * Runs the real provider against a local server, the real pipeline and both payload builders.
 */

const API_KEY = 'xai-property-key-7f3a9c';
const SUFFIX = '_Grok_Image_Generator';
const SENTENCES = new Set(Object.values(USER_MESSAGES));
const DATA_URL = /^data:image\/[a-z0-9][a-z0-9.+-]*;base64,[A-Za-z0-9+/]+=*$/;

const nasty = fc.constantFrom(
  '<script>alert(1)</script>',
  '<img src=x onerror=alert(1)>',
  '</div><h1>owned</h1>',
  'Generated image rejected by content moderation.',
  'Your team has used all available credits or reached its monthly spending limit.',
  'TypeError: x is undefined\n    at Object.<anonymous> (/app/dist/pipeline.js:10:5)',
  'Image API 500: internal',
  'Session expired. Please log in again.<script>',
  '"; DROP TABLE users; --',
  '\u0000\u202e\ufeff',
  '{{7*7}}',
);

/** Text that may echo the prompt or the key back, as some APIs do. */
type Piece = string | { echo: 'prompt' | 'key' };
const textSpec = fc.array(
  fc.oneof(fc.constant<Piece>({ echo: 'prompt' }), fc.constant<Piece>({ echo: 'key' }), nasty, fc.string({ unit: 'grapheme', maxLength: 40 })),
  { maxLength: 4 },
);
const render = (spec: Piece[], prompt: string): string => spec.map((p) => (typeof p === 'string' ? p : p.echo === 'prompt' ? prompt : API_KEY)).join(' ');

const hostilePrompt = fc.oneof(
  fc.string({ unit: 'grapheme', maxLength: 120 }),
  nasty,
  fc.tuple(fc.string({ maxLength: 30 }), nasty, fc.string({ maxLength: 30 })).map((parts) => parts.join('')),
);

const errorStatus = fc.constantFrom(400, 401, 403, 404, 408, 409, 413, 422, 429, 500, 502, 503, 504);
const headers = fc.option(fc.record({ 'Retry-After': fc.oneof(fc.constantFrom('0', '1', 'soon'), fc.string({ maxLength: 10 })) }), { nil: undefined });

/** What the API answers, built once the prompt is known (so it can be echoed). */
type AnswerSpec = (prompt: string) => FakeResponse;

const errorAnswer: fc.Arbitrary<AnswerSpec> = fc.oneof(
  fc.record({ status: errorStatus, message: textSpec, type: textSpec, code: textSpec, headers }).map((a) => (prompt: string) => ({
    status: a.status,
    headers: a.headers,
    json: { error: { message: render(a.message, prompt), type: render(a.type, prompt), code: render(a.code, prompt) } },
  })),
  fc
    .record({ status: errorStatus, code: textSpec, error: textSpec, headers })
    .map((a) => (prompt: string) => ({ status: a.status, headers: a.headers, json: { code: render(a.code, prompt), error: render(a.error, prompt) } })),
  fc
    .record({ status: errorStatus, text: textSpec, headers })
    .map((a) => (prompt: string) => ({ status: a.status, headers: a.headers, body: render(a.text, prompt) })),
  fc.record({ status: errorStatus, value: fc.jsonValue() }).map((a) => () => ({ status: a.status, json: a.value })),
);

const okAnswer: fc.Arbitrary<AnswerSpec> = fc.oneof(
  fc
    .record({
      image: fc.constantFrom(TINY_PNG_BASE64, Buffer.from('not an image').toString('base64')),
      mime: fc.option(fc.oneof(fc.constantFrom('image/png', 'image/jpeg', 'text/html', 'image/png"><script>alert(1)</script>'), textSpec), { nil: undefined }),
      revised: textSpec,
    })
    .map((a) => (prompt: string) => ({
      status: 200,
      json: {
        data: [{ b64_json: a.image, mime_type: Array.isArray(a.mime) ? render(a.mime, prompt) : a.mime, revised_prompt: render(a.revised, prompt) }],
        usage: { cost_in_usd_ticks: 200_000_000 },
      },
    })),
  fc.constantFrom<AnswerSpec>(
    () => ({ status: 200, json: { data: [] } }),
    () => ({ status: 200, json: { data: [{ b64_json: TINY_PNG_BASE64, respect_moderation: false }] } }),
    () => ({ status: 200, json: { data: [{ revised_prompt: 'no image' }] } }),
  ),
  textSpec.map((t) => (prompt: string) => ({ status: 200, body: render(t, prompt) })),
);

let xai: FakeXai;
beforeAll(async () => {
  xai = await startFakeXai();
});
afterAll(async () => {
  await xai.close();
});

/** The human text of `event` in both formats (legacy sends no progress: null). */
function humanTexts(event: JobEvent): { legacy: string | null; schema: string | null } {
  const legacy = buildPayload('legacy', event, SUFFIX) as LegacyPayload | null;
  const schema = buildPayload('schema', event, SUFFIX) as SchemaPayload;
  return { legacy: legacy?.Message ?? null, schema: schema.error };
}

describe('words shown to people', () => {
  it('are a fixed sentence per code (or the data URL) for any prompt and any image API answer', async () => {
    const provider = new GrokImageProvider({ apiUrl: xai.url, apiKey: API_KEY, model: 'grok-imagine-image', timeoutMs: 5000, retryDelay: () => 0 });
    const logger = createLogger('silent');
    await fc.assert(
      fc.asyncProperty(hostilePrompt, fc.oneof(errorAnswer, okAnswer), fc.string({ maxLength: 20 }), async (prompt, answer, prefix) => {
        xai.setDefault(answer(prompt));
        const notifier = recordingNotifier();
        const { events } = notifier;
        const outcome = await runJob(
          { jobId: '1', data: { Id: 'alice', Token: 't', Prompt: prompt, Number: 1 }, attempt: 1, maxAttempts: 1, createdAt: 1 },
          {
            verifier: { verify: async () => undefined },
            provider,
            notifier,
            checkpoints: { load: async () => null, save: async () => undefined },
            logger,
            settings: { promptPrefix: prefix, promptMaxLength: 1000, maxRetries: 1, notifyProgress: true },
            retryDelay: () => 0,
          },
          new AbortController().signal,
        );

        // The failure as the queue tells it (the pipeline tells only pictures).
        if (!outcome.delivered) events.push(failureEvent('1', outcome.owner!, outcome.error.code));
        const final = events[events.length - 1];
        expect(final.status).toBe(outcome.delivered ? 'completed' : 'failed');
        for (const event of events) {
          const { legacy, schema } = humanTexts(event);
          if (event.status === 'completed') {
            expect(legacy).toMatch(DATA_URL);
            expect(schema).toBeNull();
          } else if (event.status === 'failed') {
            expect(SENTENCES.has(legacy!)).toBe(true);
            expect(schema).toBe(legacy);
            expect(legacy).toBe(USER_MESSAGES[event.error!.code as keyof typeof USER_MESSAGES]);
          } else {
            expect([legacy, schema]).toEqual([null, null]);
          }
        }
        // The details go to the log line, without the key.
        if (!outcome.delivered) expect(outcome.error.message).not.toContain(API_KEY);
      }),
      { numRuns: 300 },
    );
  });

  it('come from the code alone, whatever text an event carries', () => {
    const codes = fc.constantFrom(...(Object.keys(USER_MESSAGES) as Array<keyof typeof USER_MESSAGES>), 'UNKNOWN', '__proto__');
    fc.assert(
      fc.property(codes, fc.oneof(fc.string(), nasty), fc.jsonValue(), (code, message, number) => {
        const event = { userId: 'u', number, jobId: '1', status: 'failed' as const, error: { code, message } };
        const { legacy, schema } = humanTexts(event);
        expect(SENTENCES.has(legacy!)).toBe(true);
        expect(schema).toBe(legacy);
      }),
    );
  });
});
