import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import Bull from 'bull';
import Redis from 'ioredis';
import jwt from 'jsonwebtoken';
import { CliIO } from '../../src/cli/args';
import { main as enqueue, parseNumber, SIGNED_TOKEN_TTL_S } from '../../src/cli/enqueue';
import { formatAge, main as queueStats, STATES } from '../../src/cli/queueStats';
import { escapeGlob } from '../../src/redis/scripts';
import { freePort } from '../../src/demo/redisServer';
import { createImageQueue, enqueueImageJob } from '../../src/producer';
import { redisOptionsFromUrl } from '../../src/redis/connections';
import { JwtTokenVerifier } from '../../src/pipeline/steps/tokenVerifier';
import { redisUrl, signToken, uniqueQueueName } from '../support/helpers';
import { startStorybangJwt, StorybangJwt } from '../support/storybangJwt';

const SECRET = 'cli-test-secret-0123456789';

/** The test Redis as the original StoryBang worker's .env names it. */
function bullGenerator(): { BULL_GENERATOR_HOST: string; BULL_GENERATOR_PORT: string } {
  const url = new URL(redisUrl());
  return { BULL_GENERATOR_HOST: url.hostname, BULL_GENERATOR_PORT: url.port || '6379' };
}
const DIST_CLI = path.resolve(__dirname, '..', '..', 'dist', 'cli');

interface Captured {
  io: CliIO;
  stdout(): string;
  stderr(): string;
  /** stdout as JSON lines. */
  lines(): Array<Record<string, unknown>>;
}

function capture(): Captured {
  const out: string[] = [];
  const err: string[] = [];
  return {
    io: { stdout: { write: (s: string) => out.push(s) }, stderr: { write: (s: string) => err.push(s) } },
    stdout: () => out.join(''),
    stderr: () => err.join(''),
    lines: () =>
      out
        .join('')
        .split('\n')
        .filter(Boolean)
        .map((l) => JSON.parse(l) as Record<string, unknown>),
  };
}

/** Runs a compiled command as `npm run` does, in a directory of its own (its own .env, or none). */
function runScript(script: string, args: string[], env: Record<string, string>, cwd: string): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [path.join(DIST_CLI, script), ...args], { cwd, env: { PATH: process.env.PATH ?? '', ...env } });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

let redis: Redis;
let queueName: string;
let queue: Bull.Queue;
let env: Record<string, string>;
const extraQueues: Bull.Queue[] = [];

beforeAll(() => {
  redis = new Redis(redisOptionsFromUrl(redisUrl()));
});

afterAll(() => {
  redis.disconnect();
});

beforeEach(() => {
  queueName = uniqueQueueName('cli');
  queue = createImageQueue(redisUrl(), queueName);
  env = { REDIS_URL: redisUrl(), QUEUE_NAME: queueName };
});

afterEach(async () => {
  for (const q of extraQueues.splice(0)) await q.close();
  await queue.obliterate({ force: true }).catch(() => undefined);
  await queue.close();
  await removeKeys(`bull:${escapeGlob(queueName)}:*`);
});

async function removeKeys(pattern: string): Promise<void> {
  const keys = await redis.keys(pattern);
  if (keys.length) await redis.del(...keys);
}

function queueKeys(): Promise<string[]> {
  return redis.keys(`bull:${escapeGlob(queueName)}:*`);
}

