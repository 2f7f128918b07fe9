import { errorSummary, permanentError, transientError } from '../src/errors';

describe('errorSummary', () => {
  it('gives a WorkerError its message, code and status', () => {
    expect(errorSummary(permanentError('CONTENT_REJECTED', 'Image API 400: refused', { status: 400 }))).toEqual({
      message: 'Image API 400: refused',
      code: 'CONTENT_REJECTED',
      status: 400,
    });
    expect(errorSummary(transientError('timed out'))).toEqual({ message: 'timed out', code: 'GENERATION_FAILED', status: undefined });
  });

  it('gives anything else its message only, whatever was thrown', () => {
    expect(errorSummary(new TypeError('x is undefined'))).toEqual({ message: 'x is undefined' });
    expect(errorSummary('plain text')).toEqual({ message: 'plain text' });
    expect(errorSummary({ code: 'ECONNRESET' })).toEqual({ message: 'Non-error thrown: {"code":"ECONNRESET"}' });
  });
});
