import type Bull from 'bull';
import jwt from 'jsonwebtoken';
import { ConfigError, DEFAULTS, JwtConfig, loadJwtConfig } from '../config';
import { InvalidJobError, validateJobData } from '../pipeline/steps/jobData';
import { enqueueImageJob, ImageJobData } from '../producer';
import { CliIO, Env, EXIT_FAILURE, EXIT_OK, EXIT_USAGE, onQueue, parseFlags, readQueueSettings, runAsScript, UsageError } from './args';
import { createJwtUrl, createStorybangToken, TokenServiceError } from './createJwt';

export const USAGE = `Usage: npm run -s enqueue -- --id <user> --prompt <text> [options]

Adds image jobs to the worker's queue, as the front end does.

  --id <user>        the job's Id (the user; names the notification room)
  --prompt <text>    what to draw
  --number <value>   the job's Number, echoed back to the front end; read as JSON when it is
                     a JSON scalar (3, true, "3"), otherwise sent as a string
  --token <jwt>      the user's token; without it, one is made for --id (see below)
  --attempts <n>     Bull attempts (default 1, what the front end uses)
  --count <n>        add n identical jobs (default 1)
  -h, --help         this text

Environment (and .env), read as the worker reads it: REDIS_URL (default ${DEFAULTS.REDIS_URL}; or the original
worker's BULL_GENERATOR_HOST and BULL_GENERATOR_PORT), QUEUE_NAME (default ${DEFAULTS.QUEUE_NAME}),
QUEUE_PREFIX (default ${DEFAULTS.QUEUE_PREFIX}), REDIS_TLS_REJECT_UNAUTHORIZED. Without --token: JWT_SECRET signs one
(JWT_USER_CLAIM, default ${DEFAULTS.JWT_USER_CLAIM}, JWT_ISSUER, JWT_AUDIENCE, JWT_ALGORITHMS; valid for 1 hour), or the
StoryBang JWT service (API_JWT, or a JWT_VERIFY_URL ending in /Verify_Jwt) makes one with its Create_Jwt, as
StoryBang's server does.

Prints one JSON line per job: {"jobId","queue","Id","Number"}. The token is never printed.
Exit codes: 0 enqueued, 1 Redis or the JWT service failed, 2 bad arguments or settings.
`;

const MAX_ATTEMPTS = 100;
const MAX_COUNT = 10_000;
/** Long enough to enqueue and for the job to wait its turn; short enough that a leaked one does little harm. */
export const SIGNED_TOKEN_TTL_S = 3600;

interface EnqueueArgs {
  id: string;
  prompt: string;
  number?: ImageJobData['Number'];
  token?: string;
  attempts?: number;
  count: number;
}

export function parseEnqueueArgs(argv: string[]): EnqueueArgs | 'help' {
  const values = parseFlags(argv, {
    id: { type: 'string' },
    prompt: { type: 'string' },
    number: { type: 'string' },
    token: { type: 'string' },
    attempts: { type: 'string' },
    count: { type: 'string' },
    help: { type: 'boolean', short: 'h' },
  });
  if (values.help) return 'help';
  if (values.id === undefined) throw new UsageError('--id is required');
  if (values.prompt === undefined) throw new UsageError('--prompt is required');
  return {
    id: values.id,
    prompt: values.prompt,
    number: values.number === undefined ? undefined : parseNumber(values.number),
    token: values.token,
    attempts: values.attempts === undefined ? undefined : wholeNumber('--attempts', values.attempts, MAX_ATTEMPTS),
    count: values.count === undefined ? 1 : wholeNumber('--count', values.count, MAX_COUNT),
  };
}

function wholeNumber(flag: string, value: string, max: number): number {
  const n = Number(value);
  if (!/^\d+$/.test(value) || n < 1 || n > max) throw new UsageError(`${flag} must be a whole number from 1 to ${max} (got ${JSON.stringify(value)})`);
  return n;
}

