import type { Job } from 'bull';
import type { Redis } from 'ioredis';
import { usableIdOf } from './jobData';
import * as scripts from './fairQueueScripts';

/** A job as the fair queue holds it, once claimed by a worker. */
export interface FairJob {
  id: string;
  /** The job's `Id` when usable, else '' (its run fails with INVALID_JOB and a clear message). */
  userId: string;
  data: unknown;
  /** When the producer created it (Bull's timestamp): with the user it fingerprints a checkpoint to this job. */
  createdAt: number;
  /** What the producer allowed (Bull's `attempts`, 1 when not given) and how many ended in a retry. */
  attempts: number;
  attemptsMade: number;
  /** Bull's `backoff` option as the producer gave it. */
  backoff: unknown;
  /** An earlier run may have left a checkpoint (it stalled, was retried or handed back); a first clean run cannot. */
  mayHaveCheckpoint: boolean;
}

export type Claim = { job: FairJob; retryInMs?: undefined } | { job?: undefined; retryInMs: number | null };

export interface FairQueueOptions {
  /** Lease of a claimed job (LOCK_DURATION_MS): renewed while it runs; a lapsed one is reaped. */
  leaseMs: number;
  /** USER_CONCURRENCY: one user's jobs running across the fleet; 0 for no cap. */
  userConcurrency: number;
  /** How long an ended job's id is remembered, so Bull handing it in again after a crash is not run twice. */
  doneTtlS: number;
  /** Claim only while the image API has a free slot (the shared pace is on). */
  paced: boolean;
}

/**
 * With the pace on, how long a claimed job has to reserve its slot before other workers may claim again: long
 * enough for a local token check, short against the 200 ms between slots.
 */
const CLAIM_HOLD_MS = 50;

type Commands = Record<keyof typeof SCRIPTS, (...args: Array<string | number>) => Promise<unknown>>;
const SCRIPTS = {
  fqIntake: scripts.INTAKE,
  fqClaim: scripts.CLAIM,
  fqPromote: scripts.PROMOTE,
  fqEnd: scripts.END,
  fqRenew: scripts.RENEW,
  fqReap: scripts.REAP,
  fqAcquire: scripts.ACQUIRE,
  fqSlowDown: scripts.SLOW_DOWN,
  fqCounts: scripts.COUNTS,
};

/** The fair queue's commands on `redis` (defined once per connection; ioredis sends them as EVALSHA). */
export function fairCommands(redis: Redis): Commands {
  for (const [name, lua] of Object.entries(SCRIPTS)) {
    if (!(name in redis)) redis.defineCommand(name, { numberOfKeys: 0, lua });
  }
  return redis as unknown as Commands;
}

/**
 * The fleet's one queue of image work, fair between users. Bull brings jobs in (producers stay as they are);
 * each is moved here at once, into its user's list. Workers claim round robin over the users that wait, so
 * one user's burst (a story's pages) never holds another user's single image back, and a user alone gets
 * every worker. A claimed job is leased: a worker that dies leaves it to be reaped and run again.
 * See fairQueueScripts.ts for what Redis holds.
 */
export class FairQueue {
  private readonly commands: Commands;

  constructor(
    redis: Redis,
    /** The queue's key prefix, e.g. `bull:Grok_Image_Generator:`. */
    readonly base: string,
    private readonly options: FairQueueOptions,
  ) {
    this.commands = fairCommands(redis);
  }

  /** Where idle workers hear that jobs are ready. */
  get wakeChannel(): string {
    return `${this.base}f:wake`;
  }

  /** Moves a Bull job in; false when it was in already (Bull ran it again after a crash), which is harmless. */
  async intake(job: Job): Promise<boolean> {
    const data = job.data as unknown;
    const taken = await this.commands.fqIntake(
      this.base,
      String(job.id),
      usableIdOf(data) ?? '',
      JSON.stringify(data) ?? 'null',
      job.timestamp,
      job.opts.attempts ?? 1,
      JSON.stringify(job.opts.backoff ?? null),
    );
    return taken === 1;
  }

  /** The next job, fairly, or how long until asking again is worth it (null: until woken). */
  async claim(): Promise<Claim> {
    const { leaseMs, userConcurrency, paced } = this.options;
    const reply = (await this.commands.fqClaim(this.base, leaseMs, userConcurrency, paced ? 1 : 0, CLAIM_HOLD_MS)) as
      | [1, string, string[]]
      | [0, number];
    if (reply[0] === 0) return { retryInMs: reply[1] < 0 ? null : reply[1] };
    return { job: parseJob(reply[1], reply[2]) };
  }

  /** The job has ended (completed or failed for good); its checkpoint goes with it. */
  async done(job: FairJob): Promise<boolean> {
    return this.end(job, 'done', 0);
  }

  /** Runs the job again after `delayMs`, as the producer's next attempt: call `promote` once it is due. */
  async retryLater(job: FairJob, delayMs: number): Promise<boolean> {
    return this.end(job, 'retry', delayMs);
  }

  /** Retries that are due join their users' lines (the reaper does it too, for a worker that died meanwhile). */
  async promote(): Promise<number> {
    return (await this.commands.fqPromote(this.base)) as number;
  }

  /** Gives the job back, first in its user's line: this worker is stopping. */
  async handBack(job: FairJob): Promise<boolean> {
    return this.end(job, 'back', 0);
  }

  private async end(job: FairJob, how: 'done' | 'retry' | 'back', delayMs: number): Promise<boolean> {
    const { doneTtlS, userConcurrency } = this.options;
    return (await this.commands.fqEnd(this.base, job.id, job.userId, how, doneTtlS, Math.max(0, Math.round(delayMs)), userConcurrency)) === 1;
  }

  /** Extends the leases of the jobs this worker runs. */
  async renew(ids: string[]): Promise<void> {
    if (ids.length > 0) await this.commands.fqRenew(this.base, this.options.leaseMs, ...ids);
  }

  /** Requeues jobs whose worker died; returns those that stalled more than `maxStalls` times, now ended. */
  async reap(maxStalls: number): Promise<FairJob[]> {
    const reply = (await this.commands.fqReap(this.base, maxStalls, this.options.doneTtlS, this.options.userConcurrency)) as Array<string | string[]>;
    const ended: FairJob[] = [];
    for (let i = 0; i < reply.length; i += 2) ended.push(parseJob(reply[i] as string, reply[i + 1] as string[]));
    return ended;
  }

  async counts(): Promise<{ usersWaiting: number; ready: number; running: number; delayed: number }> {
    const [usersWaiting, ready, running, delayed] = (await this.commands.fqCounts(this.base)) as number[];
    return { usersWaiting, ready, running, delayed };
  }
}

function parseJob(id: string, fields: string[]): FairJob {
  const record: Record<string, string> = {};
  for (let i = 0; i < fields.length; i += 2) record[fields[i]] = fields[i + 1];
  return {
    id,
    userId: record.uid ?? '',
    data: parseJson(record.data),
    createdAt: Number(record.ts),
    attempts: Math.max(1, Number(record.attempts) || 1),
    attemptsMade: Number(record.made) || 0,
    backoff: parseJson(record.backoff),
    mayHaveCheckpoint: Number(record.stalls) > 0 || Number(record.made) > 0 || record.back === '1',
  };
}

function parseJson(text: string | undefined): unknown {
  try {
    return text === undefined ? null : JSON.parse(text);
  } catch {
    return null;
  }
}
