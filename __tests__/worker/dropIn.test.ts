import Bull from 'bull';
import { RedisServer, startRedisServer } from '../../src/demo/redisServer';
import { USER_MESSAGES } from '../../src/base/errors';
import { PRODUCER_DEFAULTS } from '../../src/producer';
import { isFinal } from '../support/helpers';
import { spawnWorker, TestSystem, useTestSystem } from '../support/harness';
import { startStorybangJwt, StorybangJwt } from '../support/storybangJwt';

/** The original worker's house style, word for word from its code, closing space included. */
const HOUSE_STYLE =
  'Generate an image in the style of Studio Ghibli: soft colors, warm lighting, expressive anime-style eyes, hand-drawn look, and whimsical, gentle atmosphere. ';

const MODERATED = {
  status: 400,
  json: { code: 'Client specified an invalid argument', error: 'Generated image rejected by content moderation.' },
};

/**
 * The replacement as StoryBang would deploy it: the original worker's `.env` and nothing else (plus GROK_API, to
 * reach a local stand-in for xAI), StoryBang's JWT service as it answers, and a relay that forwards only
 * {Message, Status, Number} of `Profile`. What the browser receives is checked field by field.
 */
describe('drop-in for the StoryBang worker', () => {
  let sys: TestSystem;
  useTestSystem('dropin', (s) => (sys = s));
  let redis: RedisServer;
  let jwtService: StorybangJwt;
  let producer: Bull.Queue;
  beforeEach(async () => {
    redis = await startRedisServer();
    jwtService = await startStorybangJwt();
    // The original queue name: this Redis is the test's own.
    producer = new Bull('Grok_Image_Generator', { redis: { host: '127.0.0.1', port: redis.port } });
  });
  afterEach(async () => {
    await producer.close();
    await jwtService.close();
    await redis.stop();
  });

  it('works from the original .env alone: an image in the original look, the original sentence for an expired session, a sentence for a moderated prompt', async () => {
    const originalEnv = {
      BULL_GENERATOR_HOST: '127.0.0.1',
      BULL_GENERATOR_PORT: String(redis.port),
      PORT_MESSAGES_USERS: sys.relay.url,
      API_JWT: jwtService.baseUrl,
      API_GROK: 'xai-original-key',
      PORT: '4000',
      GROK_API: sys.xai.url,
    };
    const worker = spawnWorker(originalEnv);
    sys.processes.push(worker);
    await worker.ready;
    expect(worker.logs.find((l) => l.msg === 'starting')).toMatchObject({
      settings: expect.objectContaining({
        legacyNames: expect.arrayContaining(['BULL_GENERATOR_HOST', 'BULL_GENERATOR_PORT', 'API_JWT', 'API_GROK']),
        originalLook: true,
        promptPrefix: HOUSE_STYLE,
        promptMaxLength: 700,
      }),
    });

    const alice = await sys.user('alice');
    const bob = await sys.user('bob');
    const carol = await sys.user('carol');
    // Exactly what the front end's server does: a fresh token per request from Create_Jwt, the job added as is.
    const ask = async (Id: string, Prompt: string, Number: number, Token?: string): Promise<void> => {
      await producer.add({ Id, Prompt, Token: Token ?? (await jwtService.create(Id)), Number }, { ...PRODUCER_DEFAULTS });
    };

    sys.xai.script([MODERATED]);
    await ask('carol', 'a scene the moderation refuses', 0);
    expect(await carol.waitFor(isFinal)).toEqual({ Status: false, Message: USER_MESSAGES.CONTENT_REJECTED, Number: 0 });

    await ask('alice', 'a lighthouse at dawn', 3);
    const image = await alice.waitFor(isFinal);
    expect(Object.keys(image).sort()).toEqual(['Message', 'Number', 'Status']);
    expect(image).toMatchObject({ Status: true, Number: 3 });
    expect(image.Message).toMatch(/^data:image\/png;base64,[A-Za-z0-9+/]+=*$/);
    expect(sys.xai.calls[1].headers.authorization).toBe('Bearer xai-original-key');
    expect(sys.xai.calls.map((c) => (c.body as { prompt: string }).prompt)).toEqual([
      `${HOUSE_STYLE}a scene the moderation refuses`,
      `${HOUSE_STYLE}a lighthouse at dawn`,
    ]);
    expect(sys.xai.calls[1].body).toMatchObject({ model: 'grok-imagine-image' });

    // The original's cut: a prompt longer than 700 characters loses its last words, not half of one.
    const words = Array.from({ length: 120 }, (_, i) => `page${i}`);
    const long = words.join(' ');
    let kept = '';
    for (const word of words) {
      const next = kept ? `${kept} ${word}` : word;
      if (next.length > 700) break;
      kept = next;
    }
    expect(long.length).toBeGreaterThan(800);
    expect(long[700]).not.toBe(' ');
    await ask('alice', long, 4);
    expect(await alice.waitFor((p) => p.Number === 4)).toMatchObject({ Status: true, Number: 4 });
    const cut = (sys.xai.calls[2].body as { prompt: string }).prompt;
    expect(cut).toBe(HOUSE_STYLE + kept);
    expect(cut.length - HOUSE_STYLE.length).toBeLessThanOrEqual(700);
    expect(cut.length - HOUSE_STYLE.length).toBeGreaterThan(690);
    expect(long.startsWith(`${kept} `)).toBe(true);

    await ask('bob', 'a fox', 1, jwtService.expired('bob'));
    expect(await bob.waitFor(isFinal)).toEqual({ Status: false, Message: 'Session expired. Please log in again.', Number: 1 });
    // A token the service minted for someone else opens no other room.
    await ask('bob', 'a fox', 2, await jwtService.create('alice'));
    expect(await bob.waitFor((p) => p.Number === 2)).toEqual({ Status: false, Message: 'Session expired. Please log in again.', Number: 2 });

    expect(sys.xai.calls).toHaveLength(3);
    expect(alice.received).toHaveLength(2);
    // The JWT service is asked at most once per ask, though the worker checks each token twice (vetting, then the
    // run); two asks with the same token for the same user (minted in the same second) share one answer.
    expect(jwtService.verifyRequests.length).toBeGreaterThanOrEqual(4);
    expect(jwtService.verifyRequests.length).toBeLessThanOrEqual(5);
  });
});
