import { InvalidJobError, validateJobData } from '../../../src/pipeline/steps/jobData';

const valid = { Id: 'alice', Token: 'a.b.c', Prompt: 'a cat', Number: 3 };

function rejection(data: unknown): InvalidJobError {
  try {
    validateJobData(data);
  } catch (err) {
    expect(err).toBeInstanceOf(InvalidJobError);
    return err as InvalidJobError;
  }
  throw new Error('expected the job data to be refused');
}

describe('validateJobData', () => {
  it('accepts the front end job and keeps Number untouched', () => {
    expect(validateJobData(valid)).toEqual({ userId: 'alice', token: 'a.b.c', prompt: 'a cat', number: 3 });
    expect(validateJobData({ ...valid, Number: 'slot-7' }).number).toBe('slot-7');
    expect(validateJobData({ ...valid, Number: false }).number).toBe(false);
  });

  it('treats a missing Number as null and ignores other fields', () => {
    const { Number: _n, ...withoutNumber } = valid;
    expect(validateJobData({ ...withoutNumber, extra: { deep: 1 } })).toEqual({ userId: 'alice', token: 'a.b.c', prompt: 'a cat', number: null });
  });

  it.each([null, undefined, 'text', 42, true, [valid]])('refuses non-object data %p without a user', (data) => {
    const err = rejection(data);
    expect(err.code).toBe('INVALID_JOB');
    expect(err.userId).toBeUndefined();
    expect(err.transient).toBe(false);
  });

  it.each([
    ['missing', undefined],
    ['empty', ''],
    ['blank', '   '],
    ['number', 12],
    ['too long', 'x'.repeat(129)],
  ])('refuses an Id that is %s, with no user to tell', (_label, Id) => {
    const err = rejection({ ...valid, Id });
    expect(err.message).toMatch(/Id/);
    expect(err.userId).toBeUndefined();
  });

  it('accepts an Id of exactly 128 characters', () => {
    expect(validateJobData({ ...valid, Id: 'x'.repeat(128) }).userId).toHaveLength(128);
  });

  it.each([
    ['Token', undefined, /Token must be a string/],
    ['Token', 123, /Token must be a string \(got a number\)/],
    ['Token', { a: 1 }, /Token must be a string/],
    ['Prompt', undefined, /Prompt must be a string \(got missing\)/],
    ['Prompt', ['a'], /Prompt must be a string \(got an array\)/],
    ['Prompt', '  \n\t ', /Prompt must not be blank/],
    ['Prompt', '\u0000\u0007', /Prompt must not be blank/],
    ['Number', { slot: 1 }, /Number must be a string, number, boolean or null/],
    ['Number', [1], /Number must be/],
  ])('refuses %s = %p and remembers the user', (field, value, message) => {
    const err = rejection({ ...valid, [field]: value });
    expect(err.message).toMatch(message);
    expect(err.userId).toBe('alice');
  });

  it('reads only own fields: inherited or __proto__ fields do not count', () => {
    const inherited = Object.create({ Token: 'a.b.c', Prompt: 'x' }) as Record<string, unknown>;
    inherited.Id = 'alice';
    expect(rejection(inherited).message).toMatch(/Token/);
    const polluted = JSON.parse('{"Id":"alice","Prompt":"p","__proto__":{"Token":"a.b.c"}}') as unknown;
    expect(rejection(polluted).message).toMatch(/Token/);
  });
});