describe('enqueue', () => {
  it('signs a token the worker accepts for that user, and never prints it', async () => {
    const out = capture();

    const code = await enqueue(['--id', 'alice', '--prompt', 'A red fox asleep in snow', '--number', '7'], { ...env, JWT_SECRET: SECRET }, out.io);

    expect(out.stderr()).toBe('');
    expect(code).toBe(0);
    expect(out.lines()).toEqual([{ jobId: expect.any(String), queue: queueName, Id: 'alice', Number: 7 }]);
    const job = await queue.getJob(out.lines()[0].jobId as string);
    expect(job?.data).toEqual({ Id: 'alice', Prompt: 'A red fox asleep in snow', Number: 7, Token: expect.any(String) });
    expect(job?.opts).toMatchObject({ attempts: 1, removeOnComplete: true, removeOnFail: true });

    const token = job!.data.Token as string;
    const payload = jwt.verify(token, SECRET, { algorithms: ['HS256'] }) as jwt.JwtPayload;
    expect(payload.Id).toBe('alice');
    expect(payload.exp! - payload.iat!).toBe(SIGNED_TOKEN_TTL_S);
    expect(jwt.decode(token, { complete: true })?.header.alg).toBe('HS256');

    const verifier = new JwtTokenVerifier({ secret: SECRET, algorithms: ['HS256', 'HS384', 'HS512'], clockToleranceS: 5, userClaim: 'Id' });
    await expect(verifier.verify(token, 'alice', new AbortController().signal)).resolves.toBeUndefined();
    await expect(verifier.verify(token, 'bob', new AbortController().signal)).rejects.toMatchObject({ code: 'INVALID_TOKEN' });

    expect(out.stdout()).not.toContain(token);
    expect(out.stdout()).not.toContain(token.split('.')[2]);
  });

  it('signs with JWT_USER_CLAIM, JWT_ISSUER and JWT_AUDIENCE when they are set', async () => {
    const out = capture();
    const settings = { JWT_SECRET: SECRET, JWT_USER_CLAIM: 'sub', JWT_ISSUER: 'storybang', JWT_AUDIENCE: 'images', JWT_ALGORITHMS: 'HS512' };

    expect(await enqueue(['--id', 'alice', '--prompt', 'A fox'], { ...env, ...settings }, out.io)).toBe(0);

    const token = (await queue.getJob(out.lines()[0].jobId as string))!.data.Token as string;
    expect(jwt.verify(token, SECRET, { algorithms: ['HS512'], issuer: 'storybang', audience: 'images' })).toMatchObject({ sub: 'alice' });
    const verifier = new JwtTokenVerifier({
      secret: SECRET,
      algorithms: ['HS512'],
      issuer: 'storybang',
      audience: 'images',
      clockToleranceS: 5,
      userClaim: 'sub',
    });
    await expect(verifier.verify(token, 'alice', new AbortController().signal)).resolves.toBeUndefined();
  });

  it('uses --token as given, even when JWT_SECRET is set, and never prints it', async () => {
    const out = capture();
    const token = signToken('carol');

    const code = await enqueue(['--id', 'carol', '--prompt', 'A paper boat', '--token', token, '--number', 'slot-a'], { ...env, JWT_SECRET: SECRET }, out.io);

    expect(code).toBe(0);
    const job = await queue.getJob(out.lines()[0].jobId as string);
    expect(job?.data).toEqual({ Id: 'carol', Prompt: 'A paper boat', Token: token, Number: 'slot-a' });
    expect(out.stdout() + out.stderr()).not.toContain(token);
  });

  it('adds --count jobs with --attempts, one line each', async () => {
    const out = capture();

    const code = await enqueue(['--id', 'dave', '--prompt', 'A city of books', '--count', '3', '--attempts', '2'], { ...env, JWT_SECRET: SECRET }, out.io);

    expect(code).toBe(0);
    const lines = out.lines();
    expect(lines).toHaveLength(3);
    expect(new Set(lines.map((l) => l.jobId)).size).toBe(3);
    expect(lines.every((l) => l.Id === 'dave' && l.Number === null && l.queue === queueName)).toBe(true);
    expect(await queue.getWaitingCount()).toBe(3);
    const jobs = await queue.getWaiting();
    expect(jobs.map((j) => j.opts.attempts)).toEqual([2, 2, 2]);
    expect(jobs.every((j) => !('Number' in j.data))).toBe(true);
  });

  it('refuses to run without --token or JWT_SECRET (exit 2), writing nothing', async () => {
    const out = capture();

    const code = await enqueue(['--id', 'alice', '--prompt', 'A fox'], { ...env, JWT_SECRET: '' }, out.io);

    expect(code).toBe(2);
    expect(out.stderr()).toMatch(/--token/);
    expect(out.stderr()).toMatch(/JWT_SECRET/);
    expect(out.stdout()).toBe('');
    expect(await queueKeys()).toEqual([]);
  });

  it.each([
    ['no arguments', []],
    ['no --id', ['--prompt', 'A fox']],
    ['no --prompt', ['--id', 'alice']],
    ['an unknown flag', ['--id', 'alice', '--prompt', 'A fox', '--colour', 'red']],
    ['a positional argument', ['--id', 'alice', '--prompt', 'A fox', 'extra']],
    ['a flag without its value', ['--id', 'alice', '--prompt']],
    ['--count 0', ['--id', 'alice', '--prompt', 'A fox', '--count', '0']],
    ['--count over the limit', ['--id', 'alice', '--prompt', 'A fox', '--count', '10001']],
    ['--attempts that is not a whole number', ['--id', 'alice', '--prompt', 'A fox', '--attempts', '1.5']],
  ])('shows the usage and exits 2 for %s, writing nothing', async (_label, argv) => {
    const out = capture();

    const code = await enqueue(argv, { ...env, JWT_SECRET: SECRET }, out.io);

    expect(code).toBe(2);
    expect(out.stderr()).toMatch(/^enqueue: .+\n/);
    expect(out.stderr()).toContain('Usage: npm run -s enqueue');
    expect(out.stdout()).toBe('');
    expect(await queueKeys()).toEqual([]);
  });

  it.each([
    ['a blank prompt', ['--id', 'alice', '--prompt', '   '], {}, /Prompt must not be blank/],
    ['an Id over 128 characters', ['--id', 'x'.repeat(129), '--prompt', 'A fox'], {}, /Id must be a non-empty string of at most 128/],
    [
      'a REDIS_URL that is not redis',
      ['--id', 'alice', '--prompt', 'A fox'],
      { REDIS_URL: 'http://localhost:6379' },
      /REDIS_URL must be a redis or rediss URL/,
    ],
    [
      'a malformed REDIS_TLS_REJECT_UNAUTHORIZED',
      ['--id', 'alice', '--prompt', 'A fox'],
      { REDIS_TLS_REJECT_UNAUTHORIZED: 'maybe' },
      /REDIS_TLS_REJECT_UNAUTHORIZED must be true or false/,
    ],
  ])('exits 2 with a message for %s, writing nothing', async (_label, argv, overrides, message) => {
    const out = capture();

    const code = await enqueue(argv, { ...env, JWT_SECRET: SECRET, ...overrides }, out.io);

    expect(code).toBe(2);
    expect(out.stderr()).toMatch(message);
    expect(out.stdout()).toBe('');
    expect(await queueKeys()).toEqual([]);
  });

  it('prints the usage on stdout for --help', async () => {
    const out = capture();
    expect(await enqueue(['--help'], env, out.io)).toBe(0);
    expect(out.stdout()).toContain('--prompt <text>');
    expect(out.stderr()).toBe('');
  });

  it('exits 1 with a clear message when Redis does not answer', async () => {
    const out = capture();
    const port = await freePort();

    const code = await enqueue(['--id', 'alice', '--prompt', 'A fox'], { ...env, JWT_SECRET: SECRET, REDIS_URL: `redis://127.0.0.1:${port}` }, out.io);

    expect(code).toBe(1);
    expect(out.stderr()).toMatch(new RegExp(`Redis at redis://127\\.0\\.0\\.1:${port} \\(queue ${queueName}\\) failed: .*ECONNREFUSED`));
    expect(out.stderr()).not.toContain('Usage');
    expect(out.stdout()).toBe('');
  });

  it("refuses settings the worker would refuse: a JWT_ALGORITHMS outside the secret's family (exit 2)", async () => {
    const out = capture();

    const code = await enqueue(['--id', 'alice', '--prompt', 'A fox'], { ...env, JWT_SECRET: SECRET, JWT_ALGORITHMS: 'RS256' }, out.io);

    expect(code).toBe(2);
    expect(out.stderr()).toMatch(/JWT_ALGORITHMS: RS256 cannot be used with an HMAC secret/);
    expect(await queueKeys()).toEqual([]);
  });

  describe("with the original StoryBang worker's .env", () => {
    let service: StorybangJwt;

    beforeAll(async () => {
      service = await startStorybangJwt();
    });

    afterAll(async () => {
      await service.close();
    });

    const storybangEnv = (): Record<string, string> => ({
      ...bullGenerator(),
      QUEUE_NAME: queueName,
      API_JWT: `${service.baseUrl}/`,
      API_GROK: 'xai-original-key',
      PORT_MESSAGES_USERS: 'http://127.0.0.1:4001',
      PORT: '3005',
    });

    it("finds Redis from BULL_GENERATOR_HOST/PORT and has Create_Jwt make the token, as StoryBang's server does", async () => {
      const out = capture();

      const code = await enqueue(['--id', 'alice', '--prompt', 'A lantern in the fog', '--number', '0'], storybangEnv(), out.io);

      expect(out.stderr()).toBe('');
      expect(code).toBe(0);
      const job = await queue.getJob(out.lines()[0].jobId as string);
      expect(job?.opts).toMatchObject({ attempts: 1, removeOnComplete: true, removeOnFail: true });
      const token = job!.data.Token as string;
      // The service's own token: it verifies it, for alice.
      expect(jwt.verify(token, service.secret, { algorithms: ['HS256'] })).toMatchObject({ Id: 'alice' });
      expect(out.stdout()).not.toContain(token);
    });

    it('lets REDIS_URL win over BULL_GENERATOR_HOST/PORT', async () => {
      const out = capture();
      const deadPort = String(await freePort());

      const code = await enqueue(['--id', 'alice', '--prompt', 'A fox'], { ...storybangEnv(), BULL_GENERATOR_PORT: deadPort, REDIS_URL: redisUrl() }, out.io);

      expect(out.stderr()).toBe('');
      expect(code).toBe(0);
      expect(await queue.getWaitingCount()).toBe(1);
    });

    it('names the original variable when it is malformed (exit 2), writing nothing', async () => {
      const out = capture();

      const code = await enqueue(['--id', 'alice', '--prompt', 'A fox'], { ...storybangEnv(), BULL_GENERATOR_PORT: 'six' }, out.io);

      expect(code).toBe(2);
      expect(out.stderr()).toMatch(/^enqueue: BULL_GENERATOR_PORT must be a port number/);
      expect(await queueKeys()).toEqual([]);
    });

    it('exits 1 naming the JWT service when it does not answer, writing nothing', async () => {
      const out = capture();
      const down = await startStorybangJwt();
      await down.close();

      const code = await enqueue(['--id', 'alice', '--prompt', 'A fox'], { ...storybangEnv(), API_JWT: down.baseUrl }, out.io);

      expect(code).toBe(1);
      expect(out.stderr()).toMatch(new RegExp(`^enqueue: The JWT service at ${down.baseUrl}/Create_Jwt did not answer`));
      expect(out.stdout()).toBe('');
      expect(await queueKeys()).toEqual([]);
    });

    it('queue:stats finds the queue the same way', async () => {
      await enqueueImageJob(queue, { Id: 'alice', Prompt: 'A fox', Token: signToken('alice') });
      const out = capture();

      expect(await queueStats(['--json'], storybangEnv(), out.io)).toBe(0);

      expect(out.lines()[0]).toMatchObject({ queue: queueName, counts: { waiting: 1 } });
    });
  });

  it('reads --number as a JSON scalar when it is one, as text otherwise', () => {
    expect(parseNumber('3')).toBe(3);
    expect(parseNumber('-1.5')).toBe(-1.5);
    expect(parseNumber('"3"')).toBe('3');
    expect(parseNumber('true')).toBe(true);
    expect(parseNumber('null')).toBeNull();
    expect(parseNumber('slot-a')).toBe('slot-a');
    expect(parseNumber('{"slot":1}')).toBe('{"slot":1}');
    expect(parseNumber('[1]')).toBe('[1]');
  });
});

