import { share429, type LoopsRun, type StoriesRun, type StorybangResults } from './storybang';
import { describeDelay, meanDelayMs } from './xaiServer';

/** The tables of the StoryBang scenarios, and the rows they add to the goals table. */

type Table = (header: string[], rows: string[][]) => string;
/** One row per goal: what, measured, target, pass or miss (undefined: nothing to judge). */
type Goal = [string, string, string, boolean | undefined];

const n1 = (x: number | undefined): string => (x !== undefined && Number.isFinite(x) ? x.toFixed(1) : '-');
const n2 = (x: number | undefined): string => (x !== undefined && Number.isFinite(x) ? x.toFixed(2) : '-');
const sec = (ms: number | undefined): string => (ms === undefined ? '-' : n1(ms / 1000));
const pct = (x: number): string => `${(x * 100).toFixed(1)}%`;
const capped = (r: { timedOut: boolean }): string => (r.timedOut ? ' (capped)' : '');
const who = (r: { build: string; rev: string }): string => `${r.build} (${r.rev})`;
const ends = (r: { outcomes: Record<string, number>; codes: Record<string, number> }): string =>
  [...Object.entries(r.outcomes), ...Object.entries(r.codes)].map(([k, v]) => `${k} ${v}`).join(', ');

/** Redis's default `maxclients`: once StoryBang's leaked connections reach it, nobody gets anything. */
const MAXCLIENTS = 10_000;
const asksPerMin = (r: LoopsRun): number => {
  const last = r.samples.at(-1);
  return last ? ((last.asks.refused + last.asks.blank) * 60) / last.intervalS : NaN;
};

const STORYBANG_GOALS = { max429: 0.05, boughtTwice: 0, lightWaitX: 3, slowestX: 1.2, meanX: 1.1 };

/** The issue's goals, on the current tree. */
export function storybangGoals(res: StorybangResults): Goal[] {
  const out: Goal[] = [];
  const current = <T extends { build: string }>(runs: T[]): T[] => runs.filter((r) => r.build === 'current');
  for (const r of current(res.stories)) {
    const slowest = r.slowestMs / r.idealMs;
    const meanX = r.meanCompleteMs / r.serialSameDrawsMs;
    out.push([
      `StoryBang, 1 worker at ${describeDelay(r.latency)}: slowest story / ideal`,
      n2(slowest),
      `<= ${STORYBANG_GOALS.slowestX}`,
      slowest <= STORYBANG_GOALS.slowestX,
    ]);
    out.push([
      `StoryBang, 1 worker at ${describeDelay(r.latency)}: mean to a complete story / story after story (same latencies)`,
      n2(meanX),
      `<= ${STORYBANG_GOALS.meanX}`,
      meanX <= STORYBANG_GOALS.meanX,
    ]);
  }
  for (const r of current(res.threeWorkers)) {
    const share = share429(r.api);
    out.push([
      `StoryBang, ${r.workers} workers at ${describeDelay(r.latency)}: requests answered 429`,
      pct(share),
      `<= ${pct(STORYBANG_GOALS.max429)}`,
      share <= STORYBANG_GOALS.max429,
    ]);
  }
  for (const r of current(res.reload)) {
    out.push(['StoryBang reload: admitted API calls for a page still waiting or running, beyond the first', String(r.boughtTwice), '0', r.boughtTwice === 0]);
  }
  for (const r of current(res.burst)) {
    const x = r.lightWaitMs === undefined ? Infinity : r.lightWaitMs / meanDelayMs(r.latency);
    out.push([
      `StoryBang burst at ${describeDelay(r.latency)}: light user's wait / mean API latency`,
      n1(x),
      `<= ${STORYBANG_GOALS.lightWaitX}`,
      x <= STORYBANG_GOALS.lightWaitX,
    ]);
  }
  return out;
}

function storiesTable(table: Table, runs: StoriesRun[]): string {
  return table(
    [
      'build',
      'workers',
      'API latency',
      'stories complete',
      'slowest story (s)',
      'ideal (s)',
      'slowest / ideal',
      'mean to a complete story (s)',
      'story-after-story ideal (s)',
      'mean / that ideal',
      'story after story, same latencies (s)',
      'mean / that',
      'first complete story (s)',
      '429 share',
      'API calls per delivered page (admitted)',
      'peak in flight at the API',
      'failures seen',
      'duplicates',
      'Redis connections StoryBang would have leaked (= asks)',
      'job ends',
    ],
    runs.map((r) => [
      who(r),
      String(r.workers),
      describeDelay(r.latency),
      `${r.storiesCompleted} of ${r.stories}${capped(r)}`,
      sec(r.slowestMs),
      sec(r.idealMs),
      n2(r.slowestMs / r.idealMs),
      sec(r.meanCompleteMs),
      sec(r.serialIdealMs),
      n2(r.meanCompleteMs / r.serialIdealMs),
      sec(r.serialSameDrawsMs),
      n2(r.meanCompleteMs / r.serialSameDrawsMs),
      sec(r.firstCompleteMs),
      pct(share429(r.api)),
      `${n2(r.api.requests / Math.max(1, r.delivered))} (${n2((r.api.requests - r.api.limited) / Math.max(1, r.delivered))})`,
      String(r.api.peakInFlight),
      String(r.failuresSeen),
      String(r.duplicates),
      String(r.asks),
      ends(r),
    ]),
  );
}

