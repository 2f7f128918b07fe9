import pino, { DestinationStream, Logger } from 'pino';

export type { Logger } from 'pino';

/**
 * Paths that could ever carry a secret or an image. The code never logs them on purpose; redaction is
 * the second line of defence for objects logged whole (job data, HTTP errors, payloads).
 */
const REDACT_PATHS = [
  'Token',
  'token',
  '*.Token',
  'data.Token',
  'job.data.Token',
  'apiKey',
  '*.apiKey',
  'authorization',
  '*.authorization',
  'headers.authorization',
  '*.headers.authorization',
  'secret',
  '*.secret',
  'publicKey',
  '*.publicKey',
  'image',
  '*.image',
  'base64',
  '*.base64',
  'b64_json',
  '*.b64_json',
  'Message',
  '*.Message',
  'Prompt',
  '*.Prompt',
];

/** pino JSON on stdout (or `destination` in tests), with stable field names and an ISO time. */
export function createLogger(level: string, destination?: DestinationStream): Logger {
  return pino(
    {
      level,
      base: { service: 'grok-image-worker', pid: process.pid },
      timestamp: pino.stdTimeFunctions.isoTime,
      redact: { paths: REDACT_PATHS, censor: '[redacted]' },
      formatters: { level: (label) => ({ level: label }) },
      serializers: { err: pino.stdSerializers.err },
    },
    destination ?? pino.destination({ dest: 1, sync: true }),
  );
}
