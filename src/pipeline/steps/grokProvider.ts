import { createHash } from 'node:crypto';
import nodeFetch from 'node-fetch';
import { withDeadline } from '../../base/abort';
import {
  abortError,
  billingError,
  isAbortError,
  misconfigurationError,
  permanentError,
  rateLimitedError,
  transientError,
  WorkerError,
} from '../../base/errors';
import { isTransientStatus, parseRetryAfter, retryDelayMs, withRetries } from '../../base/retryPolicy';
import type { GeneratedImage, ImageProvider, ImageRequest } from '../ports';

type Fetch = typeof nodeFetch;

export interface GrokProviderOptions {
  /** The images endpoint, e.g. https://api.x.ai/v1/images/generations. */
  apiUrl: string;
  apiKey: string;
  /** Sent as is, e.g. grok-imagine-image or grok-2-image-1212. */
  model: string;
  /** Sent as `aspect_ratio` only when set (GROK_ASPECT_RATIO, its form checked by the config), e.g. `21:9`. */
  aspectRatio?: string;
  /** Sent as `resolution` only when set (GROK_RESOLUTION), e.g. `1.5k`. */
  resolution?: string;
  /** Sent as `quality` only when set (GROK_QUALITY), e.g. `high`; the 1.0 models refuse it. */
  quality?: string;
  /** Limit for each HTTP request (the API call, then the download of a `url` answer), body included. */
  timeoutMs: number;
  /** What a picture costs when the answer does not say (no usage.cost_in_usd_ticks), in USD. */
  listPriceUsd?: number;
  /** Extra attempts at downloading a `url` answer; the image is paid for, so the API is not asked again. Default 3. */
  downloadRetries?: number;
  /** Wait before download retry `attempt` (default: the shared backoff policy). */
  retryDelay?: (attempt: number, err: unknown) => number;
  /** Default: node-fetch. */
  fetch?: Fetch;
}

/** 401/403/404 mean the key, model or URL is wrong: an operator must act, retrying will not help. */
const MISCONFIGURATION_STATUSES = new Set([401, 403, 404]);
/** xAI has answered used-up credits and a reached spending limit with both. */
const BILLING_STATUSES = new Set([403, 429]);

const USD_PER_TICK = 1e-10;
const MODERATION = /moderat|content[ _-]?policy|safety|rejected by/i;
/**
 * A 400 or 422 that names one of the request's fields refuses a setting (GROK_MODEL, GROK_ASPECT_RATIO,
 * GROK_RESOLUTION, GROK_QUALITY) or something the worker always sends: every job would fail alike, so an operator
 * is alerted. `n` and `user` are words of prose too, so they count only where they read as a field's name.
 */
const NAMES_A_REQUEST_FIELD = [
  /argument not supported/i,
  /\bmodels?\b/i,
  /\baspect[ _]ratio\b/i,
  /\bresolution\b/i,
  /\bquality\b/i,
  /\bresponse[ _]format\b/i,
  fieldName('n'),
  fieldName('user'),
];
const OUT_OF_CREDITS = /credit|spending limit|quota|billing/i;
const MAX_DETAIL_CHARS = 300;
/** Hashed with the user's Id for `user`: xAI can tell users apart without learning who they are. */
const USER_HASH_NAMESPACE = 'grok-image-worker/user/v1:';
/** A media type safe to put into a data URL the front end shows as HTML. */
const IMAGE_MIME = /^image\/[a-z0-9][a-z0-9.+-]{0,63}$/;
/** SVG is a document that can carry script, not a picture the API renders: never labelled as one. */
const NOT_A_PICTURE = new Set(['image/svg+xml']);

interface ImageItem {
  b64_json?: unknown;
  url?: unknown;
  mime_type?: unknown;
  revised_prompt?: unknown;
  respect_moderation?: unknown;
}

/** xAI's image API: one attempt per call; retries belong to the caller. */
export class GrokImageProvider implements ImageProvider {
  private readonly fetch: Fetch;

  constructor(private readonly options: GrokProviderOptions) {
    this.fetch = options.fetch ?? nodeFetch;
  }

