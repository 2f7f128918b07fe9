import path from 'node:path';
import type { ErrorCode } from '../base/errors';
import { defineScripts, loadScripts, RedisClient, ScriptCommand } from '../redis/scripts';
import { QueueKeys } from './keys';
import { MAX_ID_LENGTH } from '../pipeline/steps/jobData';
import {
  BullCounts,
  ClaimReply,
  decodeClaim,
  decodeCounts,
  decodeEnd,
  decodeHoldBack,
  decodeIntake,
  decodeReap,
  decodeRenew,
  decodeSweep,
  FairCounts,
  FairJob,
  HoldBackReply,
  Intake,
} from './replies';

const SCRIPTS = loadScripts(path.join(__dirname, 'commands'));
const NAMES = ['intake', 'claim', 'end', 'holdBack', 'renew', 'reap', 'promote', 'sweep', 'expedite', 'counts', 'checkpoint', 'epoch', 'orphans'] as const;
type Name = (typeof NAMES)[number];

/** A run's hold on a job: only the sweeper of its token may renew, end, retry, hold back or hand back the job. */
export interface Claim {
  /** `<worker>.<n>`: unique for the life of the data, also after Redis lost writes. */
  token: string;
  job: FairJob;
}

/** How a run ends. `completed`/`failed` end the job (and finish it in Bull); the others keep it. */
export type RunEnd =
  | { how: 'completed'; returnValue: unknown }
  /** `shared`: the failure belongs to the ask, so the jobs that joined it fail too (not to its token or data). */
  | { how: 'failed'; code: ErrorCode; shared: boolean }
  | { how: 'retry'; delayMs: number }
  /** `answer`: the run had this failure to tell and was stopped first: the job comes back as that answer. */
  | { how: 'back'; answer?: ErrorCode };

/** The claims a worker knows: those it runs, and the tokens of those whose replies are on their way. */
export interface KnownClaims {
  running: Claim[];
  pending: string[];
}

/** The next job to claim in the same round trip as a run's end. */
export interface NextClaim {
  token: string;
  /** Look at fq:answers first: the dispatcher was told there may be some since it last looked. */
  answers: boolean;
}

/** How the fleet can tell that a worker is gone: by its subscription to its own channel (see reap-14.lua). */
export type Presence = 'channel' | 'shard' | 'off';

export interface FairQueueOptions {
  /** LOCK_DURATION_MS: a claim's lease, renewed while it runs; a lapsed one is taken back. */
  leaseMs: number;
  /** USER_CONCURRENCY: one user's jobs running across the fleet; 0 for no cap. */
  userConcurrency: number;
  /** Claim only while the image API has a free slot (the shared pace is on). */
  paced: boolean;
  /** How long a claim promises the pace's next slot to its job (see PROMISE_MS in capacity/pacer.ts). */
  promiseMs: number;
  /** How long Bull's lock of a job the fair queue has lasts unless a live worker keeps it (see Keeper). */
  lockMs: number;
  /** Each this many ms of waiting counts as one job fewer in a user's line (aging; see AGING_MS). */
  agingMs?: number;
  /** Pictures delivered lately are kept (REMEMBER_PICTURES_S): an ask that has one goes to the answers. */
  remember?: boolean;
}

/**
 * Aging: a user's place among users is their waiting jobs x AGING_MS + when they started waiting, lowest first.
 * So the fewest waiting go first (stories complete one after another), and a user with n jobs waiting is passed
 * by newcomers only during their first (n - 1) x AGING_MS of waiting.
 */
const AGING_MS = 1000;
/** How long a failure told for an ask is remembered: a repeat within it is held back (see hold-back-14.lua). */
const TOLD_WINDOW_MS = 120_000;
/**
 * The rule on Id (validateJobData's MAX_ID_LENGTH) in the bytes the scripts see: a UTF-16 code unit is at most 3
 * bytes of UTF-8. Data whose Id is longer names no line and goes to the answers, where its run says why.
 */
const MAX_ID_BYTES = MAX_ID_LENGTH * 3;
/** Ids of Bull's active list one SWEEP call looks at. */
const SWEEP_PAGE = 500;

/**
 * The fleet's one queue of image work, fair between users, behind Bull: Bull's wait list feeds it (producers
 * stay as they are), and each job stays `active` in Bull, locked for the fair queue, until END finishes it there.
 * The scripts are in ./commands, one per file; docs/ARCHITECTURE.md has the states and invariants. Each method
 * is one script call; its reply is decoded in ./replies.ts.
 */
export class FairQueue {
  readonly keys: QueueKeys;
  private readonly commands: Record<Name, ScriptCommand>;
  private readonly agingMs: number;
  /** Calls Redis failed since the start: a keeper that sees it grow knows Redis was away meanwhile. */
  private failedCalls = 0;
  /** The fleet's epoch as this worker knows it (see commands/epoch-14.lua): learned at start, kept by sweeps. */
  private epoch = 0;