describe('queue:stats', () => {
  const NOW = 1_750_000_000_000;

  it('reads the queue under QUEUE_PREFIX, where enqueue put the job', async () => {
    const prefixed = { ...env, QUEUE_PREFIX: 'cli-prefix', JWT_SECRET: SECRET };
    try {
      expect(await enqueue(['--id', 'alice', '--prompt', 'A fox'], prefixed, capture().io)).toBe(0);
      expect(await redis.llen(`cli-prefix:${queueName}:wait`)).toBe(1);
      expect(await queueKeys()).toEqual([]);
      const out = capture();
      expect(await queueStats(['--json'], prefixed, out.io)).toBe(0);
      expect(out.lines()[0]).toMatchObject({ queue: queueName, counts: { waiting: 1 } });
    } finally {
      await removeKeys(`cli-prefix:${escapeGlob(queueName)}:*`);
    }
  });
  /** Bull 4 honours a job's `timestamp` option; its type definitions miss it. */
  const createdAt = (timestamp: number): Bull.JobOptions => ({ timestamp }) as Bull.JobOptions;

  it('counts every state and measures the oldest waiting job from its timestamp', async () => {
    // A real consumer makes one job complete, one fail, and holds a third active.
    const consumer = new Bull(queueName, { prefix: 'bull', redis: redisOptionsFromUrl(redisUrl()) });
    extraQueues.push(consumer);
    let release: () => void = () => undefined;
    const held = new Promise<void>((resolve) => (release = resolve));
    void consumer.process(1, async (job: Bull.Job) => {
      if (job.data.Prompt === 'fail') throw new Error('boom');
      if (job.data.Prompt === 'hold') await held;
    });
    const keep = { removeOnComplete: false, removeOnFail: false };
    const token = signToken('alice');
    const data = (Prompt: string) => ({ Id: 'alice', Prompt, Token: token });
    const settled = (event: 'completed' | 'failed' | 'active') => new Promise<void>((resolve) => consumer.once(event, () => resolve()));

    let done = settled('completed');
    await enqueueImageJob(queue, data('ok'), keep);
    await done;
    done = settled('failed');
    await enqueueImageJob(queue, data('fail'), keep);
    await done;
    done = settled('active');
    await enqueueImageJob(queue, data('hold'), keep);
    await done;
    // FIFO: the first added waits longest. A look at the wrong end of the list would see 30 s.
    await enqueueImageJob(queue, data('wait'), createdAt(NOW - 90_000));
    await enqueueImageJob(queue, data('wait'), createdAt(NOW - 30_000));
    await enqueueImageJob(queue, data('later'), { delay: 600_000 });

    const json = capture();
    const table = capture();
    try {
      expect(await queueStats(['--json'], env, json.io, () => NOW)).toBe(0);
      expect(await queueStats([], env, table.io, () => NOW)).toBe(0);
    } finally {
      release();
    }

    expect(json.stderr()).toBe('');
    expect(json.lines()).toEqual([
      {
        queue: queueName,
        counts: { waiting: 2, active: 1, delayed: 1, completed: 1, failed: 1, paused: 0 },
        oldestWaitingAgeMs: 90_000,
        checkpoints: 0,
        // `waiting` is Bull's active list less what the fair queue runs, retries and holds: here the one job a
        // plain Bull consumer holds active.
        fair: { usersWaiting: 0, waiting: 1, running: 0, retrying: 0, heldBack: 0, answers: 0, joined: 0, heldBackTotal: 0 },
        bill: { day: expect.stringMatching(/^\d{4}-\d\d-\d\d$/), spentUsd: 0, reservedUsd: 0, usersAtCap: 0 },
      },
    ]);
    const rows = table.stdout();
    expect(rows).toMatch(new RegExp(`^queue +${queueName} on redis://127\\.0\\.0\\.1:\\d+\\n`));
    for (const [state, n] of Object.entries({ waiting: 2, active: 1, delayed: 1, completed: 1, failed: 1, paused: 0 })) {
      expect(rows).toMatch(new RegExp(`\\n${state} +${n}\\n`));
    }
    expect(rows).toMatch(/\noldest waiting +1m 30s \(90000 ms\)\n/);
    expect(rows).toMatch(
      /\ncheckpoints +0\nfair queue +1 waiting \(0 users\), 0 running, 0 retrying later, 0 answers held back, 0 answers to tell, 0 joined to an identical job\ntoday \(UTC\) +\d{4}-\d\d-\d\d: \$0\.00 spent, 0 users at USER_DAILY_IMAGES\n$/,
    );
  });

  it('prints one JSON line with exactly the documented fields', async () => {
    const out = capture();

    expect(await queueStats(['--json'], env, out.io)).toBe(0);

    expect(out.stdout().endsWith('\n')).toBe(true);
    expect(out.stdout().trimEnd().split('\n')).toHaveLength(1);
    const [stats] = out.lines();
    expect(Object.keys(stats)).toEqual(['queue', 'counts', 'oldestWaitingAgeMs', 'checkpoints', 'fair', 'bill']);
    expect(Object.keys(stats.counts as object)).toEqual([...STATES]);
    expect(stats).toEqual({
      queue: queueName,
      counts: { waiting: 0, active: 0, delayed: 0, completed: 0, failed: 0, paused: 0 },
      oldestWaitingAgeMs: null,
      checkpoints: 0,
      fair: { usersWaiting: 0, waiting: 0, running: 0, retrying: 0, heldBack: 0, answers: 0, joined: 0, heldBackTotal: 0 },
      bill: { day: expect.any(String), spentUsd: 0, reservedUsd: 0, usersAtCap: 0 },
    });
  });

  it('counts waiting jobs of a paused queue as paused, and still measures their age', async () => {
    await queue.pause();
    await enqueueImageJob(queue, { Id: 'bob', Prompt: 'A fox', Token: 't' }, createdAt(NOW - 5_000));
    await enqueueImageJob(queue, { Id: 'bob', Prompt: 'A fox', Token: 't' }, createdAt(NOW - 1_000));
    const out = capture();

    expect(await queueStats(['--json'], env, out.io, () => NOW)).toBe(0);

    expect(out.lines()[0]).toMatchObject({ counts: { waiting: 0, paused: 2 }, oldestWaitingAgeMs: 5_000 });
  });

  it("counts this queue's checkpoints only, however many there are", async () => {
    // Glob characters in the name must match themselves, not other queues.
    queueName = uniqueQueueName('stats*[x]');
    const lookalikes = [queueName.replace('*[x]', 'x'), queueName.replace('*[x]', 'Zx')];
    const here = `bull:${queueName}:checkpoint:`;
    const pipeline = redis.pipeline();
    for (let i = 0; i < 1500; i++) pipeline.set(`${here}${i}`, 'x', 'EX', 600);
    for (const other of lookalikes) pipeline.set(`bull:${other}:checkpoint:1`, 'x', 'EX', 600);
    pipeline.set(`bull:${queueName}:checkpointer`, 'x', 'EX', 600);
    await pipeline.exec();
    const out = capture();
    const table = capture();

    try {
      expect(await queueStats(['--json'], { ...env, QUEUE_NAME: queueName }, out.io)).toBe(0);
      expect(await queueStats([], { ...env, QUEUE_NAME: queueName }, table.io)).toBe(0);
    } finally {
      for (const other of lookalikes) await removeKeys(`bull:${escapeGlob(other)}:*`);
    }

    expect(out.lines()[0]).toMatchObject({ queue: queueName, checkpoints: 1500, oldestWaitingAgeMs: null });
    expect(table.stdout()).toMatch(/\ncheckpoints +1500\nfair queue /);
    expect(table.stdout()).toMatch(/\noldest waiting +-\n/);
  });

  it('exits 1 with a clear message when Redis does not answer', async () => {
    const out = capture();
    const port = await freePort();

    const code = await queueStats([], { ...env, REDIS_URL: `redis://:hunter2@127.0.0.1:${port}` }, out.io);

    expect(code).toBe(1);
    expect(out.stderr()).toMatch(/^queue:stats: Redis at redis:\/\/:\*\*\*@127\.0\.0\.1:\d+ \(queue .+\) failed: .*ECONNREFUSED/);
    expect(out.stderr()).not.toContain('hunter2');
    expect(out.stdout()).toBe('');
  });

  it('shows the usage and exits 2 for an unknown flag', async () => {
    const out = capture();
    expect(await queueStats(['--jsn'], env, out.io)).toBe(2);
    expect(out.stderr()).toContain("Unknown option '--jsn'");
    expect(out.stderr()).toContain('Usage: npm run -s queue:stats');
    expect(out.stdout()).toBe('');
  });

  it('writes ages for people', () => {
    expect(formatAge(850)).toBe('850 ms');
    expect(formatAge(4_200)).toBe('4.2s');
    expect(formatAge(90_000)).toBe('1m 30s');
    expect(formatAge(3_723_000)).toBe('1h 2m');
    expect(formatAge(90_000_000)).toBe('1d 1h');
  });
});

