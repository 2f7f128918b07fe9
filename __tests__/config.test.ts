import { generateKeyPairSync } from 'node:crypto';
import { ConfigError, describeConfig, loadConfig } from '../src/config';

const minimal = { GROK_API_KEY: 'xai-secret-key', JWT_SECRET: 'jwt-secret', PORT_MESSAGES_USERS: 'http://messages:4001' };

function problems(env: Record<string, string>): string[] {
  try {
    loadConfig(env);
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return (err as ConfigError).problems;
  }
  throw new Error('expected the configuration to be refused');
}

describe('loadConfig', () => {
  it('applies the contract defaults', () => {
    const config = loadConfig(minimal);
    expect(config).toMatchObject({
      redisUrl: 'redis://127.0.0.1:6379',
      queueName: 'Grok_Image_Generator',
      concurrency: 5,
      promptMaxLength: 1000,
      imageProvider: 'grok',
      grok: { apiUrl: 'https://api.x.ai/v1/images/generations', model: 'grok-imagine-image', timeoutMs: 60000, maxRetries: 3 },
      notify: { event: 'Profile', roomSuffix: '_Grok_Image_Generator', format: 'legacy', progress: true, ackTimeoutMs: 0, maxWaitMs: 120000 },
      jwt: { mode: 'local', algorithms: ['HS256', 'HS384', 'HS512'], clockToleranceS: 5, userClaim: 'Id' },
      checkpointTtlS: 3600,
      lockDurationMs: 60000,
      stalledIntervalMs: 30000,
      maxStalledCount: 1,
      shutdownTimeoutMs: 25000,
      logLevel: 'info',
      statsIntervalMs: 60000,
    });
    expect(config.rateLimit).toBeUndefined();
  });

  it('names every bad variable and what it expects, all at once', () => {
    const found = problems({ ...minimal, CONCURRENCY: 'lots', NOTIFY_FORMAT: 'xml', REDIS_URL: 'http://x', NOTIFY_PROGRESS: 'maybe' });
    expect(found).toEqual(
      expect.arrayContaining([
        expect.stringMatching(/^CONCURRENCY must be a whole number from 1 to 1000 \(got "lots"\)/),
        expect.stringMatching(/^NOTIFY_FORMAT must be one of schema, legacy/),
        expect.stringMatching(/^REDIS_URL must be a redis or rediss URL/),
        expect.stringMatching(/^NOTIFY_PROGRESS must be true or false/),
      ]),
    );
  });

  it('requires the API key only for the grok provider', () => {
    const { GROK_API_KEY: _k, ...noKey } = minimal;
    expect(problems(noKey)).toEqual([expect.stringMatching(/^GROK_API_KEY is required/)]);
    expect(loadConfig({ ...noKey, IMAGE_PROVIDER: 'local' }).imageProvider).toBe('local');
  });

  it('requires exactly one way of verifying tokens', () => {
    const { JWT_SECRET: _s, ...noJwt } = minimal;
    expect(problems(noJwt)).toEqual([expect.stringMatching(/JWT_SECRET, JWT_PUBLIC_KEY or JWT_VERIFY_URL is required/)]);
    expect(problems({ ...minimal, JWT_VERIFY_URL: 'http://jwt/verify' })).toEqual([expect.stringMatching(/set only one of JWT_SECRET, JWT_VERIFY_URL/)]);
    expect(loadConfig({ ...noJwt, JWT_VERIFY_URL: 'http://jwt/verify' }).jwt.mode).toBe('remote');
  });

  it('refuses alg none and algorithms that do not fit the key', () => {
    expect(problems({ ...minimal, JWT_ALGORITHMS: 'HS256,none' })).toEqual([expect.stringMatching(/^JWT_ALGORITHMS: .*none/)]);
    expect(problems({ ...minimal, JWT_ALGORITHMS: 'RS256' })).toEqual([expect.stringMatching(/^JWT_ALGORITHMS: RS256 cannot be used with an HMAC secret/)]);
  });

  it('takes a PEM public key with escaped newlines and defaults to its family', () => {
    const { publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
    const pem = publicKey.export({ type: 'spki', format: 'pem' }).toString().replace(/\n/g, '\\n');
    const { JWT_SECRET: _s, ...noSecret } = minimal;
    const config = loadConfig({ ...noSecret, JWT_PUBLIC_KEY: pem });
    expect(config.jwt.publicKey).toContain('\n');
    expect(config.jwt.algorithms).toContain('RS256');
    expect(config.jwt.algorithms).not.toContain('HS256');
    expect(problems({ ...noSecret, JWT_PUBLIC_KEY: 'not a key' })).toEqual([expect.stringMatching(/^JWT_PUBLIC_KEY: /)]);
  });

  it('requires the notification service and accepts a bare port', () => {
    const { PORT_MESSAGES_USERS: _p, ...noNotify } = minimal;
    expect(problems(noNotify)).toEqual([expect.stringMatching(/^PORT_MESSAGES_USERS is required/)]);
    expect(loadConfig({ ...minimal, PORT_MESSAGES_USERS: '4001' }).notify.url).toBe('http://127.0.0.1:4001');
  });

  it('turns the rate limit on only when GROK_RATE_LIMIT is set', () => {
    expect(loadConfig({ ...minimal, GROK_RATE_LIMIT: '10' }).rateLimit).toEqual({ max: 10, durationMs: 60000 });
    expect(problems({ ...minimal, GROK_RATE_LIMIT: '0' })).toEqual([expect.stringMatching(/^GROK_RATE_LIMIT must be a whole number from 1/)]);
  });

  it('describes the settings without any secret', () => {
    const env = {
      ...minimal,
      REDIS_URL: 'rediss://:redis-password@host:6380',
      PORT_MESSAGES_USERS: 'https://relay-user:relay-password@messages.example:4001',
      GROK_API: 'https://proxy.example/v1/images/generations?key=proxy-key',
    };
    const text = JSON.stringify(describeConfig(loadConfig(env)));
    for (const secret of ['xai-secret-key', 'jwt-secret', 'redis-password', 'relay-password', 'proxy-key']) expect(text).not.toContain(secret);
    expect(text).toContain('grok-imagine-image');
    expect(text).toContain('messages.example');
  });

  it('treats an empty variable as not set, so a copied .env.example keeps the defaults', () => {
    const config = loadConfig({ ...minimal, NOTIFY_ROOM_SUFFIX: '', CONCURRENCY: '', QUEUE_NAME: ' ' });
    expect(config.notify.roomSuffix).toBe('_Grok_Image_Generator');
    expect(config.concurrency).toBe(5);
    expect(config.queueName).toBe('Grok_Image_Generator');
  });
});
