import path from 'node:path';
import type { ErrorCode } from '../errors';
import { defineScripts, loadScripts, RedisClient, ScriptCommand } from '../redisScripts';
import { QueueKeys } from './keys';

const SCRIPTS = loadScripts(path.join(__dirname, 'commands'));
type Name = 'intake' | 'claim' | 'end' | 'hold' | 'renew' | 'reap' | 'promote' | 'counts' | 'checkpoint';

/** A job as the fair queue hands it to a worker: claimed, under a lease fenced by `token`. */
export interface FairJob {
  /** The job's identity in the fair queue: Bull's creation time and id (`<timestamp>-<id>`). A re-added jobId is a new job. */
  fid: string;
  /** Bull's job id, as producers and logs know it. */
  id: string;
  /** This claim's fencing token: only its holder can end, renew, retry or hand back the job. */
  token: string;
  /** The job's `Id` when usable, else '' (its run fails with INVALID_JOB and a clear message). */
  userId: string;
  data: unknown;
  /** When the producer created it (Bull's timestamp). */
  createdAt: number;
  /** What the producer allowed (Bull's `attempts`, 1 when not given) and how many ended in a retry. */
  attempts: number;
  attemptsMade: number;
  /** Bull's `backoff` option as the producer gave it. */
  backoff: unknown;
  /** An earlier run may have left a checkpoint (it stalled, was retried, handed back or lost its lease). */
  mayHaveCheckpoint: boolean;
  /** A failure to tell and nothing else: an answer that was held back, or a job that stalled too often. */
  answer?: ErrorCode;
  /** The answer is GENERATION_FAILED because the job's lease lapsed more than MAX_STALLED_COUNT times. */
  stalledOut: boolean;
}

export type Claim = { job: FairJob; retryInMs?: undefined } | { job?: undefined; retryInMs: number | null };

/** How a run ends. `completed`/`failed` end the job (and finish it in Bull); the others keep it. */
export type RunEnd = { how: 'completed'; returnValue: unknown } | { how: 'failed'; code: ErrorCode } | { how: 'retry'; delayMs: number } | { how: 'back' };

export interface FairQueueOptions {
  /** LOCK_DURATION_MS: a claimed job's lease, renewed while it runs; a lapsed one is reaped. */
  leaseMs: number;
  /** USER_CONCURRENCY: one user's jobs running across the fleet; 0 for no cap. */
  userConcurrency: number;
  /** Claim only while the image API has a free slot (the shared pace is on). */
  paced: boolean;
  /** Each this many ms of waiting counts as one job fewer in a user's line (aging; see AGING_MS). */
  agingMs?: number;
  /** With the pace on, how long a claim holds the next slot for its job (see CLAIM_HOLD_MS). */
  claimHoldMs?: number;
}

/**
 * Aging: a user's place among users is their waiting jobs x AGING_MS + when they started waiting, lowest first.
 * So the fewest waiting go first (stories complete one after another), and a user with n jobs waiting is passed
 * by newcomers only during their first (n - 1) x AGING_MS of waiting.
 */
const AGING_MS = 1000;
/** With the pace on, how long a claimed job has to reserve its slot before other workers may claim again. */
const CLAIM_HOLD_MS = 50;
/** How long a failure told for a page is remembered: a repeat within it is held back (see hold-14.lua). */
const TOLD_WINDOW_MS = 120_000;

/**
 * The fleet's one queue of image work, fair between users, behind Bull: Bull's wait list feeds it (producers
 * stay as they are), and each job stays `active` in Bull, locked by the fair queue, until END finishes it there.
 * The scripts are in ./commands, one per file; docs/ARCHITECTURE.md has the states and invariants.
 */
export class FairQueue {
  readonly keys: QueueKeys;
  private readonly commands: Record<Name, ScriptCommand>;
  private readonly agingMs: number;

  constructor(
    client: RedisClient,
    /** The queue's key prefix, e.g. `bull:Grok_Image_Generator:`. */
    prefix: string,
    private readonly options: FairQueueOptions,
  ) {
    this.keys = new QueueKeys(prefix);
    this.commands = defineScripts<Name>(client, SCRIPTS, 'fq');
    this.agingMs = options.agingMs ?? AGING_MS;
  }

  private get prefix(): string {
    return this.keys.prefix;
  }

  /**
   * Moves up to `batch` jobs from Bull's wait list in (and `firstId`, already moved to Bull's active list by a
   * blocking read). Returns how many joined a line, how many joined an identical job, and the Bull options the
   * worker does not apply (to be logged).
   */
  async intake(firstId: string | null, batch: number): Promise<{ taken: number; joined: number; unapplied: Array<{ id: string; option: string }> }> {
    const reply = (await this.commands.intake(...this.keys.fixed, this.prefix, firstId ?? '', batch, this.agingMs)) as Array<string | number>;
    const unapplied: Array<{ id: string; option: string }> = [];
    for (let i = 2; i < reply.length; i += 2) unapplied.push({ id: String(reply[i]), option: String(reply[i + 1]) });
    return { taken: Number(reply[0]), joined: Number(reply[1]), unapplied };
  }

  /** The next job, fairly, or how long until asking again is worth it (null: until woken). */
  async claim(): Promise<Claim> {
    return parseClaim((await this.commands.claim(...this.keys.fixed, this.prefix, ...this.claimArgs(), this.agingMs)) as ClaimReply);
  }

  private claimArgs(): number[] {
    const { leaseMs, userConcurrency, paced, claimHoldMs = CLAIM_HOLD_MS } = this.options;
    return [leaseMs, userConcurrency, paced ? 1 : 0, claimHoldMs];
  }