export function storybangSection(res: StorybangResults, table: Table): string[] {
  const lines = [
    "## StoryBang at xAI's real speed",
    '',
    `Builds: ${res.builds.map((b) => `${b.label} ${b.rev}`).join(', ')}. Workers started from StoryBang's original .env only (plus GROK_API and a fresh QUEUE_NAME); ` +
      'the stand-in admits 5 requests per rolling second (429 with Retry-After: 1 beyond). Ideal times: the pages at 5/s plus one mean latency.',
    '',
  ];
  if (res.errors.length > 0) lines.push(`Not measured: ${res.errors.map((e) => `${e.scenario}, ${e.build}: ${e.error}`).join('; ')}.`, '');
  lines.push('### 1. Stories at real speed, 1 worker', '', storiesTable(table, res.stories), '');
  lines.push('### 2. Three workers', '', storiesTable(table, res.threeWorkers), '');

  lines.push('### 3. Refusal loop and blank-prompt loop', '');
  lines.push(
    table(
      [
        'build',
        'seconds',
        'refused: answers',
        'refused: asks',
        'API calls for the refused prompt (admitted)',
        'blank: answers',
        'blank: asks',
        'API calls for the blank prompt',
        'Redis connections StoryBang would have leaked (= asks)',
        'asks/min in the last interval',
        'minutes to Redis maxclients (10000) at that pace',
        'token checks at the JWT service',
        'worker Redis commands/min: idle, first -> last interval',
        'last / first',
        'producer commands per ask',
        'job ends',
      ],
      res.loops.map((r) => [
        who(r),
        String(r.seconds),
        String(r.refused.answers),
        String(r.refused.asks),
        `${r.refused.apiRequests} (${r.refused.apiAdmitted})`,
        String(r.blank.answers),
        String(r.blank.asks),
        String(r.blank.apiRequests),
        String(r.asks),
        n1(asksPerMin(r)),
        n1(MAXCLIENTS / asksPerMin(r)),
        String(r.jwtVerifies),
        `${n1(r.idlePerMin)}; ${n1(r.samples[0]?.workerPerMin)} -> ${n1(r.samples.at(-1)?.workerPerMin)}`,
        n2((r.samples.at(-1)?.workerPerMin ?? NaN) / (r.samples[0]?.workerPerMin ?? NaN)),
        n1(r.producerCommandsPerAsk),
        ends(r),
      ]),
    ),
    '',
  );
  for (const r of res.loops) {
    lines.push(
      `Over time, ${who(r)} (the worker's share: all commands minus the asks x the producer's cost per ask):`,
      '',
      table(
        ['until (s)', 'worker Redis commands/min', 'all commands', 'asks refused / blank', 'answers refused / blank', 'token checks'],
        r.samples.map((x) => [
          n1(x.atS),
          n1(x.workerPerMin),
          String(x.commands),
          `${x.asks.refused} / ${x.asks.blank}`,
          `${x.answers.refused} / ${x.answers.blank}`,
          String(x.jwtVerifies),
        ]),
      ),
      '',
    );
  }

  lines.push('### 4. Reload mid-story', '');
  lines.push(
    table(
      [
        'build',
        'old page had',
        'reload at (s)',
        'API calls (admitted)',
        'admitted per page',
        'done before the new ask',
        'bought twice while waiting or running',
        'deliveries per page to the new page',
        'after the new page was complete',
        'new page complete after (s)',
        'failures seen by the new page',
        'Redis connections StoryBang would have leaked (= asks)',
        'settled',
        'job ends',
      ],
      res.reload.map((r) => [
        who(r),
        r.deliveredBeforeReload.join(', '),
        sec(r.reloadAtMs),
        `${r.api.requests} (${r.api.requests - r.api.limited})`,
        r.perPage.map((p) => String(p.admitted)).join(' '),
        r.perPage
          .filter((p) => p.doneBeforeNewAsk)
          .map((p) => String(p.number))
          .join(', ') || '-',
        String(r.boughtTwice),
        r.perPage.map((p) => String(p.deliveriesToNew)).join(' '),
        String(r.afterComplete),
        sec(r.newCompleteMs) + capped(r),
        String(r.newFailures),
        String(r.asks),
        r.settled ? 'yes' : 'no',
        ends(r),
      ]),
    ),
    '',
  );

  lines.push('### 5. Light user behind a burst', '');
  lines.push(
    table(
      [
        'build',
        'API latency',
        'heavy jobs',
        'light waited (s)',
        '/ mean latency',
        'heavy delivered before it',
        "heavy's last image (s)",
        'heavy ideal (s)',
        'heavy delivered',
        '429 share',
        'peak in flight',
        'job ends',
      ],
      res.burst.map((r) => [
        who(r),
        describeDelay(r.latency),
        String(r.heavyJobs),
        sec(r.lightWaitMs),
        r.lightWaitMs === undefined ? '-' : n1(r.lightWaitMs / meanDelayMs(r.latency)),
        String(r.heavyBeforeLight),
        sec(r.heavyLastMs) + capped(r),
        sec(r.heavyIdealMs),
        `${r.heavyDelivered} of ${r.heavyJobs}`,
        pct(share429(r.api)),
        String(r.api.peakInFlight),
        ends(r),
      ]),
    ),
    '',
  );
  return lines;
}
