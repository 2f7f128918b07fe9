import crypto from 'node:crypto';
import http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import jwt from 'jsonwebtoken';
import nodeFetch from 'node-fetch';
import { WorkerError } from '../../../src/base/errors';
import { defaultAlgorithms, validateAlgorithms, validatePublicKey } from '../../../src/base/jwtAlgorithms';
import { JwtSettings, JwtTokenVerifier, MAX_TOKEN_LENGTH, RemoteTokenVerifier } from '../../../src/pipeline/steps/tokenVerifier';
import { freePort } from '../../../src/demo/redisServer';
import { INVALID_OR_EXPIRED, NO_TOKEN, startStorybangJwt, StorybangJwt, VALID } from '../../support/storybangJwt';

const SECRET = 'a-test-secret-that-is-long-enough-for-hs256';
const live = (): AbortSignal => new AbortController().signal;
const now = (): number => Math.floor(Date.now() / 1000);

function hsVerifier(overrides: Partial<JwtSettings> = {}): JwtTokenVerifier {
  return new JwtTokenVerifier({
    secret: SECRET,
    algorithms: defaultAlgorithms('secret'),
    clockToleranceS: 5,
    userClaim: 'Id',
    ...overrides,
  });
}

function publicKeyVerifier(publicKey: string, overrides: Partial<JwtSettings> = {}): JwtTokenVerifier {
  return new JwtTokenVerifier({
    publicKey,
    algorithms: defaultAlgorithms('publicKey'),
    clockToleranceS: 5,
    userClaim: 'Id',
    ...overrides,
  });
}

const b64url = (value: unknown): string => Buffer.from(JSON.stringify(value)).toString('base64url');

/** Signs by hand, so a test can make tokens jsonwebtoken itself would refuse to make. */
function handMade(header: object, payload: object, hmacKey?: string): string {
  const unsigned = `${b64url(header)}.${b64url(payload)}`;
  const signature = hmacKey === undefined ? '' : crypto.createHmac('sha256', hmacKey).update(unsigned).digest('base64url');
  return `${unsigned}.${signature}`;
}

