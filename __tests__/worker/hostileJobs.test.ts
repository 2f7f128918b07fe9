import fc from 'fast-check';
import jwt from 'jsonwebtoken';
import { USER_MESSAGES } from '../../src/base/errors';
import { createLogger } from '../../src/base/logger';
import { failureEvent, runJob } from '../../src/pipeline/runJob';
import { JwtTokenVerifier } from '../../src/pipeline/steps/tokenVerifier';
import type { GeneratedImage } from '../../src/pipeline/ports';
import { isFinal, isImage, recordingNotifier, signToken, waitUntil } from '../support/helpers';
import { TestSystem, useTestSystem } from '../support/harness';

const SECRET = 'property-secret';
const ERROR_CODES = ['INVALID_JOB', 'INVALID_TOKEN', 'SESSION_EXPIRED', 'CONTENT_REJECTED', 'GENERATION_FAILED'];

/** Any value a field could hold once a producer's data went through Bull's JSON. */
const anyField = fc.oneof(
  fc.jsonValue(),
  fc.string({ unit: 'grapheme', maxLength: 300 }),
  fc.string({ minLength: 129, maxLength: 2000 }),
  fc.constantFrom('', ' ', '\u0000', '__proto__', 'constructor', 'a.b.c', '😀'.repeat(200)),
);
const hostileKeys = fc.constantFrom('Id', 'Token', 'Prompt', 'Number', '__proto__', 'constructor', 'prototype', 'toString', 'hasOwnProperty');

/** Job data: anything at all, field-shaped records with any types, and records with pollution keys. */
const hostileData = fc.oneof(
  fc.jsonValue(),
  fc.record({ Id: anyField, Token: anyField, Prompt: anyField, Number: anyField }, { requiredKeys: [] }),
  fc.dictionary(hostileKeys, anyField),
  // Well-formed jobs, half with a token for someone else, so the valid path is exercised too.
  fc
    .record({
      Id: fc.constantFrom('alice', 'bob'),
      Prompt: fc.string({ minLength: 1, maxLength: 50 }),
      Number: fc.jsonValue(),
      tokenFor: fc.constantFrom('alice', 'bob'),
    })
    .map(({ tokenFor, ...job }) => ({ ...job, Token: jwt.sign({ Id: tokenFor }, SECRET) })),
);

/** The contract's rule for an Id that names a room, written out independently of the code under test. */
function usableId(id: unknown): id is string {
  return typeof id === 'string' && id.trim() !== '' && id.length <= 128;
}

function asBullWouldStore(data: unknown): unknown {
  const text = JSON.stringify(data);
  return text === undefined ? undefined : JSON.parse(text);
}

describe('hostile and malformed job data', () => {
  it('never crashes, never pays for an invalid job, always ends with a code, and tells only a usable Id', async () => {
    const verifier = new JwtTokenVerifier({ secret: SECRET, algorithms: ['HS256'], clockToleranceS: 5, userClaim: 'Id' });
    const logger = createLogger('silent');
    await fc.assert(
      fc.asyncProperty(hostileData, async (raw) => {
        const data = asBullWouldStore(raw);
        let generated = 0;
        const notifier = recordingNotifier();
        const { events } = notifier;
        const provider = {
          generate: async (): Promise<GeneratedImage> => {
            generated += 1;
            return { base64: 'aGk=', mimeType: 'image/png' };
          },
        };
        const checkpoints = { load: async () => null, save: async () => undefined };
        const outcome = await runJob(
          { jobId: '1', data, attempt: 1, maxAttempts: 1, createdAt: 1 },
          { verifier, provider, notifier, checkpoints, logger, settings: { promptPrefix: '', promptMaxLength: 1000, maxRetries: 0, notifyProgress: true } },
          new AbortController().signal,
        );

        const record = typeof data === 'object' && data !== null && !Array.isArray(data) ? (data as Record<string, unknown>) : undefined;
        const ownId = record && Object.prototype.hasOwnProperty.call(record, 'Id') ? record.Id : undefined;
        if (outcome.delivered) {
          expect(generated).toBe(1);
          expect(events.map((e) => e.status)).toEqual(['processing', 'completed']);
          expect(events.every((e) => e.userId === ownId)).toBe(true);
          return;
        }
        const { error } = outcome;
        expect(ERROR_CODES).toContain(error.code);
        expect(error.message.length).toBeGreaterThan(0);
        if (error.code === 'INVALID_JOB' || error.code === 'INVALID_TOKEN' || error.code === 'SESSION_EXPIRED') {
          expect(generated).toBe(0);
        }
        // The pipeline tells nobody: the queue tells the failure, to the job's own Id, and only when that Id is
        // usable, in the code's sentence.
        expect(events.filter((e) => e.status !== 'processing')).toEqual([]);
        if (usableId(ownId)) {
          expect(outcome.owner?.userId).toBe(ownId);
          expect(failureEvent('1', outcome.owner!, error.code).error).toEqual({ code: error.code, message: USER_MESSAGES[error.code] });
        } else expect(outcome.owner).toBeUndefined();
      }),
      { numRuns: 400 },
    );
  });

  describe('through the real queue', () => {
    let sys: TestSystem;
    useTestSystem('hostile', (s) => (sys = s));

    it('ends every hostile job with a code and keeps serving', async () => {
      const alice = await sys.user('alice');
      await sys.startWorker({ CONCURRENCY: '10' });
      const samples = fc.sample(
        hostileData.filter((d) => typeof d === 'object' && d !== null),
        { numRuns: 60, seed: 42 },
      );
      // Kept after they end, so Bull's own counts can show that every one of them ended.
      for (const data of samples) await sys.producer.add(data, { attempts: 1 });
      const last = { Id: 'alice', Prompt: 'still serving', Token: signToken('alice'), Number: 'last' };
      await sys.enqueue(last);
      await alice.waitFor((p) => p.Number === 'last' && isFinal(p), 20_000);
      // Some samples repeat a page that just failed: their answers are held back a few seconds (and identical
      // asks join one run), so Bull, not the count of log lines, says when all have ended.
      await waitUntil(
        async () => {
          const counts = await sys.producer.getJobCounts();
          return counts.completed + counts.failed === samples.length && counts.active + counts.waiting === 0;
        },
        30_000,
        'every job ended in Bull',
      );
      // Each job's `job end` line is written just after its end is recorded in Bull.
      await waitUntil(() => sys.ends().length === samples.length + 1, 5000, 'a job end line for every job');

      const ends = sys.ends();
      for (const end of ends) {
        if (end.outcome === 'completed') expect(end.code).toBeNull();
        else expect(ERROR_CODES).toContain(end.code);
      }
      // Only jobs whose token proved them valid reached the image API.
      const completed = ends.filter((e) => e.outcome === 'completed').length;
      expect(sys.xai.calls).toHaveLength(completed);
      expect(await sys.producer.getJobCounts()).toMatchObject({ waiting: 0, active: 0 });
      // What reached a browser is an image or one of the sentences, however hostile the job was.
      const sentences = new Set(Object.values(USER_MESSAGES));
      for (const p of alice.received) expect(isImage(p) || sentences.has(p.Message as string)).toBe(true);
    });
  });
});
