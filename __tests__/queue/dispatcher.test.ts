import { WorkerEvents } from '../../src/events/workerEvents';
import { createLogger } from '../../src/base/logger';
import type { NextJob } from '../../src/queue/ending';
import { Dispatcher } from '../../src/queue/dispatcher';
import type { Claim, FairQueue } from '../../src/queue/fairQueue';
import type { ClaimReply, FairJob } from '../../src/queue/replies';
import { fakeFairJob } from '../support/fakes';

const job = (n: number): FairJob => fakeFairJob(`0-${n}`, { id: String(n) });

/** A fair queue that hands out jobs 1..n, then nothing. */
function fakeQueue(n: number): { fair: FairQueue; claims: string[] } {
  let next = 1;
  const claims: string[] = [];
  const fair = {
    claim: async (token: string): Promise<ClaimReply> => {
      claims.push(token);
      return next <= n ? { job: job(next++), more: next <= n } : { retryInMs: null };
    },
  } as unknown as FairQueue;
  return { fair, claims };
}

type DispatcherOptions = ConstructorParameters<typeof Dispatcher>[0];

/** A dispatcher on `fair` that hands back nothing, unpaced, with room for 10 runs; `options` override. */
function dispatcherOn(fair: FairQueue, options: Partial<DispatcherOptions>): Dispatcher {
  let n = 0;
  return new Dispatcher({
    fair,
    token: () => `w.${++n}`,
    run: async (_claim, onSlot) => onSlot(),
    handBack: async () => undefined,
    limit: () => 10,
    paced: false,
    events: new WorkerEvents(),
    logger: createLogger('silent'),
    ...options,
  });
}

describe('Dispatcher', () => {
  it('gives every claim a token of its own and tracks each run by it', async () => {
    const { fair, claims } = fakeQueue(3);
    const runs: Claim[] = [];
    const dispatcher = dispatcherOn(fair, {
      run: async (claim, onSlot) => {
        runs.push(claim);
        onSlot();
      },
    });
    dispatcher.start();
    while (runs.length < 3) await new Promise((r) => setImmediate(r));
    expect(await dispatcher.drain(1000)).toBe(true);
    expect(runs.map((c) => c.token)).toEqual(['w.1', 'w.2', 'w.3']);
    expect(new Set(claims).size).toBe(claims.length);
  });

  it('a job claimed with the end of another run once shutdown has begun is handed back, never started', async () => {
    const { fair } = fakeQueue(1);
    const started: string[] = [];
    const handedBack: string[] = [];
    let finishFirst!: () => void;
    let offered: NextJob | undefined;
    const dispatcher = dispatcherOn(fair, {
      token: () => `w.${started.length + handedBack.length + 1}`,
      run: async (claim, onSlot, next) => {
        started.push(claim.job.id);
        offered = next;
        onSlot();
        await new Promise<void>((resolve) => (finishFirst = resolve));
      },
      handBack: async (claim) => void handedBack.push(claim.job.id),
    });
    dispatcher.start();
    while (started.length === 0) await new Promise((r) => setImmediate(r));
    // The first run's end asked for the next job before shutdown began (a backlog was seen)...
    const drained = dispatcher.drain(5000);
    // ...and the job that round trip claimed arrives after it began.
    offered!.take({ job: job(2), more: false }, { token: 'w.late', answers: true });
    finishFirst();
    expect(await drained).toBe(true);
    expect(started).toEqual(['1']);
    expect(handedBack).toEqual(['2']);
  });

  it('keeps looking at the answers while a look finds a job there: a batch of answers is never stranded', async () => {
    // Three answers wait (one wake message told of them all), and five jobs in line.
    const answers = [11, 12, 13].map((n) => ({ ...job(n), lane: 'answers' as const }));
    const line = [1, 2, 3, 4, 5].map(job);
    const fair = {
      claim: async (_token: string, look: boolean): Promise<ClaimReply> => {
        const next = (look && answers.shift()) || line.shift();
        return next ? { job: next, more: answers.length + line.length > 0 } : { retryInMs: null };
      },
    } as unknown as FairQueue;
    const started: string[] = [];
    const dispatcher = dispatcherOn(fair, {
      run: async (claim, onSlot) => {
        started.push(claim.job.id);
        onSlot();
      },
    });
    dispatcher.start();
    // The last job claimed said nothing more was waiting: then the dispatcher waits for a wake message.
    for (let turns = 0; started.length < 8 && turns < 1000; turns++) await new Promise((r) => setImmediate(r));
    expect(await dispatcher.drain(1000)).toBe(true);
    expect(started).toEqual(['11', '12', '13', '1', '2', '3', '4', '5']);
  });

  it('claims no further after a job that said nothing more was waiting, until it is woken', async () => {
    const waiting = [1, 2].map(job);
    const claimed: string[] = [];
    const fair = {
      claim: async (token: string): Promise<ClaimReply> => {
        claimed.push(token);
        const next = waiting.shift();
        return next ? { job: next, more: false } : { retryInMs: null };
      },
    } as unknown as FairQueue;
    const dispatcher = dispatcherOn(fair, {});
    dispatcher.start();
    for (let turns = 0; turns < 200; turns++) await new Promise((r) => setImmediate(r));
    // One claim, not a second one that would find nothing (a trickle of jobs pays for that on every job).
    expect(claimed).toEqual(['w.1']);
    dispatcher.wake('line');
    for (let turns = 0; claimed.length < 2 && turns < 200; turns++) await new Promise((r) => setImmediate(r));
    expect(claimed).toEqual(['w.1', 'w.2']);
    expect(await dispatcher.drain(1000)).toBe(true);
  });
});
