import { createSecretKey } from 'node:crypto';
import Bull, { Job } from 'bull';
import jwt from 'jsonwebtoken';
import fetch from 'node-fetch';
import { io } from 'socket.io-client';
import { redisOptionsFromUrl } from '../src/redis/connections';
import { failChild, ForwardedEvent, serveParent } from './child';

/**
 * "Bare": the pipeline's three steps with the worker's clients (Bull, jsonwebtoken, node-fetch, socket.io-client)
 * on a plain Bull consumer and nothing around them: no fair queue, pace, checkpoint, retry or log. It sends the
 * legacy payload and tells the bench of each job's end over IPC. BARE_NOOP=1: a Bull consumer whose handler does
 * nothing (what Bull itself costs idle).
 */
async function main(): Promise<void> {
  const env = (name: string): string => process.env[name] ?? failChild(new Error(`${name} is not set`));
  const queue = new Bull(env('QUEUE_NAME'), { redis: redisOptionsFromUrl(env('REDIS_URL')) });
  const concurrency = Number(process.env.CONCURRENCY ?? '5');
  const ended = (job: Job, outcome: string): void => {
    const event: ForwardedEvent = { type: 'event', name: 'job:end', at: Date.now(), data: { jobId: String(job.id), outcome } };
    process.send?.(event);
  };
  if (process.env.BARE_NOOP === '1') {
    void queue.process(concurrency, async (job: Job) => ended(job, 'completed')).catch(failChild);
    await queue.isReady();
    return serveParent(() => queue.close());
  }
  const apiUrl = env('GROK_API');
  const apiKey = env('GROK_API_KEY');
  const secret = createSecretKey(Buffer.from(env('JWT_SECRET'), 'utf8'));
  const socket = io(env('PORT_MESSAGES_USERS'), { transports: ['websocket'] });
  await new Promise<void>((resolve) => socket.once('connect', () => resolve()));
  const handle = async (job: Job<{ Id: string; Token: string; Prompt: string; Number?: unknown }>): Promise<void> => {
    const { Id, Token, Prompt, Number } = job.data;
    try {
      jwt.verify(Token, secret, { algorithms: ['HS256'] });
      const res = await fetch(apiUrl, {
        method: 'POST',
        headers: { Authorization: `Bearer ${apiKey}`, 'Content-Type': 'application/json' },
        body: JSON.stringify({ model: 'grok-imagine-image', prompt: Prompt, n: 1, response_format: 'b64_json' }),
      });
      const { data } = (await res.json()) as { data: Array<{ b64_json: string; mime_type: string }> };
      socket.emit('Profile', { Id: `${Id}_Grok_Image_Generator`, Status: true, Message: `data:${data[0].mime_type};base64,${data[0].b64_json}`, Number });
      ended(job, 'completed');
    } catch (err) {
      socket.emit('Profile', { Id: `${Id}_Grok_Image_Generator`, Status: false, Message: 'Error processing job', Number });
      ended(job, 'failed');
      throw err;
    }
  };
  void queue.process(concurrency, handle).catch(failChild);
  await queue.isReady();
  serveParent(async () => {
    await queue.close();
    socket.close();
  });
}

main().catch(failChild);
