import { ErrorCode, USER_MESSAGES, userMessage } from '../../../src/base/errors';
import { buildPayload, legacyPayload, schemaPayload } from '../../../src/pipeline/steps/payload';
import type { JobEvent } from '../../../src/pipeline/ports';

const image = { base64: 'iVBORw0KGgo=', mimeType: 'image/png' };
const base: Omit<JobEvent, 'status'> = { userId: 'alice', number: 4, jobId: '17' };
const SUFFIX = '_Grok_Image_Generator';
const CODES: ErrorCode[] = ['INVALID_JOB', 'INVALID_TOKEN', 'SESSION_EXPIRED', 'CONTENT_REJECTED', 'GENERATION_FAILED', 'QUOTA_REACHED'];

const failed = (code: string, message = 'Image API 500: <b>internal</b> at Object.<anonymous> (/app/dist/x.js:1:2)'): JobEvent => ({
  ...base,
  status: 'failed',
  error: { code, message },
});

describe('words for people', () => {
  it('has one sentence for every code, and the original sentence for both token codes', () => {
    expect(Object.keys(USER_MESSAGES).sort()).toEqual([...CODES].sort());
    expect(USER_MESSAGES.SESSION_EXPIRED).toBe('Session expired. Please log in again.');
    expect(USER_MESSAGES.INVALID_TOKEN).toBe('Session expired. Please log in again.');
    expect(USER_MESSAGES.QUOTA_REACHED).toBe('No more pictures can be made today. Please try again tomorrow.');
  });

  it('writes the other codes as distinct sentences that carry no markup', () => {
    const others = CODES.filter((c) => c !== 'INVALID_TOKEN' && c !== 'SESSION_EXPIRED').map((c) => USER_MESSAGES[c]);
    expect(new Set(others).size).toBe(others.length);
    for (const sentence of Object.values(USER_MESSAGES)) expect(sentence).toMatch(/^[A-Z][A-Za-z ,.]+\.$/);
  });

  it('reads an unknown or missing code as GENERATION_FAILED, without walking the prototype', () => {
    for (const code of ['NOPE', '__proto__', 'toString', 'constructor', '', undefined]) expect(userMessage(code)).toBe(USER_MESSAGES.GENERATION_FAILED);
  });
});

describe('schema payload', () => {
  it('carries the image, the routing and the echoed Number on success', () => {
    expect(schemaPayload({ ...base, status: 'completed', image }, 'alice_Grok_Image_Generator')).toEqual({
      Id: 'alice_Grok_Image_Generator',
      Number: 4,
      jobId: '17',
      status: 'completed',
      success: true,
      data: { image: 'iVBORw0KGgo=', mimeType: 'image/png' },
      error: null,
      code: null,
    });
  });

  it.each(CODES)('%s: no data, the code, and its sentence instead of the technical text', (code) => {
    expect(schemaPayload(failed(code), 'r')).toEqual({
      Id: 'r',
      Number: 4,
      jobId: '17',
      status: 'failed',
      success: false,
      data: null,
      error: USER_MESSAGES[code],
      code,
    });
  });

  it('sends processing without data, error or code', () => {
    expect(buildPayload('schema', { ...base, status: 'processing' }, SUFFIX)).toEqual({
      Id: 'alice_Grok_Image_Generator',
      Number: 4,
      jobId: '17',
      status: 'processing',
      success: false,
      data: null,
      error: null,
      code: null,
    });
  });

  it('sends null for a missing Number', () => {
    expect(schemaPayload({ ...base, number: null, status: 'processing' }, 'r').Number).toBeNull();
  });
});

describe('legacy payload', () => {
  it('sends exactly Id, Status, Message and Number, with a data URL on success', () => {
    expect(legacyPayload({ ...base, status: 'completed', image }, 'room')).toEqual({
      Id: 'room',
      Status: true,
      Message: 'data:image/png;base64,iVBORw0KGgo=',
      Number: 4,
    });
  });

  it.each(CODES)('%s: Status false and the sentence for the code, never the technical text', (code) => {
    expect(legacyPayload(failed(code), 'r')).toEqual({ Id: 'r', Status: false, Message: USER_MESSAGES[code], Number: 4 });
  });

  it('tells both token failures the original worker sentence', () => {
    expect(legacyPayload(failed('INVALID_TOKEN', 'Token does not belong to this user'), 'r').Message).toBe('Session expired. Please log in again.');
    expect(legacyPayload(failed('SESSION_EXPIRED', 'jwt expired'), 'r').Message).toBe('Session expired. Please log in again.');
  });

  it('leaves Number out when the job had none, and keeps falsy scalars', () => {
    const none = legacyPayload({ ...base, number: null, status: 'completed', image }, 'r');
    expect(none).toEqual({ Id: 'r', Status: true, Message: 'data:image/png;base64,iVBORw0KGgo=' });
    expect(Object.keys(none)).not.toContain('Number');
    expect(legacyPayload({ ...base, number: 0, status: 'completed', image }, 'r').Number).toBe(0);
    expect(legacyPayload({ ...base, number: false, status: 'completed', image }, 'r').Number).toBe(false);
    expect(legacyPayload({ ...base, number: '', status: 'completed', image }, 'r').Number).toBe('');
  });

  it('has no progress event', () => {
    expect(buildPayload('legacy', { ...base, status: 'processing' }, SUFFIX)).toBeNull();
  });
});