describe('the compiled commands', () => {
  let dir: string;

  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'grok-cli-'));
  });

  afterEach(() => {
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('enqueue reads .env below the real environment, prints only its JSON line, and exits by itself', async () => {
    fs.writeFileSync(path.join(dir, '.env'), `JWT_SECRET=${SECRET}\nQUEUE_NAME=not_this_one\n`);

    const result = await runScript('enqueue.js', ['--id', 'erin', '--prompt', 'A comet', '--number', '1'], env, dir);

    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    const lines = result.stdout.trimEnd().split('\n');
    expect(lines).toHaveLength(1);
    expect(JSON.parse(lines[0])).toMatchObject({ queue: queueName, Id: 'erin', Number: 1 });
    expect(await queue.getWaitingCount()).toBe(1);
  });

  it("enqueue works from the original StoryBang worker's .env alone", async () => {
    const service = await startStorybangJwt();
    try {
      const { BULL_GENERATOR_HOST, BULL_GENERATOR_PORT } = bullGenerator();
      fs.writeFileSync(
        path.join(dir, '.env'),
        [
          `BULL_GENERATOR_HOST=${BULL_GENERATOR_HOST}`,
          `BULL_GENERATOR_PORT=${BULL_GENERATOR_PORT}`,
          'PORT_MESSAGES_USERS=http://127.0.0.1:4001',
          `API_JWT=${service.baseUrl}`,
          'API_GROK=xai-original-key',
          'PORT=3005',
          '',
        ].join('\n'),
      );

      const result = await runScript('enqueue.js', ['--id', 'frank', '--prompt', 'A moonlit harbour'], { QUEUE_NAME: queueName }, dir);

      expect(result.stderr).toBe('');
      expect(result.code).toBe(0);
      expect(JSON.parse(result.stdout)).toMatchObject({ queue: queueName, Id: 'frank', Number: null });
      const [job] = await queue.getWaiting();
      expect(jwt.verify(job.data.Token as string, service.secret)).toMatchObject({ Id: 'frank' });
    } finally {
      await service.close();
    }
  });

  it('queue:stats exits 1 by itself when Redis does not answer', async () => {
    const result = await runScript('queueStats.js', ['--json'], { ...env, REDIS_URL: `redis://127.0.0.1:${await freePort()}` }, dir);

    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/ECONNREFUSED/);
    expect(result.stdout).toBe('');
  });

  it('queue:stats exits 1 by itself when no node of a Redis Cluster answers, and names the cluster', async () => {
    const node = `redis://127.0.0.1:${await freePort()}`;
    const result = await runScript('queueStats.js', ['--json'], { ...env, REDIS_CLUSTER_NODES: node, QUEUE_PREFIX: '{bull}' }, dir);

    expect(result.code).toBe(1);
    expect(result.stderr).toContain(`the cluster of ${node}`);
    expect(result.stdout).toBe('');
  });
});