  constructor(
    client: RedisClient,
    /** The queue's key prefix, e.g. `bull:Grok_Image_Generator:`. */
    prefix: string,
    private readonly options: FairQueueOptions,
  ) {
    this.keys = new QueueKeys(prefix);
    this.commands = defineScripts(client, SCRIPTS, 'fq', NAMES);
    this.agingMs = options.agingMs ?? AGING_MS;
  }

  private get prefix(): string {
    return this.keys.prefix;
  }

  /**
   * Learns the fleet's epoch, beginning a new one when no worker kept Bull's locks for their life: asked once before
   * the first claim, so that a job a plain Bull worker may have run meanwhile is checked when claimed.
   */
  async learnEpoch(): Promise<number> {
    this.epoch = Number(await this.call('epoch', ...this.keys.fixed, this.keys.kept, this.prefix, this.options.lockMs, this.epoch));
    return this.epoch;
  }

  /** How many calls Redis failed since the start. */
  get failures(): number {
    return this.failedCalls;
  }

  private async call(name: Name, ...args: Array<string | number | Buffer>): Promise<unknown[]> {
    try {
      return (await this.commands[name](...args)) as unknown[];
    } catch (err) {
      this.failedCalls += 1;
      throw err;
    }
  }

  /**
   * Moves up to `batch` jobs from Bull's wait list in (and `firstId`, already moved to Bull's active list by a
   * blocking read). Returns how many went into a line, joined an identical job or went to the answers, the Bull
   * options the worker does not apply (to be logged), and the jobs that went into a line (to be vetted).
   */
  async intake(firstId: string | null, batch: number, room = 0): Promise<Intake> {
    const { lockMs, remember } = this.options;
    const reply = await this.call(
      'intake',
      ...this.keys.fixed,
      this.prefix,
      firstId ?? '',
      batch,
      this.agingMs,
      lockMs,
      MAX_ID_BYTES,
      remember ? 1 : 0,
      this.epoch,
      room,
    );
    return decodeIntake(reply);
  }

  /**
   * The next job under a new claim `token`, fairly (work that needs no image request first, when `answers`: there
   * may be some), or how long until asking again is worth it (null: until woken).
   */
  async claim(token: string, answers = true): Promise<ClaimReply> {
    const { leaseMs, userConcurrency, paced, promiseMs, lockMs } = this.options;
    const args = [leaseMs, userConcurrency, paced ? 1 : 0, promiseMs, this.agingMs, lockMs, answers ? 1 : 0, this.epoch];
    return decodeClaim(await this.call('claim', ...this.keys.fixed, this.prefix, token, ...args));
  }

  /**
   * Ends this run of the job, if the claim is still the caller's (`ended` false: it was lost, and nothing was
   * changed). `joined`: the Bull ids of jobs that had joined this one and ended with it. `askedApi`: whether the run
   * reserved a slot of the image API. `next`: claim the next job in the same round trip.
   */
  async end(claim: Claim, end: RunEnd, askedApi = true, next?: NextClaim): Promise<{ ended: boolean; joined: string[]; next?: ClaimReply }> {
    const { job, token } = claim;
    const value =
      end.how === 'completed' ? (JSON.stringify(end.returnValue) ?? 'null') : end.how === 'failed' ? end.code : end.how === 'back' ? (end.answer ?? '') : '';
    const delayMs = end.how === 'retry' ? Math.max(0, Math.round(end.delayMs)) : 0;
    const shared = end.how === 'failed' && end.shared ? 1 : 0;
    const keys = [...this.keys.fixed, this.keys.job(job.fid), this.keys.checkpoint(job.fid), this.keys.joined(job.fid)];
    const { leaseMs, userConcurrency, paced, promiseMs, lockMs } = this.options;
    const args = [job.fid, token, end.how, value, delayMs, Date.now(), this.agingMs, TOLD_WINDOW_MS, askedApi ? 1 : 0, shared, next?.token ?? ''];
    const claimArgs = [leaseMs, userConcurrency, paced ? 1 : 0, promiseMs, lockMs, next?.answers ? 1 : 0, this.epoch];
    const reply = await this.call('end', ...keys, this.prefix, ...args, ...claimArgs);
    return decodeEnd(reply, next !== undefined);
  }

