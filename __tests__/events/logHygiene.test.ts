import { JWT_SECRET, isFinal, signToken, waitUntil } from '../support/helpers';
import { TestSystem, useTestSystem } from '../support/harness';

/**
 * Runs jobs with known secrets through the real worker at the most verbose level and reads every log
 * line: the token, the API key, the JWT secret and the image never appear; the prompt only at debug.
 */
describe('log hygiene', () => {
  let sys: TestSystem;
  useTestSystem('loghygiene', (s) => (sys = s));

  const API_KEY = 'xai-test-key-SECRET';
  const IMAGE = Buffer.from('distinctive-image-bytes-'.repeat(20)).toString('base64');
  const PROMPT = 'a zebra painting the Eiffel tower in ultramarine';

  it('keeps tokens, keys and images out of every line, and the prompt out of every line but debug', async () => {
    const alice = await sys.user('alice');
    sys.xai.script([
      { status: 200, json: { data: [{ b64_json: IMAGE, mime_type: 'image/png', revised_prompt: PROMPT }] } },
      // Error bodies that echo the key and the prompt back, as real APIs sometimes do.
      { status: 401, json: { error: `Incorrect API key provided: ${API_KEY}. Prompt was: ${PROMPT}` } },
      { status: 400, json: { error: { message: `Bad request for key ${API_KEY}`, type: 'invalid_request_error' } } },
    ]);
    await sys.startWorker({ LOG_LEVEL: 'trace', GROK_API_KEY: API_KEY });

    const tokens = [signToken('alice'), signToken('alice'), signToken('alice'), signToken('alice', { expiresInS: -60 }), signToken('bob')];
    for (const [i, Token] of tokens.entries()) await sys.enqueue({ Id: 'alice', Prompt: PROMPT, Token, Number: i });
    // A token in the wrong field, and a job whose data is junk around a token.
    await sys.enqueue({ Id: 'alice', Prompt: tokens[0], Token: 42, Number: 5 });
    await sys.producer.add({ Token: tokens[0], Prompt: PROMPT }, { attempts: 1, removeOnComplete: true, removeOnFail: true });
    for (let n = 0; n <= 5; n++) await alice.waitFor((p) => p.Number === n && isFinal(p));
    // The last job has no Id, so nobody is told: its end shows only in the log.
    await waitUntil(() => sys.logs.jobEnds().length >= 7, 15_000, 'all seven job ends');
    expect(sys.logs.jobEnds()).toHaveLength(7);

    const secrets = { token: tokens, apiKey: [API_KEY], jwtSecret: [JWT_SECRET], image: [IMAGE] };
    for (const [what, values] of Object.entries(secrets)) {
      for (const value of values) {
        const leaks = sys.logs.raw.filter((line) => line.includes(value));
        expect({ what, leaks }).toEqual({ what, leaks: [] });
      }
    }
    const promptLines = sys.logs.lines.filter((l) => JSON.stringify(l).includes(PROMPT));
    expect(promptLines.length).toBeGreaterThan(0);
    expect(promptLines.every((l) => l.level === 'debug')).toBe(true);
  });
});
