import nodeFetch from 'node-fetch';

/**
 * A token from the StoryBang JWT service, minted the way StoryBang's own server mints one per request:
 * `POST /Create_Jwt {Id}` -> `{Status: true, Response, Content: <token>}`. Its `/Verify_Jwt` sits beside it,
 * which is how the enqueue command finds it from the worker's verification URL.
 */

/** The service's Create_Jwt address when `verifyUrl` is its Verify_Jwt, else undefined. */
export function createJwtUrl(verifyUrl: string | undefined): string | undefined {
  return verifyUrl !== undefined && /\/Verify_Jwt$/.test(verifyUrl) ? verifyUrl.replace(/\/Verify_Jwt$/, '/Create_Jwt') : undefined;
}

/** The service failed or answered something other than a token; the command exits 1. */
export class TokenServiceError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'TokenServiceError';
  }
}

export async function createStorybangToken(url: string, id: string, timeoutMs = 5000, fetch: typeof nodeFetch = nodeFetch): Promise<string> {
  let status: number;
  let body: string;
  try {
    const res = await fetch(url, {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'application/json' },
      body: JSON.stringify({ Id: id }),
      signal: AbortSignal.timeout(timeoutMs),
      size: 64 * 1024,
    });
    status = res.status;
    body = await res.text();
  } catch (err) {
    throw new TokenServiceError(`The JWT service at ${url} did not answer: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
  }
  let answer: unknown;
  try {
    answer = JSON.parse(body);
  } catch {
    answer = undefined;
  }
  const content = (answer as { Status?: unknown; Content?: unknown } | undefined) ?? {};
  if (status !== 200 || content.Status !== true || typeof content.Content !== 'string' || content.Content === '') {
    throw new TokenServiceError(`The JWT service at ${url} answered ${status} without a token`);
  }
  return content.Content;
}
