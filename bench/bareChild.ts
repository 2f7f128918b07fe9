import { createSecretKey } from 'node:crypto';
import Bull, { Job } from 'bull';
import jwt from 'jsonwebtoken';
import fetch from 'node-fetch';
import { io } from 'socket.io-client';
import { redisOptionsFromUrl } from '../src/redis/connections';
import { DEFAULT_QUEUE_PREFIX } from '../src/config';
import { failChild, serveParent } from './childProtocol';

/**
 * The baseline: the same three steps with the same clients (Bull, jsonwebtoken, node-fetch, socket.io-client)
 * and nothing around them: no job validation, checkpoint, retries, progress event or logs.
 */
interface JobData {
  Id: string;
  Token: string;
  Prompt: string;
  Number?: unknown;
}

interface XaiAnswer {
  data: Array<{ b64_json: string; mime_type: string }>;
}

async function main(): Promise<void> {
  const env = (name: string): string => {
    const value = process.env[name];
    if (!value) throw new Error(`${name} is not set`);
    return value;
  };
  const apiUrl = env('GROK_API');
  const apiKey = env('GROK_API_KEY');
  // A KeyObject, as the worker uses: given a string, jsonwebtoken first tries (and fails) to parse it as a public key.
  const secret = createSecretKey(Buffer.from(env('JWT_SECRET'), 'utf8'));
  const event = process.env.NOTIFY_EVENT ?? 'Profile';
  const roomSuffix = process.env.NOTIFY_ROOM_SUFFIX ?? '_Grok_Image_Generator';

  const socket = io(env('PORT_MESSAGES_USERS'));
  await new Promise<void>((resolve) => socket.once('connect', () => resolve()));
  const queue = new Bull(env('QUEUE_NAME'), { prefix: DEFAULT_QUEUE_PREFIX, redis: redisOptionsFromUrl(env('REDIS_URL')) });

  const handle = async (job: Job<JobData>): Promise<void> => {
    const { Id, Token, Prompt } = job.data;
    jwt.verify(Token, secret, { algorithms: ['HS256'] });
    const res = await fetch(apiUrl, {
      method: 'POST',
      headers: { Authorization: `Bearer ${apiKey}`, 'Content-Type': 'application/json' },
      body: JSON.stringify({ model: 'grok-imagine-image', prompt: Prompt, n: 1, response_format: 'b64_json' }),
    });
    const { data } = (await res.json()) as XaiAnswer;
    socket.emit(event, {
      Id: Id + roomSuffix,
      Number: job.data.Number ?? null,
      jobId: String(job.id),
      status: 'completed',
      success: true,
      data: { image: data[0].b64_json, mimeType: data[0].mime_type },
      error: null,
      code: null,
    });
  };
  queue.process(Number(process.env.CONCURRENCY ?? '5'), handle).catch(failChild);
  await queue.isReady();
  serveParent(async () => {
    await queue.close();
    socket.close();
  });
}

main().catch(failChild);