  /** `deadlineAt` belongs to the capacity layer; one request here is bounded by GROK_TIMEOUT_MS alone. */
  async generate({ prompt, userId }: ImageRequest, signal: AbortSignal): Promise<GeneratedImage> {
    const { apiUrl, apiKey } = this.options;
    const answer = await this.withTimeout('Image API', signal, async (s) => {
      const res = await this.fetch(apiUrl, {
        method: 'POST',
        headers: { Authorization: `Bearer ${apiKey}`, 'Content-Type': 'application/json' },
        body: JSON.stringify(this.requestBody(prompt, userId)),
        signal: s,
      });
      const text = await res.text();
      if (!res.ok) throw this.httpError(res.status, text, res.headers.get('retry-after'), prompt);
      return parseSuccess(text, res.status);
    });

    const { item, costUsd } = answer;
    const statedMime = imageMime(item.mime_type);
    let image: GeneratedImage;
    if (typeof item.b64_json === 'string' && item.b64_json !== '') {
      const base64 = stripDataUrl(item.b64_json);
      image = { base64, mimeType: mimeOrFail(sniffImageType(Buffer.from(base64.slice(0, 16), 'base64')) ?? statedMime) };
    } else {
      image = await this.downloadPaidImage(String(item.url), statedMime, signal);
    }
    if (typeof item.revised_prompt === 'string') image.revisedPrompt = item.revised_prompt;
    const cost = costUsd ?? this.options.listPriceUsd;
    if (cost !== undefined) image.costUsd = cost;
    return image;
  }

  /** Never `size` or `style`: xAI refuses them ("Argument not supported"). The image settings only when set. */
  private requestBody(prompt: string, userId: string): Record<string, unknown> {
    const { model, aspectRatio, resolution, quality } = this.options;
    const body: Record<string, unknown> = { model, prompt, n: 1, response_format: 'b64_json', user: hashUserId(userId) };
    if (aspectRatio) body.aspect_ratio = aspectRatio;
    if (resolution) body.resolution = resolution;
    if (quality) body.quality = quality;
    return body;
  }

  /**
   * The image behind a `url` answer is already paid for: a failed download is retried here, on its own,
   * and when it keeps failing the job fails permanently rather than letting the caller buy a new image.
   */
  private async downloadPaidImage(url: string, mimeType: string | undefined, signal: AbortSignal): Promise<GeneratedImage> {
    try {
      return await withRetries(() => this.download(url, mimeType, signal), {
        maxRetries: this.options.downloadRetries ?? 3,
        signal,
        delayFor: this.options.retryDelay ?? retryDelayMs,
      });
    } catch (err) {
      if (signal.aborted || !(err instanceof WorkerError) || !err.transient) throw err;
      throw permanentError('GENERATION_FAILED', `The image was generated but could not be downloaded: ${err.message}`, { cause: err });
    }
  }

  /** `url` answers point at short-lived files, so they are fetched now; the API key is not sent there. */
  private download(url: string, mimeType: string | undefined, signal: AbortSignal): Promise<GeneratedImage> {
    return this.withTimeout('Image download', signal, async (s) => {
      const res = await this.fetch(url, { signal: s });
      if (!res.ok) {
        const message = `Image download failed with status ${res.status}`;
        // No `status` on the error: a 404 here is an expired file, not a misconfigured API.
        if (isTransientStatus(res.status)) {
          throw transientError(message, { retryAfterMs: parseRetryAfter(res.headers.get('retry-after')) });
        }
        throw permanentError('GENERATION_FAILED', message);
      }
      const bytes = Buffer.from(await res.arrayBuffer());
      if (bytes.length === 0) throw transientError('Image download returned an empty file');
      // The bytes say best what the file is; a file server's Content-Type is the weakest hint.
      const contentType = imageMime((res.headers.get('content-type') ?? '').split(';')[0]);
      return { base64: bytes.toString('base64'), mimeType: mimeOrFail(sniffImageType(bytes) ?? mimeType ?? contentType) };
    });
  }

