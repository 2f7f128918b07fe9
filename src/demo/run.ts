import { ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import readline from 'node:readline';
import Bull from 'bull';
import Redis from 'ioredis';
import jwt from 'jsonwebtoken';
import { io, Socket } from 'socket.io-client';
import { USER_MESSAGES } from '../base/errors';
import { redactUrl } from '../base/urls';
import { redisOptionsFromUrl } from '../redis/connections';
import { startRelay } from './notificationService';
import { RedisServer, startRedisServer } from './redisServer';

/**
 * The whole system on one machine: Redis (the one at REDIS_URL, or a private redis-server), a notification
 * service that behaves like StoryBang's (only {Message, Status, Number} reach a room), the worker as a
 * child process with its default (legacy) format (offline images unless GROK_API_KEY is set), a producer
 * enqueueing a story's pages as the front end does, and browsers listening in their rooms. What each
 * browser got is shown as a page per story in demo-output/story.html.
 */

const ROOM_SUFFIX = '_Grok_Image_Generator';
const OUTPUT_DIR = path.resolve('demo-output');
const WORKER = path.resolve(__dirname, '..', 'index.js');

interface DemoJob {
  Id: string;
  Prompt: string;
  /** The story page: the front end sends its index. */
  Number: number;
  tokenExpired?: boolean;
  /** What the browser should get: an image, or this sentence. */
  expect: 'image' | string;
}

const JOBS: DemoJob[] = [
  { Id: 'alice', Prompt: 'A lighthouse at dawn, watercolor', Number: 0, expect: 'image' },
  { Id: 'alice', Prompt: 'A red fox asleep in fresh snow', Number: 1, expect: 'image' },
  { Id: 'alice', Prompt: 'The fox and the lighthouse keeper share tea', Number: 2, expect: 'image' },
  { Id: 'bob', Prompt: 'A city skyline built from old books', Number: 0, expect: 'image' },
  { Id: 'bob', Prompt: '   ', Number: 1, expect: USER_MESSAGES.INVALID_JOB },
  // StoryBang's server mints a fresh token for every ask: the wait page's second ask passes.
  { Id: 'carol', Prompt: 'A paper boat on a stormy sea', Number: 0, tokenExpired: true, expect: 'image' },
];

/**
 * Like StoryBang's wait page, each browser asks again at once after `Status: false`; the demo stops after this
 * many asks again, to show the worker answering a repeated failure later each time (2 s, then 4 s).
 */
const ASKS_AGAIN = 2;

function say(line: string): void {
  process.stdout.write(`${line}\n`);
}

async function redisAnswers(url: string): Promise<boolean> {
  const client = new Redis({ ...redisOptionsFromUrl(url), lazyConnect: true, connectTimeout: 1000, maxRetriesPerRequest: 0, retryStrategy: () => null });
  client.on('error', () => undefined);
  try {
    await client.connect();
    return (await client.ping()) === 'PONG';
  } catch {
    return false;
  } finally {
    client.disconnect();
  }
}

async function chooseRedis(): Promise<{ url: string; own?: RedisServer }> {
  const wanted = process.env.REDIS_URL || 'redis://127.0.0.1:6379';
  if (await redisAnswers(wanted)) {
    say(`redis     | using ${redactUrl(wanted)}`);
    return { url: wanted };
  }
  try {
    const own = await startRedisServer();
    say(`redis     | nothing answers at ${wanted}: started a private redis-server on port ${own.port}`);
    return { url: own.url, own };
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
      throw new Error(
        `Redis does not answer at ${wanted} and redis-server is not on PATH.\n` +
          'Install Redis (Debian/Ubuntu: sudo apt-get install redis-server; macOS: brew install redis) or set REDIS_URL.',
        { cause: err },
      );
    }
    throw err;
  }
}

