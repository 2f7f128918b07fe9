import { USER_MESSAGES } from '../../../src/base/errors';
import { hashUserId } from '../../../src/pipeline/steps/grokProvider';
import { TINY_PNG_BASE64 } from '../../support/fakeXai';
import { isFinal, signToken, waitUntil } from '../../support/helpers';
import { TestSystem, useTestSystem } from '../../support/harness';

/** grok-imagine-image-2.0 as an operator would set it up: from the environment to the request xAI receives. */
describe("xAI's image settings, end to end", () => {
  let sys: TestSystem;
  useTestSystem('grok-settings', (s) => (sys = s));

  const GROK_2_0 = { GROK_MODEL: 'grok-imagine-image-2.0', GROK_QUALITY: 'high', GROK_RESOLUTION: '1.5k', GROK_ASPECT_RATIO: '21:9' };

  it('sends the model, quality, resolution and aspect ratio as set, and the browser gets the picture', async () => {
    const alice = await sys.user('alice');
    await sys.startWorker(GROK_2_0);
    await sys.enqueue({ Id: 'alice', Prompt: 'a lighthouse at dawn', Token: signToken('alice'), Number: 2 });

    expect(await alice.waitFor(isFinal)).toEqual({ Message: `data:image/png;base64,${TINY_PNG_BASE64}`, Status: true, Number: 2 });
    expect(sys.xai.calls.map((c) => c.body)).toEqual([
      {
        model: 'grok-imagine-image-2.0',
        prompt: 'a lighthouse at dawn',
        n: 1,
        response_format: 'b64_json',
        user: hashUserId('alice'),
        aspect_ratio: '21:9',
        resolution: '1.5k',
        quality: 'high',
      },
    ]);
    expect(sys.logs.lines.find((l) => l.msg === 'starting')).toMatchObject({
      settings: expect.objectContaining({
        grok: expect.objectContaining({ model: 'grok-imagine-image-2.0', quality: 'high', resolution: '1.5k', aspectRatio: '21:9' }),
      }),
    });
  });

  it('a setting xAI refuses ends the job GENERATION_FAILED with a misconfiguration alert, without retrying', async () => {
    const alice = await sys.user('alice');
    await sys.startWorker(GROK_2_0);
    sys.xai.script([{ status: 400, json: { code: 'Client specified an invalid argument', error: 'Argument not supported: quality' } }]);
    await sys.enqueue({ Id: 'alice', Prompt: 'a lighthouse at dawn', Token: signToken('alice'), Number: 2 });

    expect(await alice.waitFor(isFinal)).toEqual({ Message: USER_MESSAGES.GENERATION_FAILED, Status: false, Number: 2 });
    await waitUntil(() => sys.ends().length === 1, 15_000, 'the job-end line');
    expect(sys.ends()[0]).toMatchObject({
      level: 'error',
      outcome: 'failed',
      code: 'GENERATION_FAILED',
      alert: 'misconfiguration',
      hint: expect.stringContaining('GROK_QUALITY'),
      error: { message: 'Image API 400: Argument not supported: quality', code: 'GENERATION_FAILED', status: 400 },
    });
    expect(sys.xai.calls).toHaveLength(1);
  });
});