  /**
   * Runs one request under its own deadline and the caller's signal. The caller's abort comes back
   * as an AbortError (shutdown, not a failure); the deadline and network trouble as transient errors.
   */
  private async withTimeout<T>(what: string, signal: AbortSignal, work: (s: AbortSignal) => Promise<T>): Promise<T> {
    const { timeoutMs } = this.options;
    const request = withDeadline(signal, timeoutMs);
    try {
      return await work(request.signal);
    } catch (err) {
      if (signal.aborted) throw isAbortError(err) ? err : abortError(signal.reason);
      if (request.timedOut()) throw transientError(`${what} did not answer within ${timeoutMs} ms`, { cause: err });
      if (err instanceof WorkerError) throw err;
      throw transientError(`${what} request failed: ${reason(err)}`, { cause: err });
    } finally {
      request.dispose();
    }
  }

  private httpError(status: number, body: string, retryAfter: string | null, prompt: string): WorkerError {
    const { message, hint } = describeErrorBody(body, (detail) => this.redact(detail, prompt));
    const text = `Image API ${status}: ${message}`;
    if ((status === 400 || status === 422) && MODERATION.test(hint)) {
      return permanentError('CONTENT_REJECTED', text, { status });
    }
    // Without the prompt, which an error may quote and which may well say "model" or "quality".
    const withoutPrompt = this.redact(hint, prompt);
    if ((status === 400 || status === 422) && NAMES_A_REQUEST_FIELD.some((field) => field.test(withoutPrompt))) {
      return misconfigurationError(text, { status });
    }
    // Money, not load: no retry or wait will help until an operator tops up or raises the limit.
    if (BILLING_STATUSES.has(status) && OUT_OF_CREDITS.test(hint)) return billingError(text, { status });
    const retryAfterMs = parseRetryAfter(retryAfter);
    // The team's rate limit: the capacity layer waits and asks again, without using up the job's retries.
    if (status === 429) return rateLimitedError(text, { status, retryAfterMs });
    if (isTransientStatus(status)) return transientError(text, { status, retryAfterMs });
    if (MISCONFIGURATION_STATUSES.has(status)) return misconfigurationError(text, { status });
    return permanentError('GENERATION_FAILED', text, { status });
  }

  /**
   * Some APIs echo a wrong key, or the prompt, back in their error text: neither may reach the logs
   * (prompts are logged at debug only).
   */
  private redact(text: string, prompt: string): string {
    const key = this.options.apiKey;
    const withoutKey = key.length >= 4 ? text.split(key).join('[redacted]') : text;
    return prompt.length >= 8 ? withoutKey.split(prompt).join('[prompt]') : withoutKey;
  }
}

function parseSuccess(text: string, status: number): { item: ImageItem; costUsd?: number } {
  let json: { data?: unknown; usage?: { cost_in_usd_ticks?: unknown } } | null;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw unusableAnswer(`Image API answered ${status} with a body that is not JSON`, status, err);
  }
  const data = json?.data;
  if (!Array.isArray(data)) throw unusableAnswer(`Image API answered ${status} without a data list`, status);
  const item = data[0] as ImageItem | undefined;
  if (!item || item.respect_moderation === false) {
    throw permanentError('CONTENT_REJECTED', 'Image API withheld the image (content moderation)', { status });
  }
  const hasImage = (typeof item.b64_json === 'string' && item.b64_json !== '') || (typeof item.url === 'string' && item.url !== '');
  if (!hasImage) throw unusableAnswer(`Image API answered ${status} without an image`, status);
  const ticks = json?.usage?.cost_in_usd_ticks;
  const costUsd = typeof ticks === 'number' && Number.isFinite(ticks) && ticks >= 0 ? ticks * USD_PER_TICK : undefined;
  return { item, costUsd };
}

/**
 * A 200 that carries no usable image. Not transient: the request may well have been billed, and asking
 * again could pay for a second image (network errors, timeouts, 408, 429 and 5xx are the transient ones).
 */