function startWorkerProcess(env: NodeJS.ProcessEnv): { child: ChildProcess; ready: Promise<void>; exited: Promise<number | null> } {
  const child = spawn(process.execPath, [WORKER], { env, stdio: ['ignore', 'pipe', 'inherit'] });
  const log = fs.createWriteStream(path.join(OUTPUT_DIR, 'worker.log'));
  let onReady: () => void = () => undefined;
  const ready = new Promise<void>((resolve) => (onReady = resolve));
  readline.createInterface({ input: child.stdout! }).on('line', (line) => {
    log.write(`${line}\n`);
    let entry: Record<string, unknown>;
    try {
      entry = JSON.parse(line) as Record<string, unknown>;
    } catch {
      return say(`worker    | ${line}`);
    }
    if (entry.msg === 'ready') onReady();
    const keep = ['jobId', 'userId', 'outcome', 'code', 'durationMs', 'imageBytes', 'signal', 'concurrency', 'queue'];
    const fields = keep.filter((k) => entry[k] !== undefined && entry[k] !== null).map((k) => `${k}=${JSON.stringify(entry[k])}`);
    say(`worker    | ${entry.level} ${entry.msg} ${fields.join(' ')}`.trimEnd());
  });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return { child, ready: Promise.race([ready, exited.then(() => Promise.reject(new Error('the worker exited before it was ready')))]), exited };
}

/** What a StoryBang browser receives as Profile_Response: nothing else gets through the relay. */
interface Notification {
  Message: string;
  Status: boolean;
  Number?: unknown;
}

const DATA_URL = /^data:(image\/[a-z0-9.+-]+);base64,(.*)$/s;

function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

/** One section per user, one figure per page: an image, or the sentence the person read. */
function storyPage(finals: Map<string, Notification>): string {
  const users = [...new Set(JOBS.map((j) => j.Id))];
  const sections = users.map((userId) => {
    const pages = JOBS.filter((j) => j.Id === userId).map((job) => {
      const got = finals.get(`${userId}:${job.Number}`);
      const body = !got ? '<em>nothing arrived</em>' : got.Status ? `<img src="${escapeHtml(got.Message)}" width="256">` : `<p>${escapeHtml(got.Message)}</p>`;
      return `<figure><figcaption>page ${job.Number}: ${escapeHtml(job.Prompt.trim() || '(blank prompt)')}</figcaption>${body}</figure>`;
    });
    return `<section><h2>${escapeHtml(userId)}</h2>${pages.join('')}</section>`;
  });
  return `<!doctype html><meta charset="utf-8"><title>What StoryBang browsers saw</title>${sections.join('')}\n`;
}