  /**
   * A failure `code` is about to be told: tell it now (the claim is confirmed and renewed), or it is held back (the
   * same failure was told for this ask a moment ago; the job is set aside and the claim released), or the claim
   * is gone.
   */
  async holdBack(claim: Claim, code: ErrorCode): Promise<HoldBackReply> {
    const { job, token } = claim;
    const reply = await this.call(
      'holdBack',
      ...this.keys.fixed,
      this.keys.job(job.fid),
      this.prefix,
      job.fid,
      token,
      code,
      this.options.leaseMs,
      this.agingMs,
    );
    return decodeHoldBack(reply);
  }

  /**
   * Extends `claims`; returns the tokens of those that were lost, and whether `self`'s subscription is there (its
   * presence: see presence.ts), when asked.
   */
  async renew(
    claims: Array<Pick<Claim, 'token'> & { job: Pick<FairJob, 'fid'> }>,
    self: { presence: Presence; worker: string } = { presence: 'off', worker: '' },
  ): Promise<{ lost: string[]; present: boolean | null }> {
    const members = claims.map((c) => `${c.token}|${c.job.fid}`);
    return decodeRenew(await this.call('renew', ...this.keys.fixed, this.prefix, this.options.leaseMs, self.presence, self.worker, ...members));
  }

  /**
   * Takes back lapsed claims and every claim of a worker gone for `graceMs` (`presence`), marks those that lapsed too
   * often, and promotes what is due. `suspects`: workers to look at again in `graceMs`.
   */
  async reap(opts: {
    maxStalls: number;
    presence: Presence;
    graceMs: number;
    worker: string;
  }): Promise<{ requeued: number; stalledOut: number; promoted: number; suspects: number }> {
    const { maxStalls, presence, graceMs, worker } = opts;
    const reply = await this.call('reap', ...this.keys.fixed, this.keys.suspects, this.prefix, this.agingMs, maxStalls, presence, graceMs, worker);
    return decodeReap(reply);
  }

  /**
   * Gives back every claim of `worker` it does not know (`known`: the claims it runs, and the tokens of its claims
   * under way): a reply lost with the connection and a command sent again left it behind. Returns how many.
   */
  async giveBackOrphans(worker: string, known: KnownClaims): Promise<number> {
    const members = known.running.map((c) => `${c.token}|${c.job.fid}`);
    return Number(await this.call('orphans', ...this.keys.fixed, this.prefix, this.agingMs, worker, members.length, ...members, ...known.pending));
  }

  /** Due retries join their users' lines, due answers the answers; returns how many. */
  async promote(): Promise<number> {
    return Number(await this.call('promote', ...this.keys.fixed, this.prefix, this.agingMs));
  }

  /**
   * Walks Bull's active list, if no other live worker does this round (see sweep-16.lua). A job a run may still
   * have waits half a lease before it runs again. Returns null when another worker sweeps this round, else what it
   * did.
   */
  async sweep(opts: { worker: string; roundMs: number; presence: Presence }): Promise<{ looked: number; taken: number; relinked: number } | null> {
    const total = { looked: 0, taken: 0, relinked: 0 };
    for (let start = 0; ; start += SWEEP_PAGE) {
      const reply = decodeSweep(
        await this.call(
          'sweep',
          ...this.keys.fixed,
          this.keys.swept,
          this.keys.unknown,
          this.keys.kept,
          this.prefix,
          opts.worker,
          Math.max(1, Math.round(opts.roundMs)),
          this.options.lockMs,
          this.agingMs,
          MAX_ID_BYTES,
          start,
          SWEEP_PAGE,
          opts.presence,
          Math.round(this.options.leaseMs / 2),
          this.epoch,
        ),
      );
      this.epoch = Math.max(this.epoch, reply.epoch);
      if (!reply.swept) return start === 0 ? null : total;
      total.looked += reply.looked;
      total.taken += reply.taken;
      total.relinked += reply.relinked;
      if (reply.looked < SWEEP_PAGE) return total;
    }
  }

  /** Jobs in users' lines found to need no image request go to the answers; returns how many moved. */
  async expedite(fids: string[]): Promise<number> {
    if (fids.length === 0) return 0;
    return Number(await this.call('expedite', ...this.keys.fixed, this.prefix, this.agingMs, ...fids));
  }

  /** Keeps `value` (a paid picture) as the job's checkpoint unless the job has ended. */
  async keepCheckpoint(fid: string, value: Buffer, ttlS: number): Promise<boolean> {
    return Number(await this.call('checkpoint', this.keys.job(fid), this.keys.checkpoint(fid), ttlS, value)) === 1;
  }

  /**
   * Bull's counts (as getJobCounts gives them) and the fair queue's, in O(1) and one round trip. `waiting` in the
   * fair queue: jobs in users' lines (Bull's active list less the rest).
   */
  async counts(): Promise<{ bull: BullCounts; fair: FairCounts }> {
    return decodeCounts(await this.call('counts', ...this.keys.fixed, this.prefix));
  }
}
