/** Result of preparing the user's prompt for the image API. */
export interface PreparedPrompt {
  /** What is sent: prefix + the cleaned, possibly cut prompt. */
  text: string;
  /** Characters (code points) of the user's prompt after cleaning, before any cut. */
  originalLength: number;
  /** Characters of the user's prompt that are sent. */
  sentLength: number;
  cut: boolean;
}

// Line breaks and tabs become spaces (they separate words); every other control character goes.
const WHITESPACE_CONTROLS = /[\t\n\v\f\r\u0085\u2028\u2029]/g;
// eslint-disable-next-line no-control-regex
const OTHER_CONTROLS = /[\u0000-\u001f\u007f-\u009f\u200b\u200e\u200f\u202a-\u202e\u2066-\u2069\ufeff]/g;

export function cleanPrompt(prompt: string): string {
  return prompt.replace(WHITESPACE_CONTROLS, ' ').replace(OTHER_CONTROLS, '').replace(/ {2,}/g, ' ').trim();
}

/**
 * Cuts at the last word boundary within `max` characters; a single word longer than `max` is cut
 * mid-word. Counts code points so an emoji is never split in half.
 */
export function cutAtWordBoundary(text: string, max: number): string {
  const chars = Array.from(text);
  if (chars.length <= max) return text;
  const head = chars.slice(0, max + 1);
  const lastSpace = head.lastIndexOf(' ');
  const kept = lastSpace > 0 ? head.slice(0, lastSpace) : head.slice(0, max);
  return kept.join('').trimEnd();
}

export function preparePrompt(prompt: string, prefix: string, maxLength: number): PreparedPrompt {
  const cleaned = cleanPrompt(prompt);
  const sent = cutAtWordBoundary(cleaned, maxLength);
  const originalLength = Array.from(cleaned).length;
  const sentLength = sent === cleaned ? originalLength : Array.from(sent).length;
  return { text: prefix + sent, originalLength, sentLength, cut: sentLength < originalLength };
}
