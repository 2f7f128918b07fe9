import { createHash } from 'node:crypto';
import jwt from 'jsonwebtoken';
import { WorkerError } from '../errors';
import type { TokenVerifier } from '../types';

export interface VerifiedTokensOptions {
  /** Tokens remembered at most; the oldest is forgotten first. */
  maxEntries?: number;
  /** How long an answer is remembered at most; a yes never past the token's own `exp`. */
  maxAgeMs?: number;
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
 * service is away) is not kept. Only a hash of the token and user is kept.
 */
export function rememberVerified(verifier: TokenVerifier, options: VerifiedTokensOptions = {}): TokenVerifier {
  const { maxEntries = 10_000, maxAgeMs = 600_000 } = options;
  const known = new Map<string, Answer>();
  return {
    verify(token, userId, signal) {
      const key = createHash('sha256')
        .update(JSON.stringify([token, userId]))
        .digest('hex');
      const remembered = known.get(key);
      if (remembered && Date.now() < remembered.until) return remembered.verdict;
      known.delete(key);
      const exp = (jwt.decode(token) as { exp?: unknown } | null)?.exp;
      const answer: Answer = { verdict: verifier.verify(token, userId, signal), until: Date.now() + maxAgeMs };
      answer.verdict.then(
        () => (answer.until = Math.min(answer.until, typeof exp === 'number' ? exp * 1000 : Infinity)),
        (err: unknown) => {
          if (!(err instanceof WorkerError) || err.transient) known.delete(key);
        },
      );
      known.set(key, answer);
      if (known.size > maxEntries) known.delete(known.keys().next().value!);
      return answer.verdict;
    },
  };
}
