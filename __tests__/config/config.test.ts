import { generateKeyPairSync } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ConfigError, DEFAULTS, describeConfig, loadConfig, loadQueueSettings, SCHEMA } from '../../src/config';
import { int } from '../../src/config/kinds';
import { hasHashTag } from '../../src/config/rules';
import { setting, settingsOf } from '../../src/config/setting';

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
      queuePrefix: 'bull',
      redisClusterNodes: [],
      promptMaxLength: 1000,
      promptPrefix: '',
      originalLook: false,
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
      rateLimit: { max: 5, windowMs: 1000 },
      generationDeadlineMs: 300000,
      userConcurrency: 0,
      refusalMemoryS: 600,
      legacyNames: [],
    });
    // Unset: the worker sizes itself to the pace and the latency.
    expect(config.concurrency).toBeUndefined();
    // Unset means not sent: xAI picks.
    expect(config.grok).not.toHaveProperty('aspectRatio', expect.anything());
    expect(config.grok.aspectRatio).toBeUndefined();
    expect(config.grok.resolution).toBeUndefined();
    expect(config.grok.quality).toBeUndefined();
  });

  it('names every bad variable and what it expects, all at once', () => {
    const found = problems({ ...minimal, CONCURRENCY: 'lots', NOTIFY_FORMAT: 'xml', REDIS_URL: 'http://x', NOTIFY_PROGRESS: 'maybe' });
    expect(found).toEqual(
      expect.arrayContaining([
        expect.stringMatching(/^CONCURRENCY must be a whole number from 1 up \(got "lots"\)/),
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

  it("limits image requests to xAI's 5 per second by default, and GROK_RATE_LIMIT=0 turns the limiter off", () => {
    expect(loadConfig({ ...minimal, GROK_RATE_LIMIT: '10', GROK_RATE_WINDOW_MS: '2000' }).rateLimit).toEqual({ max: 10, windowMs: 2000 });
    expect(loadConfig({ ...minimal, GROK_RATE_LIMIT: '0' }).rateLimit).toBeNull();
    expect(problems({ ...minimal, GROK_RATE_LIMIT: '-1', GROK_RATE_WINDOW_MS: '0' })).toEqual([
      expect.stringMatching(/^GROK_RATE_LIMIT must be a whole number from 0 up \(got "-1"\)/),
      expect.stringMatching(/^GROK_RATE_WINDOW_MS must be a whole number from 1 up \(got "0"\)/),
    ]);
  });

  it('reads the deadline, the per-user cap and the refusal memory, 0 meaning off where it may', () => {
    const config = loadConfig({ ...minimal, GENERATION_DEADLINE_MS: '90000', USER_CONCURRENCY: '2', REFUSAL_MEMORY_S: '0' });
    expect(config).toMatchObject({ generationDeadlineMs: 90000, userConcurrency: 2, refusalMemoryS: 0 });
    expect(problems({ ...minimal, GENERATION_DEADLINE_MS: '0', USER_CONCURRENCY: 'two', REFUSAL_MEMORY_S: '1.5' })).toEqual([
      expect.stringMatching(/^GENERATION_DEADLINE_MS must be a whole number from 1 up/),
      expect.stringMatching(/^USER_CONCURRENCY must be a whole number from 0 to 1000 \(got "two"\)/),
      expect.stringMatching(/^REFUSAL_MEMORY_S must be a whole number from 0 up \(got "1.5"\)/),
    ]);
  });

  it('keeps no bill and no picture memory by default; reads their caps, 0 meaning off', () => {
    expect(loadConfig(minimal)).toMatchObject({ bill: { userDailyImages: 0, dailyBudgetUsd: 0 }, pictures: { rememberS: 0, rememberMb: 64 } });
    const config = loadConfig({ ...minimal, USER_DAILY_IMAGES: '30', DAILY_BUDGET_USD: '7.50', REMEMBER_PICTURES_S: '900', REMEMBER_PICTURES_MB: '16' });
    expect(config).toMatchObject({ bill: { userDailyImages: 30, dailyBudgetUsd: 7.5 }, pictures: { rememberS: 900, rememberMb: 16 } });
    expect(problems({ ...minimal, USER_DAILY_IMAGES: '-1', DAILY_BUDGET_USD: '$5', REMEMBER_PICTURES_MB: '0' })).toEqual([
      expect.stringMatching(/^USER_DAILY_IMAGES must be a whole number from 0 up \(got "-1"\)/),
      expect.stringMatching(/^DAILY_BUDGET_USD must be an amount in US dollars from 0 up, e.g. 25 or 7.50 \(got "\$5"\)/),
      expect.stringMatching(/^REMEMBER_PICTURES_MB must be a whole number from 1 up \(got "0"\)/),
    ]);
  });

  it("takes any aspect ratio and resolution of xAI's form, so a value xAI adds later needs no release", () => {
    const ratios = ['1:1', '3:4', '4:3', '9:16', '16:9', '2:3', '3:2', '9:19.5', '19.5:9', '9:20', '20:9', '1:2', '2:1', 'auto', '21:9', '5:2', '7:3'];
    for (const ratio of ratios) expect(loadConfig({ ...minimal, GROK_ASPECT_RATIO: ratio }).grok.aspectRatio).toBe(ratio);
    for (const [given, read] of [
      ['1k', '1k'],
      ['1.5k', '1.5k'],
      ['2K', '2k'],
      ['4k', '4k'],
    ]) {
      expect(loadConfig({ ...minimal, GROK_RESOLUTION: given }).grok.resolution).toBe(read);
    }
    expect(loadConfig({ ...minimal, GROK_ASPECT_RATIO: '', GROK_RESOLUTION: ' ' }).grok).toMatchObject({ aspectRatio: undefined, resolution: undefined });
    expect(describeConfig(loadConfig({ ...minimal, GROK_ASPECT_RATIO: '21:9', GROK_RESOLUTION: '1.5k' })).grok).toMatchObject({
      aspectRatio: '21:9',
      resolution: '1.5k',
    });
  });

  it('refuses an aspect ratio or resolution of another form, naming the variable and giving examples', () => {
    expect(problems({ ...minimal, GROK_ASPECT_RATIO: '1024x1024', GROK_RESOLUTION: '1024' })).toEqual([
      'GROK_ASPECT_RATIO must be <width>:<height> (decimals allowed) or auto, e.g. 1:1, 3:4, 16:9 or 9:19.5 (grok-imagine-image-2.0 adds 21:9 and 5:2), or unset to let xAI choose (got "1024x1024")',
      'GROK_RESOLUTION must be <number>k (decimals allowed), e.g. 1k, 1.5k or 2k, or unset to let xAI choose (got "1024")',
    ]);
    for (const ratio of ['16/9', '16:', ':9', '1:2:3', '-1:2', '1.:2', 'AUTO', 'square']) {
      expect(problems({ ...minimal, GROK_ASPECT_RATIO: ratio })).toEqual([expect.stringMatching(/^GROK_ASPECT_RATIO must be <width>:<height>/)]);
    }
    for (const resolution of ['k', '1.k', '1,5k', '2kb', 'hd', '1024x1024']) {
      expect(problems({ ...minimal, GROK_RESOLUTION: resolution })).toEqual([expect.stringMatching(/^GROK_RESOLUTION must be <number>k/)]);
    }
  });

  it('takes GROK_QUALITY with grok-imagine-image-2.0, the retired grok-imagine-image-quality, or a model it does not know', () => {
    for (const model of ['grok-imagine-image-2.0', 'grok-imagine-image-quality', 'grok-imagine-image-3']) {
      expect(loadConfig({ ...minimal, GROK_MODEL: model, GROK_QUALITY: 'high' }).grok).toMatchObject({ model, quality: 'high' });
    }
    expect(loadConfig({ ...minimal, GROK_MODEL: 'grok-imagine-image-2.0', GROK_QUALITY: 'ultra' }).grok.quality).toBe('ultra');
    expect(describeConfig(loadConfig({ ...minimal, GROK_MODEL: 'grok-imagine-image-2.0', GROK_QUALITY: 'low' })).grok).toMatchObject({ quality: 'low' });
  });

  it('stops the start when GROK_QUALITY is set with a 1.0 model, which refuses it, naming GROK_QUALITY', () => {
    expect(problems({ ...minimal, GROK_QUALITY: 'high' })).toEqual([
      'GROK_QUALITY must be unset with the model grok-imagine-image (GROK_MODEL), which refuses it; grok-imagine-image-2.0 takes it (got "high")',
    ]);
    expect(problems({ ...minimal, GROK_MODEL: 'grok-2-image-1212', GROK_QUALITY: 'low' })).toEqual([
      expect.stringMatching(/^GROK_QUALITY must be unset with the model grok-2-image-1212 \(GROK_MODEL\)/),
    ]);
    // A bad model is reported once, not again as a model that refuses quality.
    expect(problems({ ...minimal, GROK_MODEL: 'grok imagine', GROK_QUALITY: 'high' })).toEqual([expect.stringMatching(/^GROK_MODEL must be/)]);
  });

  it('refuses a GROK_QUALITY that is not a lowercase word, naming it and giving examples', () => {
    const model = { GROK_MODEL: 'grok-imagine-image-2.0' };
    expect(problems({ ...minimal, ...model, GROK_QUALITY: 'High' })).toEqual([
      'GROK_QUALITY must be a lowercase word, e.g. low, medium or high (grok-imagine-image-2.0), or unset to leave it out (got "High")',
    ]);
    for (const quality of ['very high', '2', 'high!', 'low-ish']) {
      expect(problems({ ...minimal, ...model, GROK_QUALITY: quality })).toEqual([expect.stringMatching(/^GROK_QUALITY must be a lowercase word/)]);
    }
  });

  it('takes any model name of letters, digits, ".", "-" and "_", and refuses anything else', () => {
    for (const model of ['grok-imagine-image', 'grok-imagine-image-2.0', 'grok-imagine-image-quality', 'grok-2-image-1212', 'grok_imagine_image_3']) {
      expect(loadConfig({ ...minimal, GROK_MODEL: model }).grok.model).toBe(model);
    }
    expect(problems({ ...minimal, GROK_MODEL: 'grok imagine' })).toEqual([
      'GROK_MODEL must be a model name (letters, digits, ".", "-", "_"), e.g. grok-imagine-image, grok-imagine-image-2.0 or grok-2-image-1212 (got "grok imagine")',
    ]);
    for (const model of ['grok/imagine', 'grok-imagine-image?x=1', '"grok-imagine-image"']) {
      expect(problems({ ...minimal, GROK_MODEL: model })).toEqual([expect.stringMatching(/^GROK_MODEL must be a model name/)]);
    }
  });

  it('keeps every default in DEFAULTS', () => {
    const config = loadConfig(minimal);
    expect(config.rateLimit).toEqual({ max: Number(DEFAULTS.GROK_RATE_LIMIT), windowMs: Number(DEFAULTS.GROK_RATE_WINDOW_MS) });
    expect(config.generationDeadlineMs).toBe(Number(DEFAULTS.GENERATION_DEADLINE_MS));
    expect(config.notify.format).toBe(DEFAULTS.NOTIFY_FORMAT);
    expect(DEFAULTS.QUEUE_PREFIX).toBe('bull');
    expect(DEFAULTS).not.toHaveProperty('CONCURRENCY');
  });

  it('refuses a declaration whose default its own kind refuses, when the module loads', () => {
    expect(() => setting('SOME_COUNT', int({ min: 1 }), { default: '0' })).toThrow('SOME_COUNT: the default "0" is not a whole number from 1 up');
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
    const config = loadConfig({ ...minimal, NOTIFY_ROOM_SUFFIX: '', CONCURRENCY: '', QUEUE_NAME: ' ', QUEUE_PREFIX: '', REDIS_CLUSTER_NODES: ' ' });
    expect(config.notify.roomSuffix).toBe('_Grok_Image_Generator');
    expect(config.concurrency).toBeUndefined();
    expect(config.queueName).toBe('Grok_Image_Generator');
    expect(config.queuePrefix).toBe('bull');
    expect(config.redisClusterNodes).toEqual([]);
  });

  it('takes CONCURRENCY as a cap of at least 1 when set', () => {
    expect(loadConfig({ ...minimal, CONCURRENCY: '12' }).concurrency).toBe(12);
    expect(loadConfig({ ...minimal, CONCURRENCY: '1' }).concurrency).toBe(1);
    expect(loadConfig({ ...minimal, CONCURRENCY: '5000' }).concurrency).toBe(5000);
    for (const bad of ['0', '-3', '2.5', 'lots']) {
      expect(problems({ ...minimal, CONCURRENCY: bad })).toEqual([`CONCURRENCY must be a whole number from 1 up (got ${JSON.stringify(bad)})`]);
    }
  });

  it('reads a Redis Cluster as comma-separated redis or rediss URLs', () => {
    const config = loadConfig({ ...minimal, QUEUE_PREFIX: '{bull}', REDIS_CLUSTER_NODES: 'redis://node-1:6379, rediss://:pw@node-2:6380,' });
    expect(config.redisClusterNodes).toEqual(['redis://node-1:6379', 'rediss://:pw@node-2:6380']);
    expect(config.queuePrefix).toBe('{bull}');
    const found = problems({ ...minimal, QUEUE_PREFIX: '{bull}', REDIS_CLUSTER_NODES: 'redis://node-1:6379,http://:secret@node-2:80,node-3:6379' });
    expect(found).toEqual([expect.stringMatching(/^REDIS_CLUSTER_NODES must be comma-separated redis or rediss URLs, e\.g\. redis:\/\/node-1:6379,/)]);
    expect(found[0]).not.toContain('secret');
  });

  it("requires a hash tag in QUEUE_PREFIX on a cluster, so that the queue's keys share one slot", () => {
    const nodes = { REDIS_CLUSTER_NODES: 'redis://node-1:6379' };
    expect(problems({ ...minimal, ...nodes })).toEqual([
      expect.stringMatching(/^QUEUE_PREFIX must hold a hash tag .*use \{bull\} on a cluster \(got "bull"\)/),
    ]);
    for (const prefix of ['{}', '}bull{', '{}{bull}', 'bull{']) {
      expect(problems({ ...minimal, ...nodes, QUEUE_PREFIX: prefix })).toEqual([expect.stringMatching(/^QUEUE_PREFIX must hold a hash tag/)]);
    }
    for (const prefix of ['{bull}', 'app{q}', '{a}b']) expect(loadConfig({ ...minimal, ...nodes, QUEUE_PREFIX: prefix }).queuePrefix).toBe(prefix);
    // Without a cluster any prefix without spaces does.
    expect(loadConfig({ ...minimal, QUEUE_PREFIX: 'app' }).queuePrefix).toBe('app');
    expect(problems({ ...minimal, QUEUE_PREFIX: 'my bull' })).toEqual([expect.stringMatching(/^QUEUE_PREFIX must be a name without spaces \(got "my bull"\)/)]);
    // A bad node list is reported once, not again as a missing hash tag.
    expect(problems({ ...minimal, REDIS_CLUSTER_NODES: 'node-1' })).toEqual([expect.stringMatching(/^REDIS_CLUSTER_NODES must be/)]);
  });

  it('finds a hash tag where Redis does: between the first { and the next }', () => {
    expect([hasHashTag('{bull}'), hasHashTag('a{b}c'), hasHashTag('{}'), hasHashTag('{}{bull}'), hasHashTag('bull')]).toEqual([
      true,
      true,
      false,
      false,
      false,
    ]);
  });

  it('reads the queue settings for producers and commands as the worker does', () => {
    expect(loadQueueSettings({ BULL_GENERATOR_HOST: 'redis.internal', QUEUE_PREFIX: 'app' })).toEqual({
      redisUrl: 'redis://redis.internal:6379',
      redisClusterNodes: [],
      redisTlsRejectUnauthorized: true,
      queueName: 'Grok_Image_Generator',
      queuePrefix: 'app',
      legacyNames: ['BULL_GENERATOR_HOST'],
    });
    expect(() => loadQueueSettings({ REDIS_CLUSTER_NODES: 'redis://node-1:6379' })).toThrow(/QUEUE_PREFIX must hold a hash tag/);
  });

  it('describes the Redis Cluster nodes without their passwords', () => {
    const env = { ...minimal, QUEUE_PREFIX: '{bull}', REDIS_CLUSTER_NODES: 'rediss://:cluster-password@node-1:6380' };
    const described = describeConfig(loadConfig(env));
    expect(described).toMatchObject({ queuePrefix: '{bull}', redisClusterNodes: ['rediss://:***@node-1:6380'] });
    expect(JSON.stringify(described)).not.toContain('cluster-password');
  });

  it('documents every declared variable in .env.example, and nothing else', () => {
    const example = readFileSync(join(__dirname, '..', '..', '.env.example'), 'utf8');
    const listed = [...example.matchAll(/^([A-Z][A-Z0-9_]*)=/gm)].map((m) => m[1]);
    const original = ['BULL_GENERATOR_HOST', 'BULL_GENERATOR_PORT', 'API_GROK', 'API_JWT'];
    expect(listed.sort()).toEqual([...settingsOf(SCHEMA).map((s) => s.env), ...original].sort());
  });
});

describe("the original StoryBang worker's .env", () => {
  /** Exactly the variables the worker being replaced read, PORT included. */
  const storybang = {
    BULL_GENERATOR_HOST: 'redis.internal',
    BULL_GENERATOR_PORT: '6380',
    PORT_MESSAGES_USERS: 'http://messages:4001',
    API_JWT: 'http://jwt.internal:4000/',
    API_GROK: 'xai-original-key',
    PORT: '3005',
  };

  it('works unchanged: Redis, the xAI key and the JWT service come from the original names', () => {
    const config = loadConfig(storybang);
    expect(config.redisUrl).toBe('redis://redis.internal:6380');
    expect(config.grok.apiKey).toBe('xai-original-key');
    expect(config.jwt).toMatchObject({ mode: 'remote', verifyUrl: 'http://jwt.internal:4000/Verify_Jwt', userClaim: 'Id' });
    expect(config.notify.url).toBe('http://messages:4001');
    expect(config.notify.format).toBe('legacy');
    expect(config.legacyNames).toEqual(['BULL_GENERATOR_HOST', 'BULL_GENERATOR_PORT', 'API_GROK', 'API_JWT']);
  });

  it('says in the start line which original names were read, without the key', () => {
    const described = describeConfig(loadConfig(storybang));
    expect(described.legacyNames).toEqual(['BULL_GENERATOR_HOST', 'BULL_GENERATOR_PORT', 'API_GROK', 'API_JWT']);
    expect(JSON.stringify(described)).not.toContain('xai-original-key');
  });

  it('lets the new name win when both are set, and then does not list the original as read', () => {
    const config = loadConfig({
      ...storybang,
      REDIS_URL: 'redis://new-redis:6379',
      GROK_API_KEY: 'xai-new-key',
      JWT_VERIFY_URL: 'https://verify.example/check',
    });
    expect(config.redisUrl).toBe('redis://new-redis:6379');
    expect(config.grok.apiKey).toBe('xai-new-key');
    expect(config.jwt.verifyUrl).toBe('https://verify.example/check');
    expect(config.legacyNames).toEqual([]);
  });

  it('reads API_JWT only when no way of verifying tokens is set', () => {
    for (const way of [{ JWT_SECRET: 'local-secret' }, { JWT_VERIFY_URL: 'http://other/verify' }]) {
      const config = loadConfig({ ...storybang, ...way });
      expect(config.legacyNames).not.toContain('API_JWT');
      expect(config.jwt.verifyUrl).not.toBe('http://jwt.internal:4000/Verify_Jwt');
    }
    expect(loadConfig({ ...storybang, JWT_SECRET: 'local-secret' }).jwt.mode).toBe('local');
  });

  it('takes 127.0.0.1 or 6379 for the missing half of the Redis pair', () => {
    const { BULL_GENERATOR_PORT: _p, ...hostOnly } = storybang;
    const { BULL_GENERATOR_HOST: _h, ...portOnly } = storybang;
    expect(loadConfig(hostOnly)).toMatchObject({ redisUrl: 'redis://redis.internal:6379', legacyNames: ['BULL_GENERATOR_HOST', 'API_GROK', 'API_JWT'] });
    expect(loadConfig(portOnly)).toMatchObject({ redisUrl: 'redis://127.0.0.1:6380', legacyNames: ['BULL_GENERATOR_PORT', 'API_GROK', 'API_JWT'] });
    expect(loadConfig({ ...storybang, BULL_GENERATOR_HOST: '::1' }).redisUrl).toBe('redis://[::1]:6380');
  });

  it('ignores PORT: it changes nothing', () => {
    const { PORT: _port, ...withoutPort } = storybang;
    expect(loadConfig(storybang)).toEqual(loadConfig(withoutPort));
  });

  it('names the original variable when its value is malformed', () => {
    expect(problems({ ...storybang, BULL_GENERATOR_PORT: 'redis' })).toEqual([
      expect.stringMatching(/^BULL_GENERATOR_PORT must be a port number from 1 to 65535 \(got "redis"\)/),
    ]);
    expect(problems({ ...storybang, BULL_GENERATOR_PORT: '70000' })).toEqual([expect.stringMatching(/^BULL_GENERATOR_PORT must be a port number/)]);
    expect(problems({ ...storybang, BULL_GENERATOR_HOST: 'redis://redis.internal:6379' })).toEqual([
      expect.stringMatching(/^BULL_GENERATOR_HOST must be a host name or IP address/),
    ]);
    expect(problems({ ...storybang, API_JWT: 'jwt.internal:4000' })).toEqual([
      expect.stringMatching(/^API_JWT must be the JWT service's http or https base URL/),
    ]);
  });

  it('mentions the original names when neither the new nor the original one is set', () => {
    expect(problems({ PORT_MESSAGES_USERS: '4001' })).toEqual([
      expect.stringMatching(/^GROK_API_KEY is required .*API_GROK/),
      expect.stringMatching(/^JWT_SECRET, JWT_PUBLIC_KEY or JWT_VERIFY_URL is required .*API_JWT/),
    ]);
  });

  it('leaves the given environment untouched', () => {
    const given = { ...storybang };
    expect(loadConfig(given).redisUrl).toBe('redis://redis.internal:6380');
    expect(given).toEqual(storybang);
  });

  describe("keeps the original's look", () => {
    const HOUSE_STYLE =
      'Generate an image in the style of Studio Ghibli: soft colors, warm lighting, expressive anime-style eyes, hand-drawn look, and whimsical, gentle atmosphere. ';

    it('on the original names only: its house style before every prompt, its 700-character cut, the default model', () => {
      expect(loadConfig(storybang)).toMatchObject({
        originalLook: true,
        promptPrefix: HOUSE_STYLE,
        promptMaxLength: 700,
        grok: { model: 'grok-imagine-image' },
      });
      // One original name read is enough; empty variables (a copied .env.example) are not set.
      const oneName = {
        API_GROK: 'xai-original-key',
        JWT_SECRET: 'jwt-secret',
        PORT_MESSAGES_USERS: '4001',
        PROMPT_PREFIX: '',
        PROMPT_MAX_LENGTH: ' ',
        GROK_MODEL: '',
      };
      expect(loadConfig(oneName)).toMatchObject({ legacyNames: ['API_GROK'], originalLook: true, promptPrefix: HOUSE_STYLE, promptMaxLength: 700 });
    });

    it('says so in the start line, with the prefix and the cut in force', () => {
      expect(describeConfig(loadConfig(storybang))).toMatchObject({ originalLook: true, promptPrefix: HOUSE_STYLE, promptMaxLength: 700 });
      expect(describeConfig(loadConfig(minimal))).toMatchObject({ originalLook: false, promptPrefix: '', promptMaxLength: 1000 });
    });

    it.each([
      [{ PROMPT_PREFIX: 'Watercolour: ' }, { promptPrefix: 'Watercolour: ', promptMaxLength: 1000 }],
      [{ PROMPT_PREFIX: ' ' }, { promptPrefix: ' ', promptMaxLength: 1000 }],
      [{ PROMPT_MAX_LENGTH: '700' }, { promptPrefix: '', promptMaxLength: 700 }],
      [{ GROK_MODEL: 'grok-imagine-image' }, { promptPrefix: '', promptMaxLength: 1000 }],
      [{ GROK_MODEL: 'grok-2-image-1212' }, { promptPrefix: '', promptMaxLength: 1000 }],
    ])('not once %j is set: what is set and the defaults', (set, look) => {
      expect(loadConfig({ ...storybang, ...set })).toMatchObject({ originalLook: false, ...look });
    });

    it('not with the new names only, nor when every original name is overridden', () => {
      expect(loadConfig(minimal)).toMatchObject({ originalLook: false, promptPrefix: '', promptMaxLength: 1000 });
      const overridden = { ...storybang, REDIS_URL: 'redis://new-redis:6379', GROK_API_KEY: 'xai-new-key', JWT_SECRET: 'jwt-secret' };
      expect(loadConfig(overridden)).toMatchObject({ legacyNames: [], originalLook: false, promptPrefix: '', promptMaxLength: 1000 });
    });
  });

  it('reports malformed original names together with the other problems', () => {
    expect(problems({ ...storybang, BULL_GENERATOR_HOST: 'a b', BULL_GENERATOR_PORT: '0', API_JWT: 'jwt', CONCURRENCY: '0' })).toEqual([
      expect.stringMatching(/^BULL_GENERATOR_PORT must be a port number/),
      expect.stringMatching(/^BULL_GENERATOR_HOST must be a host name/),
      expect.stringMatching(/^CONCURRENCY must be a whole number/),
      expect.stringMatching(/^API_JWT must be the JWT service's http or https base URL/),
    ]);
  });
});
