import { redactUrl } from '../base/urls';
import type { Config } from './schema';

/***@');
  }
}

/**
 * The effective settings as the start log line shows them: no secrets. A new setting appears here as it was
 * read; one that holds a secret, or a URL (which may carry credentials), must be replaced below.
 */
export function describeConfig(config: Config): Record<string, unknown> {
  const { jwt, grok, ...rest } = config;
  return {
    ...rest,
    redisUrl: redactUrl(config.redisUrl),
    redisClusterNodes: config.redisClusterNodes.map(redactUrl),
    notify: { ...config.notify, url: redactUrl(config.notify.url) },
    jwt: {
      mode: jwt.mode,
      key: jwt.secret ? 'secret' : jwt.publicKey ? 'publicKey' : undefined,
      algorithms: jwt.algorithms,
      issuer: jwt.issuer,
      audience: jwt.audience,
      clockToleranceS: jwt.clockToleranceS,
      userClaim: jwt.userClaim,
      verifyUrl: redactUrl(jwt.verifyUrl),
    },
    grok: {
      apiUrl: redactUrl(grok.apiUrl),
      model: grok.model,
      timeoutMs: grok.timeoutMs,
      maxRetries: grok.maxRetries,
      aspectRatio: grok.aspectRatio,
      resolution: grok.resolution,
      quality: grok.quality,
      apiKeySet: grok.apiKey !== '',
    },
  };
}