/** `3` is the number 3 and `"3"` the string "3"; anything that is not a JSON scalar is taken as text. */
export function parseNumber(value: string): ImageJobData['Number'] {
  try {
    const parsed: unknown = JSON.parse(value);
    if (parsed === null || ['string', 'number', 'boolean'].includes(typeof parsed)) return parsed as ImageJobData['Number'];
  } catch {
    // Not JSON: plain text.
  }
  return value;
}

/**
 * The token for `id`: the one given; or one signed with JWT_SECRET the way the worker verifies it (its user claim,
 * issuer and audience; HS256 unless JWT_ALGORITHMS leaves it out); or, with the StoryBang JWT service (the original
 * API_JWT, or a JWT_VERIFY_URL ending in /Verify_Jwt), one minted by its Create_Jwt as StoryBang's server does.
 * The settings are read by src/config, as the worker reads them.
 */
export async function tokenFor(id: string, given: string | undefined, env: Env): Promise<string> {
  if (given !== undefined) return given;
  let settings: JwtConfig;
  try {
    settings = loadJwtConfig(env);
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    throw new UsageError(
      `No token: pass --token <jwt>, or set JWT_SECRET (or the JWT service's API_JWT) to have one made for --id (${err.problems.join('; ')})`,
      false,
    );
  }
  const createUrl = createJwtUrl(settings.verifyUrl);
  if (createUrl !== undefined) return createStorybangToken(createUrl, id);
  if (settings.secret === undefined) {
    throw new UsageError('No token: pass --token <jwt>; only JWT_SECRET or the StoryBang JWT service (API_JWT) can make one for --id', false);
  }
  // The configuration allows only HMAC algorithms with a secret (src/base/jwtAlgorithms.ts).
  const algorithm = settings.algorithms.includes('HS256') ? 'HS256' : settings.algorithms[0];
  const options: jwt.SignOptions = { algorithm, expiresIn: SIGNED_TOKEN_TTL_S };
  if (settings.issuer) options.issuer = settings.issuer;
  if (settings.audience) options.audience = settings.audience;
  return jwt.sign({ [settings.userClaim]: id }, settings.secret, options);
}

/** `npm run enqueue -- --id U --prompt "..."`; resolves to the exit code. */
export async function main(argv: string[], env: Env, io: CliIO): Promise<number> {
  let args: EnqueueArgs;
  let data: ImageJobData;
  let settings;
  try {
    const parsed = parseEnqueueArgs(argv);
    if (parsed === 'help') {
      io.stdout.write(USAGE);
      return EXIT_OK;
    }
    args = parsed;
    settings = readQueueSettings(env);
    data = { Id: args.id, Prompt: args.prompt, Token: await tokenFor(args.id, args.token, env) };
    if (args.number !== undefined) data.Number = args.number;
    // Checked here too, so a bad job never opens a connection.
    validateJobData(data);
  } catch (err) {
    if (err instanceof UsageError || err instanceof InvalidJobError) {
      io.stderr.write(`enqueue: ${err.message}\n`);
      if (err instanceof UsageError && err.showUsage) io.stderr.write(`\n${USAGE}`);
      return EXIT_USAGE;
    }
    if (err instanceof TokenServiceError) {
      io.stderr.write(`enqueue: ${err.message}\n`);
      return EXIT_FAILURE;
    }
    throw err;
  }

  const options: Bull.JobOptions = args.attempts === undefined ? {} : { attempts: args.attempts };
  const { count } = args;
  let added = 0;
  return onQueue(
    'enqueue',
    settings,
    io,
    async (queue) => {
      for (; added < count; added++) {
        const job = await enqueueImageJob(queue, data, options);
        io.stdout.write(`${JSON.stringify({ jobId: String(job.id), queue: settings.queueName, Id: data.Id, Number: data.Number ?? null })}\n`);
      }
    },
    () => (count > 1 ? ` after ${added} of ${count} jobs` : ''),
  );
}

if (require.main === module) runAsScript(main);
