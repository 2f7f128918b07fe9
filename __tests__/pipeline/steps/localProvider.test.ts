import { PNG } from 'pngjs';
import { LocalImageProvider } from '../../../src/pipeline/steps/localProvider';

const signal = (): AbortSignal => new AbortController().signal;

function decode(base64: string): PNG {
  return PNG.sync.read(Buffer.from(base64, 'base64'));
}

describe('LocalImageProvider', () => {
  it('renders a real PNG of the configured size at no cost', async () => {
    const image = await new LocalImageProvider().generate({ prompt: 'a lighthouse at dusk', userId: 'user-1' }, signal());
    expect(image.mimeType).toBe('image/png');
    expect(image.costUsd).toBe(0);
    const png = decode(image.base64);
    expect([png.width, png.height]).toEqual([256, 256]);

    const small = decode((await new LocalImageProvider({ size: 64 }).generate({ prompt: 'x', userId: 'user-1' }, signal())).base64);
    expect([small.width, small.height]).toEqual([64, 64]);
  });

  it('draws more than one colour', async () => {
    const png = decode((await new LocalImageProvider().generate({ prompt: 'a lighthouse at dusk', userId: 'user-1' }, signal())).base64);
    const colours = new Set<number>();
    for (let i = 0; i < png.data.length; i += 4) colours.add(png.data.readUInt32BE(i));
    expect(colours.size).toBeGreaterThan(2);
  });

  it('is deterministic for the same prompt', async () => {
    const a = await new LocalImageProvider().generate({ prompt: 'same prompt', userId: 'user-1' }, signal());
    const b = await new LocalImageProvider().generate({ prompt: 'same prompt', userId: 'user-1' }, signal());
    expect(a.base64).toBe(b.base64);
  });

  it('differs for different prompts', async () => {
    const p = new LocalImageProvider();
    const a = decode((await p.generate({ prompt: 'a cat', userId: 'user-1' }, signal())).base64);
    const b = decode((await p.generate({ prompt: 'a dog', userId: 'user-1' }, signal())).base64);
    expect(a.data.equals(b.data)).toBe(false);
  });

  it('simulates latency and stops waiting when aborted', async () => {
    const controller = new AbortController();
    const run = new LocalImageProvider({ delayMs: 20_000 }).generate({ prompt: 'x', userId: 'user-1' }, controller.signal);
    setTimeout(() => controller.abort(), 20);
    await expect(run).rejects.toMatchObject({ name: 'AbortError' });
  });

  it('rejects nonsense sizes', () => {
    expect(() => new LocalImageProvider({ size: 0 })).toThrow(RangeError);
    expect(() => new LocalImageProvider({ size: 12.5 })).toThrow(RangeError);
    expect(() => new LocalImageProvider({ delayMs: -1 })).toThrow(RangeError);
  });
});
