import crypto, { KeyObject } from 'node:crypto';
import type jwt from 'jsonwebtoken';

/**
 * Which JWT algorithms a key can verify: the rules both the configuration (validated at start) and the token
 * verifier (at each token) apply. `none` is never among them.
 */

export type KeyKind = 'secret' | 'publicKey';

const HMAC: jwt.Algorithm[] = ['HS256', 'HS384', 'HS512'];
const RSA: jwt.Algorithm[] = ['RS256', 'RS384', 'RS512'];
const RSA_PSS: jwt.Algorithm[] = ['PS256', 'PS384', 'PS512'];
const EC_BY_CURVE: Record<string, jwt.Algorithm> = { prime256v1: 'ES256', secp384r1: 'ES384', secp521r1: 'ES512' };

export function defaultAlgorithms(kind: KeyKind): jwt.Algorithm[] {
  return kind === 'secret' ? [...HMAC] : [...RSA, ...RSA_PSS, ...Object.values(EC_BY_CURVE)];
}

/**
 * Why `algorithms` must not be used with this kind of key, or undefined when it may. Mixing families
 * is refused because it is how algorithm confusion starts: a public key accepted as an HMAC secret
 * lets anyone who has read the (public) key sign tokens.
 */
export function validateAlgorithms(kind: KeyKind, algorithms: readonly string[]): string | undefined {
  if (algorithms.length === 0) return 'the algorithm list is empty';
  if (algorithms.some((alg) => alg.toLowerCase() === 'none')) return '"none" is never accepted: it means an unsigned token';
  const family: readonly string[] = defaultAlgorithms(kind);
  const misfits = algorithms.filter((alg) => !family.includes(alg));
  if (misfits.length === 0) return undefined;
  const key = kind === 'secret' ? 'an HMAC secret' : 'a public key';
  return `${misfits.join(', ')} cannot be used with ${key}; allowed: ${family.join(', ')}`;
}

/** Why `pem` cannot verify any of `algorithms`, or undefined when it can. */
export function validatePublicKey(pem: string, algorithms: readonly jwt.Algorithm[]): string | undefined {
  let key: KeyObject;
  try {
    key = crypto.createPublicKey(pem);
  } catch {
    return 'not a PEM public key';
  }
  if (algorithmsForKey(key, algorithms).length === 0) {
    return `the ${key.asymmetricKeyType ?? 'unknown'} key cannot verify any of ${algorithms.join(', ')}`;
  }
  return undefined;
}

function algorithmsForKey(key: KeyObject, algorithms: readonly jwt.Algorithm[]): jwt.Algorithm[] {
  const fits: readonly jwt.Algorithm[] =
    key.asymmetricKeyType === 'rsa'
      ? [...RSA, ...RSA_PSS]
      : key.asymmetricKeyType === 'rsa-pss'
        ? RSA_PSS
        : key.asymmetricKeyType === 'ec'
          ? [EC_BY_CURVE[key.asymmetricKeyDetails?.namedCurve ?? '']].filter(Boolean)
          : [];
  return algorithms.filter((alg) => fits.includes(alg));
}