function unusableAnswer(message: string, status: number, cause?: unknown): WorkerError {
  return permanentError('GENERATION_FAILED', message, { status, cause });
}

/** Reads both error shapes xAI uses, `{code, error: "..."}` and `{error: {message, type, code}}`, or plain text. */
function describeErrorBody(body: string, redact: (text: string) => string): { message: string; hint: string } {
  let message: unknown;
  const extra: unknown[] = [];
  try {
    const json = JSON.parse(body) as Record<string, unknown> | null;
    const error = json?.error;
    if (typeof error === 'string') {
      message = error;
      extra.push(json?.code);
    } else if (error && typeof error === 'object') {
      const e = error as Record<string, unknown>;
      message = e.message;
      extra.push(e.code, e.type);
    } else {
      message = json?.message;
    }
  } catch {
    // Not JSON: the body text itself is the best description there is.
  }
  const text = (typeof message === 'string' && message.trim() ? message : body).replace(/\s+/g, ' ').trim();
  // Redacted before the cut: a key cut in half would no longer be recognised.
  const safe = redact(text);
  const short = safe.length > MAX_DETAIL_CHARS ? `${safe.slice(0, MAX_DETAIL_CHARS)}...` : safe;
  const detail = short || 'no details';
  return { message: detail, hint: [text, ...extra.filter((x) => typeof x === 'string')].join(' ') };
}

/** `name` where it reads as a field's: quoted, after "field", "parameter" or "argument", or before `:`, `=` or "must". */
function fieldName(name: string): RegExp {
  const quote = '[\'"`]';
  return new RegExp(`${quote}${name}${quote}|\\b(?:field|parameter|argument)\\s+${quote}?${name}\\b|(?:^|[\\s(,])${name}\\s*(?:[:=]|must\\b)`, 'i');
}

/** A one-way hash of the user's Id for xAI's `user` field. */
export function hashUserId(userId: string): string {
  return createHash('sha256')
    .update(USER_HASH_NAMESPACE + userId, 'utf8')
    .digest('hex');
}

/** `value` as a lower-case image media type, or undefined when it is not one (or not safe to show). */
function imageMime(value: unknown): string | undefined {
  if (typeof value !== 'string') return undefined;
  const mime = value.trim().toLowerCase();
  return IMAGE_MIME.test(mime) && !NOT_A_PICTURE.has(mime) ? mime : undefined;
}

/**
 * The image type from the file's first bytes (its magic number): PNG, JPEG, WebP or GIF, else undefined.
 * Twelve bytes are enough for all four.
 */
export function sniffImageType(bytes: Buffer): string | undefined {
  if (bytes.length >= 8 && bytes.subarray(0, 8).equals(PNG_MAGIC)) return 'image/png';
  if (bytes.length >= 3 && bytes[0] === 0xff && bytes[1] === 0xd8 && bytes[2] === 0xff) return 'image/jpeg';
  if (bytes.length >= 12 && bytes.toString('latin1', 0, 4) === 'RIFF' && bytes.toString('latin1', 8, 12) === 'WEBP') return 'image/webp';
  if (bytes.length >= 6 && /^GIF8[79]a$/.test(bytes.toString('latin1', 0, 6))) return 'image/gif';
  return undefined;
}

const PNG_MAGIC = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);

/**
 * Neither the bytes nor the answer say what the image is: labelling it anyway could show a broken picture,
 * so the paid answer is unusable (permanent, like any 200 without a usable image).
 */
function mimeOrFail(mime: string | undefined): string {
  if (mime) return mime;
  throw permanentError('GENERATION_FAILED', 'Image API answered with an image of unknown type (no mime_type, unrecognised bytes)');
}

function stripDataUrl(b64: string): string {
  return b64.startsWith('data:') ? b64.slice(b64.indexOf(',') + 1) : b64;
}

/** A system code (ECONNRESET) says enough; fetch messages repeat the URL, which for downloads may be signed. */
function reason(err: unknown): string {
  const code = (err as { code?: unknown } | null)?.code;
  if (typeof code === 'string' && code) return code;
  return err instanceof Error ? err.message : String(err);
}
