import { onClose, openResources } from './liveResources';

/**
 * Fails a test that leaves a worker, notifier or test system open (graphile/worker's tests do the same for
 * workers): a leftover keeps taking the next test's jobs and hides shutdown bugs.
 *
 * Jest runs the afterEach hooks of a test's describe blocks first, then the file's top-level ones in the order
 * they were declared, this file's first: so close things in an afterEach inside a describe (as useTestSystem
 * does), not in a top-level one. What was already open when the test began (made in a beforeAll, or reported
 * by an earlier test) is not the test's; it must be closed by the end of the file.
 */

/** A close already under way gets this long to finish; the wait ends as soon as the last one does. */
const CLOSING_GRACE_MS = 500;

let openBefore: string[] = [];
let reported: string[] = [];

beforeEach(() => {
  openBefore = openResources();
});

afterEach(async () => {
  const leaked = await settle(() => without(openResources(), openBefore));
  if (leaked.length === 0) return;
  reported = reported.concat(leaked);
  throw new Error(`The test left open: ${leaked.join(', ')}. Close it in the test or in an afterEach of its describe.`);
});

afterAll(async () => {
  const leaked = await settle(() => without(openResources(), reported));
  if (leaked.length > 0) throw new Error(`Left open at the end of the file: ${leaked.join(', ')}. Close it in an afterAll.`);
});

/** `leaks()` once nothing is left or the grace is over, whichever comes first. */
async function settle(leaks: () => string[]): Promise<string[]> {
  if (leaks().length === 0) return [];
  await new Promise<void>((resolve) => {
    const done = (): void => {
      clearTimeout(timer);
      stopListening();
      resolve();
    };
    const timer = setTimeout(done, CLOSING_GRACE_MS);
    const stopListening = onClose(() => leaks().length === 0 && done());
  });
  return leaks();
}

/** `all` minus one occurrence of each entry of `known`: names repeat when, say, two workers share a queue. */
function without(all: string[], known: string[]): string[] {
  const rest = [...all];
  for (const name of known) {
    const i = rest.indexOf(name);
    if (i >= 0) rest.splice(i, 1);
  }
  return rest;
}
