import { cleanPrompt, cutAtWordBoundary, preparePrompt } from '../../../src/pipeline/steps/prompt';

describe('prompt policy', () => {
  it('turns line breaks into spaces and drops other control characters', () => {
    expect(cleanPrompt(' a\r\ncat\tin\u0000 the\u0007 sun \u202e')).toBe('a cat in the sun');
  });

  it('leaves a prompt within the limit alone', () => {
    expect(cutAtWordBoundary('a small cat', 11)).toBe('a small cat');
  });

  it('cuts at the last word boundary within the limit', () => {
    expect(cutAtWordBoundary('a small cat sleeps', 12)).toBe('a small cat');
    expect(cutAtWordBoundary('a small cat sleeps', 11)).toBe('a small cat');
    expect(cutAtWordBoundary('a small cat sleeps', 10)).toBe('a small');
  });

  it('cuts a single over-long word mid-word', () => {
    expect(cutAtWordBoundary('abcdefghij', 4)).toBe('abcd');
  });

  it('never splits an emoji (counts code points)', () => {
    const cut = cutAtWordBoundary('😀😀😀😀😀', 3);
    expect(cut).toBe('😀😀😀');
    expect(Array.from(cut)).toHaveLength(3);
  });

  it('adds the prefix after cutting and reports both lengths', () => {
    const prepared = preparePrompt('one two three four', 'Style: ', 9);
    expect(prepared).toEqual({ text: 'Style: one two', originalLength: 18, sentLength: 7, cut: true });
    expect(preparePrompt('one', 'P ', 9)).toEqual({ text: 'P one', originalLength: 3, sentLength: 3, cut: false });
  });
});