async function main(): Promise<void> {
  fs.rmSync(OUTPUT_DIR, { recursive: true, force: true });
  fs.mkdirSync(OUTPUT_DIR, { recursive: true });
  const redis = await chooseRedis();
  const relay = await startRelay();
  say(`notify    | StoryBang-like notification service on ${relay.url} (joinRoom; Profile -> Profile_Response, {Message, Status, Number} only)`);

  const queueName = `Grok_Image_Generator_demo_${process.pid}`;
  const secret = randomBytes(32).toString('hex');
  const useGrok = Boolean(process.env.GROK_API_KEY);
  say(`images    | ${useGrok ? 'xAI Grok API (GROK_API_KEY is set)' : 'offline local provider (set GROK_API_KEY for real images)'}`);
  const worker = startWorkerProcess({
    ...process.env,
    REDIS_URL: redis.url,
    QUEUE_NAME: queueName,
    PORT_MESSAGES_USERS: relay.url,
    JWT_SECRET: secret,
    JWT_PUBLIC_KEY: '',
    JWT_VERIFY_URL: '',
    JWT_ALGORITHMS: '',
    IMAGE_PROVIDER: useGrok ? 'grok' : 'local',
    LOCAL_IMAGE_DELAY_MS: process.env.LOCAL_IMAGE_DELAY_MS ?? '300',
    // The default, spelled out: the format StoryBang's relay and front end understand.
    NOTIFY_FORMAT: 'legacy',
    STATS_INTERVAL_MS: '0',
  });

  const finals = new Map<string, Notification>();
  const asksAgain = new Map<string, number>();
  let askAgain: (job: DemoJob) => Promise<void> = async () => undefined;
  let allDone: () => void = () => undefined;
  const done = new Promise<void>((resolve) => (allDone = resolve));
  const users: Socket[] = [];
  for (const userId of [...new Set(JOBS.map((j) => j.Id))]) {
    const socket = io(relay.url);
    users.push(socket);
    await new Promise<void>((resolve) => socket.once('connect', () => resolve()));
    socket.emit('joinRoom', userId + ROOM_SUFFIX);
    socket.on('Profile_Response', (n: Notification) => {
      const image = n.Status ? DATA_URL.exec(n.Message) : null;
      if (image) {
        const bytes = Buffer.from(image[2], 'base64');
        const file = path.join(OUTPUT_DIR, `${userId}-page${String(n.Number)}.${image[1].split('/')[1]}`);
        fs.writeFileSync(file, bytes);
        say(`${userId.padEnd(9)} | page ${JSON.stringify(n.Number)}: ${image[1]} image, ${bytes.length} bytes -> ${path.relative(process.cwd(), file)}`);
      } else {
        say(`${userId.padEnd(9)} | page ${JSON.stringify(n.Number)}: Status=${n.Status} "${n.Message}"`);
        const key = `${userId}:${String(n.Number)}`;
        const job = JOBS.find((j) => j.Id === userId && j.Number === n.Number);
        const again = asksAgain.get(key) ?? 0;
        if (job && again < ASKS_AGAIN) {
          asksAgain.set(key, again + 1);
          void askAgain(job);
          return;
        }
      }
      finals.set(`${userId}:${String(n.Number)}`, n);
      if (finals.size === JOBS.length) allDone();
    });
  }
  await new Promise((r) => setTimeout(r, 100)); // let the joins reach the relay before anything is sent

  let failed = false;
  try {
    await worker.ready;
    const producer = new Bull(queueName, { redis: redisOptionsFromUrl(redis.url) });
    const ask = async (job: DemoJob, expired: boolean): Promise<void> => {
      const now = Math.floor(Date.now() / 1000);
      const Token = jwt.sign({ Id: job.Id, iat: now - 7200, exp: expired ? now - 3600 : now + 3600 }, secret);
      // Exactly what the existing front end enqueues.
      await producer.add({ Id: job.Id, Prompt: job.Prompt, Token, Number: job.Number }, { attempts: 1, removeOnComplete: true, removeOnFail: true });
    };
    askAgain = async (job) => {
      await ask(job, false);
      say(`producer  | ${job.Id} asks again at once for page ${job.Number}, as StoryBang's wait page does (a fresh token)`);
    };
    for (const job of JOBS) {
      await ask(job, job.tokenExpired === true);
      say(`producer  | enqueued ${job.Id} page ${job.Number}: "${job.Prompt}"${job.tokenExpired ? ' (expired token)' : ''}`);
    }
    const timeout = setTimeout(() => allDone(), useGrok ? 180_000 : 60_000);
    await done;
    clearTimeout(timeout);
    // Leave nothing of the demo's queue behind in a Redis that is not ours.
    await producer.obliterate({ force: true }).catch(() => undefined);
    await producer.close();
    fs.writeFileSync(path.join(OUTPUT_DIR, 'story.html'), storyPage(finals));
    for (const job of JOBS) {
      const got = finals.get(`${job.Id}:${job.Number}`);
      const outcome = !got ? 'nothing' : got.Status && DATA_URL.test(got.Message) ? 'image' : got.Message;
      if (outcome !== job.expect) {
        failed = true;
        say(`check     | ${job.Id} page ${job.Number}: expected ${JSON.stringify(job.expect)}, got ${JSON.stringify(outcome)}`);
      }
    }
  } finally {
    worker.child.kill('SIGTERM');
    const code = await worker.exited;
    say(`worker    | exited with code ${code}`);
    if (code !== 0) failed = true;
    users.forEach((s) => s.close());
    await relay.close();
    await redis.own?.stop();
  }
  const out = path.relative(process.cwd(), OUTPUT_DIR);
  say(failed ? 'demo FAILED' : `demo OK: what the browsers saw in ${out}/story.html (images beside it), worker log in ${out}/worker.log`);
  process.exit(failed ? 1 : 0);
}

main().catch((err: unknown) => {
  process.stderr.write(`demo failed: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