  /**
   * Ends this run of the job, if its lease is still this claim's: `held` false when it was lost (another worker
   * may hold the job now, and nothing was changed). `joined`: the Bull ids of jobs that had joined this one and
   * ended with it. `askedApi`: whether the run reserved a slot of the image API. `claimNext`: claim the next job
   * in the same round trip (`next`, as `claim()` answers).
   */
  async end(job: FairJob, end: RunEnd, askedApi = true, claimNext = false): Promise<{ held: boolean; joined: string[]; next?: Claim }> {
    const value = end.how === 'completed' ? (JSON.stringify(end.returnValue) ?? 'null') : end.how === 'failed' ? end.code : '';
    const delayMs = end.how === 'retry' ? Math.max(0, Math.round(end.delayMs)) : 0;
    const keys = [...this.keys.fixed, this.keys.job(job.fid), this.keys.checkpoint(job.fid), this.keys.joined(job.fid)];
    const args = [
      this.prefix,
      job.fid,
      job.token,
      end.how,
      value,
      delayMs,
      Date.now(),
      this.agingMs,
      TOLD_WINDOW_MS,
      askedApi ? 0 : 1,
      claimNext ? 1 : 0,
      ...this.claimArgs(),
    ];
    const reply = (await this.commands.end(...keys, ...args)) as unknown[];
    const count = Number(reply[1]);
    const joined = reply.slice(2, 2 + count).map(String);
    const rest = reply.slice(2 + count) as ClaimReply;
    return { held: reply[0] === 1, joined, ...(claimNext && reply[0] === 1 ? { next: parseClaim(rest) } : {}) };
  }

  /**
   * A failure `code` is about to be told: returns how long its answer is held back (the same failure was told
   * for this page a moment ago; the job is then set aside, and the lease released), 0 to tell it now, or -1 when
   * the lease was lost.
   */
  async hold(job: FairJob, code: ErrorCode): Promise<number> {
    return (await this.commands.hold(...this.keys.fixed, this.keys.job(job.fid), this.prefix, job.fid, job.token, code)) as number;
  }

  /** Extends the leases of `jobs`; returns the fids of those whose lease was lost. */
  async renew(jobs: FairJob[]): Promise<string[]> {
    if (jobs.length === 0) return [];
    const lost = (await this.commands.renew(this.keys.active, this.prefix, this.options.leaseMs, ...jobs.map(member))) as string[];
    return lost.map((m) => m.slice(m.indexOf('|') + 1));
  }

  /** Whether this claim still holds the job (its lease is extended if so): asked before paying and delivering. */
  async confirm(job: FairJob): Promise<boolean> {
    return (await this.renew([job])).length === 0;
  }

  /** Requeues jobs whose lease lapsed, marks those that lapsed too often, and promotes what is due. */
  async reap(maxStalls: number): Promise<{ requeued: number; stalledOut: number; promoted: number }> {
    const [requeued, stalledOut, promoted] = (await this.commands.reap(...this.keys.fixed, this.prefix, this.agingMs, maxStalls)) as number[];
    return { requeued, stalledOut, promoted };
  }

  /** Due retries and due answers join their users' lines; returns how many. */
  async promote(): Promise<number> {
    return (await this.commands.promote(...this.keys.fixed, this.prefix, this.agingMs)) as number;
  }

  /** Keeps `value` (a paid-for image) as the job's checkpoint unless the job has ended. */
  async keepCheckpoint(fid: string, value: Buffer, ttlS: number): Promise<boolean> {
    return (await this.commands.checkpoint(this.keys.job(fid), this.keys.checkpoint(fid), ttlS, value)) === 1;
  }

  /** O(1) counts for the stats line. `waiting`: jobs in users' lines (Bull's active list less the rest). */
  async counts(): Promise<FairCounts> {
    const [usersWaiting, running, retrying, heldBack, joined, heldBackTotal, bullActive] = (await this.commands.counts(
      ...this.keys.fixed,
      this.prefix,
    )) as number[];
    const waiting = Math.max(0, bullActive - running - retrying - heldBack - joined);
    return { usersWaiting, waiting, running, retrying, heldBack, joined, heldBackTotal };
  }
}

export interface FairCounts {
  usersWaiting: number;
  waiting: number;
  running: number;
  retrying: number;
  heldBack: number;
  joined: number;
  heldBackTotal: number;
}

type ClaimReply = [1, string, number, string[]] | [0, number];

function parseClaim(reply: ClaimReply): Claim {
  if (reply[0] === 0) return { retryInMs: reply[1] < 0 ? null : reply[1] };
  return { job: parseJob(reply[1], reply[2], reply[3]) };
}

function member(job: FairJob): string {
  return `${job.token}|${job.fid}`;
}

function parseJob(fid: string, token: number, fields: string[]): FairJob {
  const record: Record<string, string> = {};
  for (let i = 0; i < fields.length; i += 2) record[fields[i]] = fields[i + 1];
  const job: FairJob = {
    fid,
    id: record.bid ?? fid,
    token: String(token),
    userId: record.uid ?? '',
    data: parseJson(record.data),
    createdAt: Number(record.ts),
    attempts: Math.max(1, Number(record.attempts) || 1),
    attemptsMade: Number(record.made) || 0,
    backoff: parseJson(record.backoff),
    mayHaveCheckpoint: token > 1 || Number(record.made) > 0,
    stalledOut: record.stalledOut === '1',
  };
  if (record.answer) job.answer = record.answer as ErrorCode;
  return job;
}

function parseJson(text: string | undefined): unknown {
  try {
    return text === undefined ? null : JSON.parse(text);
  } catch {
    return null;
  }
}
