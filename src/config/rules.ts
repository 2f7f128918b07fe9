import type { Algorithm } from 'jsonwebtoken';
import { defaultAlgorithms, validateAlgorithms, validatePublicKey } from '../base/jwtAlgorithms';
import type { Config, JwtConfig, QueueSettings } from './schema';
import type { Reading } from './setting';

/**
 * Rules over several settings, run once each setting has been read on its own. A rule stays quiet about a
 * variable that was already reported, so every message names a problem of its own.
 */

/** On a cluster, Bull's scripts touch several of the queue's keys at once: they must all hash to one slot. */
export function checkQueue(queue: Omit<QueueSettings, 'legacyNames'>, reading: Reading): void {
  if (!reading.ok('QUEUE_PREFIX', 'REDIS_CLUSTER_NODES') || queue.redisClusterNodes.length === 0) return;
  if (!hasHashTag(queue.queuePrefix)) {
    const why = 'when REDIS_CLUSTER_NODES is set, so that every key of the queue is on one node';
    reading.problem('QUEUE_PREFIX', `QUEUE_PREFIX must hold a hash tag ${why}: use {bull} on a cluster (got ${JSON.stringify(queue.queuePrefix)})`);
  }
}

/** Redis hashes only what is between the first `{` and the next `}`, and only when that is not empty. */
export function hasHashTag(key: string): boolean {
  const open = key.indexOf('{');
  return open >= 0 && key.indexOf('}', open + 1) > open + 1;
}

export function checkImageProvider(config: Pick<Config, 'imageProvider'>, reading: Reading): void {
  if (config.imageProvider === 'grok' && !reading.given.has('GROK_API_KEY')) {
    reading.problem(
      'GROK_API_KEY',
      "GROK_API_KEY is required when IMAGE_PROVIDER=grok (an xAI API key; the original worker's API_GROK is read too; or set IMAGE_PROVIDER=local for offline images)",
    );
  }
}

/** The models known to refuse `quality` (xAI answers 400): the 1.0 ones. Any other, known or not, may take it. */
const MODELS_WITHOUT_QUALITY = new Set(['grok-imagine-image', 'grok-2-image-1212']);

/** GROK_QUALITY with a model that refuses it would fail every job: the start stops instead. */
export function checkQuality(grok: Pick<Config['grok'], 'model' | 'quality'>, reading: Reading): void {
  if (grok.quality === undefined || !reading.ok('GROK_QUALITY', 'GROK_MODEL')) return;
  if (!MODELS_WITHOUT_QUALITY.has(grok.model.toLowerCase())) return;
  reading.problem(
    'GROK_QUALITY',
    `GROK_QUALITY must be unset with the model ${grok.model} (GROK_MODEL), which refuses it; grok-imagine-image-2.0 takes it (got ${JSON.stringify(grok.quality)})`,
  );
}

const WAYS = ['JWT_SECRET', 'JWT_PUBLIC_KEY', 'JWT_VERIFY_URL'] as const;

/** Exactly one way of verifying tokens; with a key, the algorithms it allows (checked against the key). */
export function finishJwt(jwt: Omit<JwtConfig, 'mode' | 'algorithms'> & { algorithms?: string[] }, reading: Reading): JwtConfig {
  const { algorithms: listed, ...settings } = jwt;
  const ways = WAYS.filter((env) => reading.given.has(env));
  if (ways.length !== 1) {
    reading.problem(
      ways[0] ?? 'JWT_SECRET',
      ways.length === 0
        ? "JWT_SECRET, JWT_PUBLIC_KEY or JWT_VERIFY_URL is required (how job tokens are verified; the original worker's API_JWT is read too)"
        : `set only one of ${ways.join(', ')} (how job tokens are verified)`,
    );
    return { ...settings, mode: 'local', algorithms: [] };
  }
  if (ways[0] === 'JWT_VERIFY_URL') return { ...settings, mode: 'remote', algorithms: [] };

  const kind = ways[0] === 'JWT_SECRET' ? 'secret' : 'publicKey';
  const algorithms = (listed ?? defaultAlgorithms(kind)) as Algorithm[];
  const problem = validateAlgorithms(kind, algorithms);
  if (problem) reading.problem('JWT_ALGORITHMS', `JWT_ALGORITHMS: ${problem}`);
  const keyProblem = settings.publicKey !== undefined && !problem ? validatePublicKey(settings.publicKey, algorithms) : undefined;
  if (keyProblem) reading.problem('JWT_PUBLIC_KEY', `JWT_PUBLIC_KEY: ${keyProblem} (expected a PEM public key: -----BEGIN PUBLIC KEY----- ...)`);
  return { ...settings, mode: 'local', algorithms };
}
