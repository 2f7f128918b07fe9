import { createHash } from 'node:crypto';
import { PNG } from 'pngjs';
import { sleep } from '../../base/sleep';
import type { GeneratedImage, ImageProvider, ImageRequest } from '../ports';

export interface LocalProviderOptions {
  /** Width and height in pixels, 16..1024. Default 256. */
  size?: number;
  /** Simulated API latency, cancellable by the caller's signal. Default 0. */
  delayMs?: number;
}

const GRID = 8;

/**
 * Offline stand-in for the image API (IMAGE_PROVIDER=local): the same prompt always gives the same
 * PNG, a mirrored 8x8 pattern on a gradient, all derived from the prompt's sha256. Costs nothing.
 */
export class LocalImageProvider implements ImageProvider {
  private readonly size: number;
  private readonly delayMs: number;

  constructor(options: LocalProviderOptions = {}) {
    this.size = options.size ?? 256;
    this.delayMs = options.delayMs ?? 0;
    if (!Number.isInteger(this.size) || this.size < 16 || this.size > 1024) {
      throw new RangeError(`size must be an integer from 16 to 1024, got ${options.size}`);
    }
    if (!Number.isFinite(this.delayMs) || this.delayMs < 0) {
      throw new RangeError(`delayMs must be a number >= 0, got ${options.delayMs}`);
    }
  }

  async generate({ prompt }: ImageRequest, signal: AbortSignal): Promise<GeneratedImage> {
    // Always sleeps, even for 0 ms, so an aborted signal is honoured like the real provider would.
    await sleep(this.delayMs, signal);
    return { base64: renderPng(prompt, this.size).toString('base64'), mimeType: 'image/png', costUsd: 0 };
  }
}

function renderPng(prompt: string, size: number): Buffer {
  const h = createHash('sha256').update(prompt, 'utf8').digest();
  const top = [h[0], h[1], h[2]];
  const bottom = [h[3], h[4], h[5]];
  const ink = [h[6] ^ 0x80, h[7] ^ 0x80, h[8] ^ 0x80];
  const bits = h.readUInt32BE(9);
  const margin = Math.floor(size / 8);
  const cell = (size - 2 * margin) / GRID;

  const png = new PNG({ width: size, height: size });
  for (let y = 0; y < size; y++) {
    const t = y / (size - 1);
    const row = Math.floor((y - margin) / cell);
    for (let x = 0; x < size; x++) {
      const col = Math.floor((x - margin) / cell);
      const inGrid = row >= 0 && row < GRID && col >= 0 && col < GRID;
      // Mirror the left half so the pattern reads as a symbol rather than noise.
      const half = col < GRID / 2 ? col : GRID - 1 - col;
      const on = inGrid && ((bits >>> (row * (GRID / 2) + half)) & 1) === 1;
      const i = (y * size + x) * 4;
      for (let c = 0; c < 3; c++) {
        png.data[i + c] = on ? ink[c] : Math.round(top[c] + (bottom[c] - top[c]) * t);
      }
      png.data[i + 3] = 255;
    }
  }
  // Rows are flat apart from the pattern, so the "Sub" filter alone compresses well and skips
  // pngjs's adaptive search, which would triple the render time.
  return PNG.sync.write(png, { filterType: 1 });
}
