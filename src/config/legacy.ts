import { hasScheme, redactUrl } from '../base/urls';
import type { Env, Legacy, Reading } from './setting';

/**
 * The drop-in for the StoryBang worker being replaced: its `.env` works unchanged. Each reader here is the `legacy`
 * of one setting in schema.ts and is asked only when that setting's own variable is absent, so the new name always
 * wins. The original's PORT (an HTTP port it never used) is read by nothing.
 */

/** What the original took for a missing half of its Redis pair. */
const BULL_GENERATOR_DEFAULTS = { host: '127.0.0.1', port: '6379' } as const;

/** BULL_GENERATOR_HOST + BULL_GENERATOR_PORT, for REDIS_URL: `redis://HOST:PORT`. */
export const bullGeneratorPair: Legacy = (env) => {
  const host = present(env, 'BULL_GENERATOR_HOST');
  const port = present(env, 'BULL_GENERATOR_PORT');
  if (host === undefined && port === undefined) return undefined;
  const names = [host !== undefined && 'BULL_GENERATOR_HOST', port !== undefined && 'BULL_GENERATOR_PORT'].filter((n): n is string => n !== false);
  const problems: string[] = [];
  const portText = port ?? BULL_GENERATOR_DEFAULTS.port;
  const portNumber = Number(portText);
  if (!(/^\d+$/.test(portText) && portNumber >= 1 && portNumber <= 65535)) {
    problems.push(`BULL_GENERATOR_PORT must be a port number from 1 to 65535 (got ${JSON.stringify(portText)})`);
  }
  const hostText = host ?? BULL_GENERATOR_DEFAULTS.host;
  // A bare IPv6 address needs brackets in a URL; anything with a scheme, a path or credentials is not a host.
  const hostPart = /^[0-9a-f]*:[0-9a-f:.]*$/i.test(hostText) ? `[${hostText}]` : hostText;
  if (!(/^(\[[0-9a-f:.]+\]|[a-z0-9]([a-z0-9._-]*[a-z0-9])?)$/i.test(hostPart) && URL.canParse(`redis://${hostPart}:6379`))) {
    problems.push(`BULL_GENERATOR_HOST must be a host name or IP address, e.g. 127.0.0.1 (got ${JSON.stringify(hostText)})`);
  }
  return { names, problems, text: problems.length === 0 ? `redis://${hostPart}:${portNumber}` : undefined };
};

/** API_GROK, for GROK_API_KEY. */
export const apiGrok: Legacy = (env) => {
  const key = present(env, 'API_GROK');
  return key === undefined ? undefined : { names: ['API_GROK'], problems: [], text: key };
};

/**
 * API_JWT, the JWT service's base URL, for JWT_VERIFY_URL = API_JWT + `/Verify_Jwt`; only when tokens are not
 * verified locally either (no JWT_SECRET, which counts even as spaces, nor JWT_PUBLIC_KEY).
 */
export const apiJwt: Legacy = (env) => {
  const base = present(env, 'API_JWT');
  if (base === undefined || (env.JWT_SECRET ?? '') !== '' || present(env, 'JWT_PUBLIC_KEY') !== undefined) return undefined;
  if (!hasScheme(base, ['http', 'https'])) {
    const problem = `API_JWT must be the JWT service's http or https base URL, e.g. http://jwt:4000 (got ${JSON.stringify(redactUrl(base))})`;
    return { names: ['API_JWT'], problems: [problem] };
  }
  // The original called `${API_JWT}/Verify_Jwt`; a trailing slash would make that `//Verify_Jwt`.
  return { names: ['API_JWT'], problems: [], text: `${base.replace(/\/+$/, '')}/Verify_Jwt` };
};

/**
 * The original's look, which StoryBang's users know their stories by: its house style before every prompt (the
 * closing space included) and its 700-character cut. The model is not part of it: the original's
 * grok-2-image-1212 is legacy, and today's default model keeps the look through the house style.
 */
export const ORIGINAL_LOOK = {
  promptPrefix:
    'Generate an image in the style of Studio Ghibli: soft colors, warm lighting, expressive anime-style eyes, hand-drawn look, and whimsical, gentle atmosphere. ',
  promptMaxLength: 700,
} as const;

/** Setting any of these chooses a look of one's own: the original's is no longer kept. */
const OWN_LOOK = ['PROMPT_PREFIX', 'PROMPT_MAX_LENGTH', 'GROK_MODEL'];

/**
 * Run on the original names only (at least one of them read, none of OWN_LOOK set), the worker keeps the
 * original's look: StoryBang deploys its `.env` unchanged, and its stories must not change style under it.
 */
export function keepsOriginalLook(reading: Reading): boolean {
  return reading.legacyNames.length > 0 && OWN_LOOK.every((env) => !reading.given.has(env));
}

function present(env: Env, name: string): string | undefined {
  return env[name]?.trim() || undefined;
}
