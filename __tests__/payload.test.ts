import { buildPayload, legacyPayload, schemaPayload } from '../src/payload';
import type { JobEvent } from '../src/types';

const image = { base64: 'iVBORw0KGgo=', mimeType: 'image/png' };
const base: Omit<JobEvent, 'status'> = { userId: 'alice', number: 4, jobId: '17' };
const SUFFIX = '_Grok_Image_Generator';

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

  it('has no data and names the code on failure', () => {
    const payload = schemaPayload({ ...base, status: 'failed', error: { code: 'CONTENT_REJECTED', message: 'refused' } }, 'r');
    expect(payload).toMatchObject({ success: false, data: null, error: 'refused', code: 'CONTENT_REJECTED', status: 'failed' });
  });

  it('sends processing without data or error', () => {
    expect(buildPayload('schema', { ...base, status: 'processing' }, SUFFIX)).toMatchObject({
      Id: 'alice_Grok_Image_Generator',
      status: 'processing',
      success: false,
      data: null,
      code: null,
    });
  });

  it('sends null for a missing Number', () => {
    expect(schemaPayload({ ...base, number: null, status: 'processing' }, 'r').Number).toBeNull();
  });
});

describe('legacy payload', () => {
  it('sends a data URL on success', () => {
    expect(legacyPayload({ ...base, status: 'completed', image }, 'room')).toEqual({
      Id: 'room',
      Status: true,
      Message: 'data:image/png;base64,iVBORw0KGgo=',
      Number: 4,
    });
  });

  it('uses the fixed text for an expired session and the error text otherwise', () => {
    expect(legacyPayload({ ...base, status: 'failed', error: { code: 'SESSION_EXPIRED', message: 'x' } }, 'r').Message).toBe(
      'Session expired. Please log in again.',
    );
    expect(legacyPayload({ ...base, status: 'failed', error: { code: 'INVALID_TOKEN', message: 'Token does not belong to this user' } }, 'r')).toEqual({
      Id: 'r',
      Status: false,
      Message: 'Token does not belong to this user',
      Number: 4,
    });
  });

  it('has no progress event', () => {
    expect(buildPayload('legacy', { ...base, status: 'processing' }, SUFFIX)).toBeNull();
  });
});