async function rejection(promise: Promise<unknown>): Promise<WorkerError> {
  const err = await promise.then(
    () => {
      throw new Error('expected a rejection');
    },
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(WorkerError);
  return err as WorkerError;
}

async function expectRefused(promise: Promise<unknown>, code: 'INVALID_TOKEN' | 'SESSION_EXPIRED', token?: string): Promise<WorkerError> {
  const err = await rejection(promise);
  expect(err.code).toBe(code);
  expect(err.transient).toBe(false);
  if (typeof token === 'string') expect(err.message).not.toContain(token);
  return err;
}

function pemPair(type: 'rsa' | 'ec'): { privateKey: string; publicKey: string } {
  const pair = type === 'rsa' ? crypto.generateKeyPairSync('rsa', { modulusLength: 2048 }) : crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' });
  return {
    privateKey: pair.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
    publicKey: pair.publicKey.export({ type: 'spki', format: 'pem' }).toString(),
  };
}

describe('JwtTokenVerifier with a secret', () => {
  const verifier = hsVerifier();

  it('accepts a valid HS256 token for its user', async () => {
    const token = jwt.sign({ Id: 'alice' }, SECRET, { algorithm: 'HS256', expiresIn: 60 });
    await expect(verifier.verify(token, 'alice', live())).resolves.toBeUndefined();
  });

  it('reports an expired token as SESSION_EXPIRED with the contract message', async () => {
    const token = jwt.sign({ Id: 'alice', exp: now() - 60 }, SECRET);
    const err = await expectRefused(verifier.verify(token, 'alice', live()), 'SESSION_EXPIRED', token);
    expect(err.message).toBe('Session expired. Please log in again.');
    expect(err.cause).toBeInstanceOf(jwt.TokenExpiredError);
  });

  it('lets a token expired within the clock tolerance through', async () => {
    // The clock stands still between signing and verifying: a slow machine cannot push the token past the tolerance.
    const NOW_S = 1_750_000_000;
    const clock = jest.spyOn(Date, 'now').mockReturnValue(NOW_S * 1000);
    try {
      const token = jwt.sign({ Id: 'alice', exp: NOW_S - 2 }, SECRET);
      await expect(hsVerifier({ clockToleranceS: 5 }).verify(token, 'alice', live())).resolves.toBeUndefined();
      await expect(hsVerifier({ clockToleranceS: 3 }).verify(token, 'alice', live())).resolves.toBeUndefined();
      // jsonwebtoken counts the token expired from exp + tolerance on, that second included.
      await expectRefused(hsVerifier({ clockToleranceS: 2 }).verify(token, 'alice', live()), 'SESSION_EXPIRED');
      await expectRefused(hsVerifier({ clockToleranceS: 0 }).verify(token, 'alice', live()), 'SESSION_EXPIRED');
    } finally {
      clock.mockRestore();
    }
  });

  it('refuses a token that is not valid yet', async () => {
    const token = jwt.sign({ Id: 'alice', nbf: now() + 600 }, SECRET);
    const err = await expectRefused(verifier.verify(token, 'alice', live()), 'INVALID_TOKEN', token);
    expect(err.message).toMatch(/not valid yet/);
  });

  it('refuses a token signed with another secret', async () => {
    const token = jwt.sign({ Id: 'alice' }, 'some-other-secret-of-decent-length');
    const err = await expectRefused(verifier.verify(token, 'alice', live()), 'INVALID_TOKEN', token);
    expect(err.message).toMatch(/signature/);
  });

  it('refuses an unsigned alg:none token', async () => {
    const token = handMade({ alg: 'none', typ: 'JWT' }, { Id: 'alice' });
    expect(token.endsWith('.')).toBe(true);
    await expectRefused(verifier.verify(token, 'alice', live()), 'INVALID_TOKEN', token);
  });

  it('refuses a token signed with an algorithm outside the allow-list', async () => {
    const token = jwt.sign({ Id: 'alice' }, SECRET, { algorithm: 'HS512' });
    await expect(verifier.verify(token, 'alice', live())).resolves.toBeUndefined();
    await expectRefused(hsVerifier({ algorithms: ['HS256'] }).verify(token, 'alice', live()), 'INVALID_TOKEN', token);
  });

  it('checks issuer and audience when configured', async () => {
    const strict = hsVerifier({ issuer: 'storybang', audience: 'grok-worker' });
    const good = jwt.sign({ Id: 'alice' }, SECRET, { issuer: 'storybang', audience: 'grok-worker' });
    const wrongIssuer = jwt.sign({ Id: 'alice' }, SECRET, { issuer: 'elsewhere', audience: 'grok-worker' });
    const wrongAudience = jwt.sign({ Id: 'alice' }, SECRET, { issuer: 'storybang', audience: 'billing' });
    const neither = jwt.sign({ Id: 'alice' }, SECRET);
    await expect(strict.verify(good, 'alice', live())).resolves.toBeUndefined();
    expect((await expectRefused(strict.verify(wrongIssuer, 'alice', live()), 'INVALID_TOKEN')).message).toMatch(/issuer/);
    expect((await expectRefused(strict.verify(wrongAudience, 'alice', live()), 'INVALID_TOKEN')).message).toMatch(/audience/);
    await expectRefused(strict.verify(neither, 'alice', live()), 'INVALID_TOKEN');
  });

  it("refuses another user's token", async () => {
    const token = jwt.sign({ Id: 'bob' }, SECRET);
    const err = await expectRefused(verifier.verify(token, 'alice', live()), 'INVALID_TOKEN', token);
    expect(err.message).toBe('Token does not belong to this user');
  });

  it('refuses a token without the user claim, or with a claim that is not a scalar', async () => {
    for (const payload of [{ sub: 'alice' }, { Id: ['alice'] }, { Id: { value: 'alice' } }, { Id: null }, { Id: true }]) {
      const token = jwt.sign(payload, SECRET);
      await expectRefused(verifier.verify(token, 'alice', live()), 'INVALID_TOKEN', token);
    }
  });

  it('reads the claim named by userClaim', async () => {
    const token = jwt.sign({ Id: 'bob', uid: 'alice' }, SECRET);
    await expect(hsVerifier({ userClaim: 'uid' }).verify(token, 'alice', live())).resolves.toBeUndefined();
    await expectRefused(hsVerifier({ userClaim: 'uid' }).verify(token, 'bob', live()), 'INVALID_TOKEN');
  });

  it('accepts a numeric claim equal to the numeric-string Id, and only an exact match', async () => {
    const token = jwt.sign({ Id: 42 }, SECRET);
    await expect(verifier.verify(token, '42', live())).resolves.toBeUndefined();
    await expectRefused(verifier.verify(token, '042', live()), 'INVALID_TOKEN');
    await expectRefused(verifier.verify(token, '42.0', live()), 'INVALID_TOKEN');
    await expectRefused(verifier.verify(jwt.sign({ Id: 'Alice' }, SECRET), 'alice', live()), 'INVALID_TOKEN');
  });

  it('refuses truncated and malformed tokens', async () => {
    const token = jwt.sign({ Id: 'alice' }, SECRET);
    const [header, payload] = token.split('.');
    for (const bad of [token.slice(0, -5), token.slice(0, 40), `${header}.${payload}`, `${token}.x`, '..', 'not a jwt']) {
      await expectRefused(verifier.verify(bad, 'alice', live()), 'INVALID_TOKEN', bad);
    }
  });

  it('refuses an oversized token before verifying it', async () => {
    const token = jwt.sign({ Id: 'alice', padding: 'x'.repeat(MAX_TOKEN_LENGTH) }, SECRET);
    expect(token.length).toBeGreaterThan(MAX_TOKEN_LENGTH);
    const err = await expectRefused(verifier.verify(token, 'alice', live()), 'INVALID_TOKEN', token);
    expect(err.message).toMatch(/longer than 8192/);
    expect(err.cause).toBeUndefined();
  });

  it('refuses an empty token and a token that is not a string', async () => {
    for (const bad of ['', 12345, { token: 'x' }, null, undefined]) {
      const err = await expectRefused(verifier.verify(bad as string, 'alice', live()), 'INVALID_TOKEN');
      expect(err.message).toMatch(/^Invalid token: /);
    }
  });

  it('never puts the token in an error message', async () => {
    const tokens = [
      jwt.sign({ Id: 'alice' }, 'wrong-secret-wrong-secret-wrong'),
      jwt.sign({ Id: 'alice', exp: now() - 60 }, SECRET),
      jwt.sign({ Id: 'bob' }, SECRET),
      handMade({ alg: 'none' }, { Id: 'alice' }),
      `${b64url({ alg: 'HS256' })}.not-json.sig`,
    ];
    for (const token of tokens) {
      const err = await rejection(verifier.verify(token, 'alice', live()));
      for (const part of token.split('.').filter((p) => p.length > 8)) expect(err.message).not.toContain(part);
    }
  });

  it('does no work once the caller has aborted', async () => {
    const controller = new AbortController();
    controller.abort();
    const token = jwt.sign({ Id: 'alice' }, SECRET);
    await expect(verifier.verify(token, 'alice', controller.signal)).rejects.toMatchObject({ name: 'AbortError' });
  });
});

describe('JwtTokenVerifier with a public key', () => {
  const rsa = pemPair('rsa');
  const ec = pemPair('ec');

  it('accepts RS256 and PS256 tokens signed by the matching private key', async () => {
    const verifier = publicKeyVerifier(rsa.publicKey);
    for (const algorithm of ['RS256', 'PS256'] as const) {
      const token = jwt.sign({ Id: 'alice' }, rsa.privateKey, { algorithm, expiresIn: 60 });
      await expect(verifier.verify(token, 'alice', live())).resolves.toBeUndefined();
    }
  });

  it('accepts an ES256 token signed by the matching private key', async () => {
    const token = jwt.sign({ Id: 'alice' }, ec.privateKey, { algorithm: 'ES256', expiresIn: 60 });
    await expect(publicKeyVerifier(ec.publicKey).verify(token, 'alice', live())).resolves.toBeUndefined();
  });

  it('refuses a token signed by another key pair', async () => {
    const other = pemPair('rsa');
    const token = jwt.sign({ Id: 'alice' }, other.privateKey, { algorithm: 'RS256' });
    await expectRefused(publicKeyVerifier(rsa.publicKey).verify(token, 'alice', live()), 'INVALID_TOKEN', token);
  });

  it('refuses algorithm confusion: an HS256 token keyed with the public key PEM', async () => {
    const token = handMade({ alg: 'HS256', typ: 'JWT' }, { Id: 'alice' }, rsa.publicKey);
    // The forged token is a correct HMAC over the PEM text: a verifier that took the PEM as a secret would accept it.
    await expect(hsVerifier({ secret: rsa.publicKey }).verify(token, 'alice', live())).resolves.toBeUndefined();
    await expectRefused(publicKeyVerifier(rsa.publicKey).verify(token, 'alice', live()), 'INVALID_TOKEN', token);
    expect(() => publicKeyVerifier(rsa.publicKey, { algorithms: ['RS256', 'HS256'] })).toThrow(/HS256/);
  });

  it('refuses an alg:none token', async () => {
    const token = handMade({ alg: 'none' }, { Id: 'alice' });
    await expectRefused(publicKeyVerifier(rsa.publicKey).verify(token, 'alice', live()), 'INVALID_TOKEN', token);
  });

  it('refuses to start with a key that is not a public key or fits none of the algorithms', () => {
    expect(() => publicKeyVerifier('-----BEGIN PUBLIC KEY-----\nnope\n-----END PUBLIC KEY-----')).toThrow(/PEM/);
    expect(() => publicKeyVerifier(ec.publicKey, { algorithms: ['RS256'] })).toThrow(/ec key/);
    expect(() => new JwtTokenVerifier({ algorithms: ['HS256'], clockToleranceS: 0, userClaim: 'Id' })).toThrow(/exactly one/);
    expect(() => new JwtTokenVerifier({ secret: SECRET, publicKey: rsa.publicKey, algorithms: ['HS256'], clockToleranceS: 0, userClaim: 'Id' })).toThrow(
      /exactly one/,
    );
  });

  it('validatePublicKey explains what is wrong', () => {
    expect(validatePublicKey(rsa.publicKey, defaultAlgorithms('publicKey'))).toBeUndefined();
    expect(validatePublicKey(ec.publicKey, ['ES384'])).toMatch(/cannot verify/);
    expect(validatePublicKey('secret', ['RS256'])).toMatch(/not a PEM public key/);
  });
});

describe('validateAlgorithms', () => {
  it('accepts each default family', () => {
    expect(validateAlgorithms('secret', defaultAlgorithms('secret'))).toBeUndefined();
    expect(validateAlgorithms('publicKey', defaultAlgorithms('publicKey'))).toBeUndefined();
    expect(defaultAlgorithms('secret')).toEqual(['HS256', 'HS384', 'HS512']);
    expect(defaultAlgorithms('publicKey')).toEqual(expect.arrayContaining(['RS256', 'RS512', 'PS256', 'PS512', 'ES256', 'ES384', 'ES512']));
    expect(defaultAlgorithms('publicKey')).not.toEqual(expect.arrayContaining(['HS256']));
  });

  it('rejects none, in any case, for either key kind', () => {
    for (const none of ['none', 'NONE', 'None']) {
      expect(validateAlgorithms('secret', ['HS256', none])).toMatch(/none/);
      expect(validateAlgorithms('publicKey', [none])).toMatch(/none/);
    }
  });

  it('rejects algorithms of the wrong family', () => {
    expect(validateAlgorithms('publicKey', ['RS256', 'HS256'])).toMatch(/HS256/);
    expect(validateAlgorithms('secret', ['RS256'])).toMatch(/RS256/);
    expect(validateAlgorithms('secret', ['hs256'])).toMatch(/hs256/);
    expect(validateAlgorithms('secret', [])).toMatch(/empty/);
  });

  it('makes the constructor refuse a bad allow-list', () => {
    expect(() => hsVerifier({ algorithms: ['HS256', 'none'] })).toThrow(/none/);
  });
});

describe('RemoteTokenVerifier', () => {
  type Handler = (req: http.IncomingMessage, body: string, res: http.ServerResponse) => void;
  let handler: Handler;
  let server: http.Server;
  let url: string;
  const sockets = new Set<Socket>();
  const received: { method?: string; contentType?: string; body: string }[] = [];

  beforeAll(async () => {
    server = http.createServer((req, res) => {
      let body = '';
      req.setEncoding('utf8');
      req.on('data', (chunk: string) => (body += chunk));
      req.on('end', () => {
        received.push({ method: req.method, contentType: req.headers['content-type'], body });
        handler(req, body, res);
      });
    });
    server.on('connection', (socket) => {
      sockets.add(socket);
      socket.on('close', () => sockets.delete(socket));
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/verify`;
  });

  afterAll(async () => {
    for (const socket of sockets) socket.destroy();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });

  beforeEach(() => {
    received.length = 0;
  });

  const answer =
    (status: number, body: unknown): Handler =>
    (_req, _body, res) => {
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(typeof body === 'string' ? body : JSON.stringify(body));
    };

  const remote = (timeoutMs = 2000): RemoteTokenVerifier => new RemoteTokenVerifier({ url, timeoutMs, userClaim: 'Id' });
  const tokenFor = (Id: unknown): string => jwt.sign({ Id }, 'whatever-the-service-uses');

  it('posts exactly {Token} as JSON', async () => {
    handler = answer(200, { Status: true });
    const token = tokenFor('alice');
    await remote().verify(token, 'alice', live());
    expect(received).toHaveLength(1);
    expect(received[0].method).toBe('POST');
    expect(received[0].contentType).toMatch(/^application\/json/);
    expect(received[0].body).toBe(JSON.stringify({ Token: token }));
    expect(JSON.parse(received[0].body)).toEqual({ Token: token });
  });

  it('accepts Status true whose claims name the user', async () => {
    const token = tokenFor('alice');
    for (const body of [
      { Status: true, Data: { Id: 'alice' } },
      { Status: true, decoded: { Id: 'alice' } },
      { Status: true, Id: 'alice' },
    ]) {
      handler = answer(200, body);
      await expect(remote().verify(token, 'alice', live())).resolves.toBeUndefined();
    }
  });

  it('refuses Status true whose claims name another user', async () => {
    const token = tokenFor('alice');
    for (const body of [
      { Status: true, Data: { Id: 'bob' } },
      { Status: true, data: { Id: 'bob' } },
      { Status: true, decoded: { Id: 'bob' } },
      { Status: true, Id: 'bob' },
      { Status: true, Data: { Id: 'alice' }, Id: 'bob' },
    ]) {
      handler = answer(200, body);
      const err = await expectRefused(remote().verify(token, 'alice', live()), 'INVALID_TOKEN', token);
      expect(err.message).toBe('Token does not belong to this user');
    }
  });

  it('falls back to the vouched-for token payload when the answer carries no claims', async () => {
    handler = answer(200, { Status: true, Message: 'ok' });
    await expect(remote().verify(tokenFor('alice'), 'alice', live())).resolves.toBeUndefined();
    await expectRefused(remote().verify(tokenFor('bob'), 'alice', live()), 'INVALID_TOKEN');
  });

  it('refuses Status false as INVALID_TOKEN', async () => {
    handler = answer(200, { Status: false, Message: 'invalid signature' });
    const token = tokenFor('alice');
    const err = await expectRefused(remote().verify(token, 'alice', live()), 'INVALID_TOKEN', token);
    expect(err.message).toMatch(/verification service/);
  });

  it('reports Status false about expiry as SESSION_EXPIRED', async () => {
    for (const body of [
      { Status: false, Message: 'jwt expired' },
      { Status: false, error: { name: 'TokenExpiredError' } },
    ]) {
      handler = answer(200, body);
      const err = await expectRefused(remote().verify(tokenFor('alice'), 'alice', live()), 'SESSION_EXPIRED');
      expect(err.message).toBe('Session expired. Please log in again.');
    }
  });

  it('reads a refusal sent with a 4xx status, and treats other 4xx answers as INVALID_TOKEN', async () => {
    handler = answer(401, { Status: false, message: 'Token has expired' });
    await expectRefused(remote().verify(tokenFor('alice'), 'alice', live()), 'SESSION_EXPIRED');
    handler = answer(400, '<html>Bad Request</html>');
    const err = await expectRefused(remote().verify(tokenFor('alice'), 'alice', live()), 'INVALID_TOKEN');
    expect(err.status).toBe(400);
  });

  it('keeps a token echoed by the service out of messages', async () => {
    const token = tokenFor('alice');
    handler = answer(200, { Status: false, Message: `bad token ${token}` });
    const err = await expectRefused(remote().verify(token, 'alice', live()), 'INVALID_TOKEN', token);
    expect((err.cause as Error).message).not.toContain(token);
  });

  it('treats the statuses retryPolicy calls transient as transient: 503, 429, 408, any 5xx', async () => {
    for (const status of [503, 429, 408, 500, 507]) {
      handler = answer(status, { Status: false, Message: 'busy' });
      const err = await rejection(remote().verify(tokenFor('alice'), 'alice', live()));
      expect(err.transient).toBe(true);
      expect(err.status).toBe(status);
    }
  });

  it('treats a malformed 2xx answer as transient', async () => {
    for (const body of ['not json', '[]', '{"Status":"true"}', '{}']) {
      handler = answer(200, body);
      const err = await rejection(remote().verify(tokenFor('alice'), 'alice', live()));
      expect(err.transient).toBe(true);
    }
  });

  it('gives up on a hanging service after timeoutMs, as transient', async () => {
    handler = () => undefined;
    const err = await rejection(remote(200).verify(tokenFor('alice'), 'alice', live()));
    expect(err.transient).toBe(true);
    expect(err.message).toMatch(/did not answer within 200 ms/);
  });

  it("rethrows the caller's abort as an AbortError, not a verification failure", async () => {
    handler = () => undefined;
    const controller = new AbortController();
    setTimeout(() => controller.abort(), 50);
    const err = await remote(10_000)
      .verify(tokenFor('alice'), 'alice', controller.signal)
      .catch((e: unknown) => e);
    expect(err).not.toBeInstanceOf(WorkerError);
    expect(err).toMatchObject({ name: 'AbortError' });
  });

  it('treats a refused connection as transient', async () => {
    const port = await freePort();
    const verifier = new RemoteTokenVerifier({ url: `http://127.0.0.1:${port}/verify`, timeoutMs: 2000, userClaim: 'Id' });
    const err = await rejection(verifier.verify(tokenFor('alice'), 'alice', live()));
    expect(err.transient).toBe(true);
    expect(err.message).toMatch(/unreachable/);
  });

  it('reads a nested decoded payload: a claim holding the claim', async () => {
    const token = tokenFor('alice');
    handler = answer(200, { Status: true, Id: { Id: 'alice', iat: 1, exp: 2 } });
    await expect(remote().verify(token, 'alice', live())).resolves.toBeUndefined();
    for (const Id of [{ Id: 'bob', iat: 1 }, { user: 'alice' }, { Id: { Id: 'alice' } }]) {
      handler = answer(200, { Status: true, Id });
      await expectRefused(remote().verify(token, 'alice', live()), 'INVALID_TOKEN');
    }
  });

  it('reads the refusal text from Response', async () => {
    handler = answer(401, { Status: false, Response: 'Invalid token or session expired. Please log in again.' });
    await expectRefused(remote().verify(tokenFor('alice'), 'alice', live()), 'SESSION_EXPIRED');
    handler = answer(401, { Status: false, Response: 'Signature mismatch' });
    const err = await expectRefused(remote().verify(tokenFor('alice'), 'alice', live()), 'INVALID_TOKEN');
    expect((err.cause as Error).message).toMatch(/Signature mismatch/);
  });

  it('refuses junk without asking the service', async () => {
    handler = answer(200, { Status: true });
    for (const bad of ['', 'x'.repeat(MAX_TOKEN_LENGTH + 1), 'a.b', null]) {
      await expectRefused(remote().verify(bad as string, 'alice', live()), 'INVALID_TOKEN');
    }
    expect(received).toHaveLength(0);
  });
});

describe('RemoteTokenVerifier against the StoryBang JWT service', () => {
  let service: StorybangJwt;
  let verifier: RemoteTokenVerifier;

  beforeAll(async () => {
    service = await startStorybangJwt();
    // What the original .env's API_JWT becomes (config: API_JWT + /Verify_Jwt).
    verifier = new RemoteTokenVerifier({ url: `${service.baseUrl}/Verify_Jwt`, timeoutMs: 2000, userClaim: 'Id' });
  });

  afterAll(async () => {
    await service.close();
  });

  it('stands in faithfully: the four answers, exactly', async () => {
    const post = async (path: string, body: unknown): Promise<{ status: number; body: unknown }> => {
      const res = await fetch(`${service.baseUrl}${path}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
      return { status: res.status, body: await res.json() };
    };
    const created = await post('/Create_Jwt', { Id: 'alice' });
    expect(created).toEqual({ status: 200, body: { Status: true, Response: 'Security created successfully', Content: expect.any(String) } });
    const token = (created.body as { Content: string }).Content;
    const decoded = jwt.decode(token, { complete: true });
    expect(decoded?.header.alg).toBe('HS256');
    expect(decoded?.payload).toEqual({ Id: 'alice', iat: expect.any(Number), exp: expect.any(Number) });
    const { iat, exp } = decoded!.payload as jwt.JwtPayload;
    expect(exp! - iat!).toBe(3600);

    expect(await post('/Verify_Jwt', { Token: token })).toEqual({ status: 200, body: { Status: true, Response: VALID, Id: { Id: 'alice', iat, exp } } });
    expect(await post('/Verify_Jwt', { Token: service.expired('alice') })).toEqual({ status: 401, body: { Status: false, Response: INVALID_OR_EXPIRED } });
    expect(await post('/Verify_Jwt', { Token: `${token}x` })).toEqual({ status: 401, body: { Status: false, Response: INVALID_OR_EXPIRED } });
    expect(await post('/Verify_Jwt', {})).toEqual({ status: 401, body: { Status: false, Response: NO_TOKEN } });
  });

  it('accepts a token it created for its own user', async () => {
    const token = await service.create('alice');
    await expect(verifier.verify(token, 'alice', live())).resolves.toBeUndefined();
    expect(service.verifyRequests.at(-1)).toEqual({ Token: token });
  });

  it("refuses another user's valid token: the nested claims name the owner", async () => {
    const bobs = await service.create('bob');
    const err = await expectRefused(verifier.verify(bobs, 'alice', live()), 'INVALID_TOKEN', bobs);
    expect(err.message).toBe('Token does not belong to this user');
  });

  it('reports an expired token as SESSION_EXPIRED', async () => {
    const stale = service.expired('alice');
    const err = await expectRefused(verifier.verify(stale, 'alice', live()), 'SESSION_EXPIRED', stale);
    expect(err.status).toBe(401);
  });

  it('reports a token it did not sign as SESSION_EXPIRED: its answer allows that the session ran out', async () => {
    const forged = jwt.sign({ Id: 'alice' }, 'not-the-service-secret');
    const err = await expectRefused(verifier.verify(forged, 'alice', live()), 'SESSION_EXPIRED', forged);
    expect((err.cause as Error).message).toContain(INVALID_OR_EXPIRED);
  });

  it('reads the no-token answer as SESSION_EXPIRED (a body lost on the way reaches it as no token)', async () => {
    // The verifier never sends an empty token itself (it refuses one first), so a proxy that drops the body stands in.
    const dropsBody = ((url, init) => nodeFetch(url, { ...init, body: '{}' })) as typeof nodeFetch;
    const lossy = new RemoteTokenVerifier({ url: `${service.baseUrl}/Verify_Jwt`, timeoutMs: 2000, userClaim: 'Id', fetch: dropsBody });
    const err = await expectRefused(lossy.verify(await service.create('alice'), 'alice', live()), 'SESSION_EXPIRED');
    expect((err.cause as Error).message).toContain(NO_TOKEN);
    expect(service.verifyRequests.at(-1)).toEqual({});
  });

  it('passes its tokens to a local verifier given its secret, for their own user only', async () => {
    const local = hsVerifier({ secret: service.secret, algorithms: ['HS256'] });
    await expect(local.verify(await service.create('alice'), 'alice', live())).resolves.toBeUndefined();
    await expectRefused(local.verify(await service.create('bob'), 'alice', live()), 'INVALID_TOKEN');
    await expectRefused(local.verify(service.expired('alice'), 'alice', live()), 'SESSION_EXPIRED');
  });

  it('treats the service being down as transient', async () => {
    const token = await service.create('alice');
    const down = await startStorybangJwt();
    const url = `${down.baseUrl}/Verify_Jwt`;
    await down.close();
    const err = await rejection(new RemoteTokenVerifier({ url, timeoutMs: 2000, userClaim: 'Id' }).verify(token, 'alice', live()));
    expect(err.transient).toBe(true);
    expect(err.message).toMatch(/unreachable/);
  });
});
