import { createHash } from 'node:crypto';
import jwt from 'jsonwebtoken';
import { abortError, WorkerError } from '../../base/errors';
import type { TokenVerifier } from '../ports';

export interface VerifiedTokensOptions {
  /** Tokens remembered at most; the oldest is forgotten first. */
  maxEntries?: number;
  /** How long an answer is remembered at most; a yes never past the token's own `exp`. */
  maxAgeMs?: number;
  /** How long the one verification every caller of a token waits for may take (the service's own timeout bounds it too). */
  timeoutMs?: number;
}

interface Answer {
  /** The verification, settled or under way: a second check of the same token waits for the first. */
  verdict: Promise<void>;
  until: number;
}

/**
 * A verification service's answer, remembered: a job's token is checked when the job is taken in (vetting) and again
 * when it runs, and the service is asked once. A yes is kept until the token expires (at most `maxAgeMs`); a refusal
 * for good (a bad or expired token) is kept as long, since asking again gives the same answer; a failure to ask (the
 * service is away) is not kept. Only a hash of the token and user is kept. The one verification runs under a signal
 * of its own: a caller that gives up (its claim lost, shutdown) stops only its own wait.
 */
export function rememberVerified(verifier: TokenVerifier, options: VerifiedTokensOptions = {}): TokenVerifier {
  const { maxEntries = 10_000, maxAgeMs = 600_000, timeoutMs = 60_000 } = options;
  const known = new Map<string, Answer>();
  const ask = (token: string, userId: string, key: string): Answer => {
    const exp = (jwt.decode(token) as { exp?: unknown } | null)?.exp;
    const answer: Answer = { verdict: verifier.verify(token, userId, AbortSignal.timeout(timeoutMs)), until: Date.now() + maxAgeMs };
    answer.verdict.then(
      () => (answer.until = Math.min(answer.until, typeof exp === 'number' ? exp * 1000 : Infinity)),
      (err: unknown) => {
        if (!(err instanceof WorkerError) || err.transient) known.delete(key);
      },
    );
    known.set(key, answer);
    if (known.size > maxEntries) known.delete(known.keys().next().value!);
    return answer;
  };
  return {
    async verify(token, userId, signal) {
      signal.throwIfAborted();
      const key = createHash('sha256')
        .update(JSON.stringify([token, userId]))
        .digest('hex');
      let answer = known.get(key);
      if (!answer || Date.now() >= answer.until) {
        known.delete(key);
        answer = ask(token, userId, key);
      }
      await untilAborted(answer.verdict, signal);
    },
  };
}

/** `work`, or an AbortError as soon as `signal` aborts (the work itself goes on for whoever else waits for it). */
function untilAborted(work: Promise<void>, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    const onAbort = (): void => reject(abortError(signal.reason));
    signal.addEventListener('abort', onAbort, { once: true });
    work.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort));
  });
}
