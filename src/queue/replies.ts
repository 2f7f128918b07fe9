import type { ErrorCode } from '../base/errors';

/**
 * What the fair queue's scripts answer, decoded in one place. Every script that acts for a claim starts its reply
 * with one of these codes (BullMQ's scripts do the same with their error codes), so no caller reads a raw reply.
 */
const REPLY = {
  /** Done (END), or a job was claimed (CLAIM). */
  DONE: 1,
  /** Nothing to claim (CLAIM), or: tell the failure now (HOLD-BACK). */
  NONE: 0,
  /** The failure's answer is held back (HOLD-BACK). */
  HELD_BACK: 2,
  /** The caller's claim is gone: it lapsed and was taken back, perhaps claimed again. Nothing was changed. */
  CLAIM_LOST: -1,
} as const;

/** A job as the fair queue hands it to a worker under a claim. */
export interface FairJob {
  /** The job's identity in the fair queue: Bull's creation time and id (`<timestamp>-<id>`). A re-added jobId is a new job. */
  fid: string;
  /** Bull's job id, as producers and logs know it. */
  id: string;
  /** The job's `Id` when it can name a user's line, else '' (its run fails with INVALID_JOB and a clear message). */
  userId: string;
  data: unknown;
  /** When the producer created it (Bull's timestamp). */
  createdAt: number;
  /** What the producer allowed (Bull's `attempts`, 1 when not given) and how many ended in a retry. */
  attempts: number;
  attemptsMade: number;
  /** Bull's `backoff` option as the producer gave it. */
  backoff: unknown;
  /** What makes two asks the same: sha1 of the user, the page (Number) and the prompt; '' for data without a user. */
  ask: string;
  /** A picture was delivered for this ask lately: it may be given again without buying (REMEMBER_PICTURES_S). */
  remembered: boolean;
  /** `answers`: claimed without waiting for the pace (it needs no image request); `line`: from its user's line. */
  lane: 'answers' | 'line';
  /** A paid picture was kept for it by an earlier run (a crash, a stall, a retry, a hand-back, a lost claim). */
  hasCheckpoint: boolean;
  /** A failure to tell instead of running: an answer that was held back, or a job whose claims kept lapsing. */
  answer?: ErrorCode;
  /** How long the answer was held back. */
  heldMs?: number;
  /** The answer is GENERATION_FAILED because the job's claims lapsed more than MAX_STALLED_COUNT times. */
  stalledOut: boolean;
}

/**
 * A job (`more`: other work may be waiting; false: none was, and the claimer waits to be woken), or how long until
 * asking again is worth it (null: until woken).
 */
export type ClaimReply = { job: FairJob; more: boolean; retryInMs?: undefined } | { job?: undefined; more?: undefined; retryInMs: number | null };

type RawReply = unknown[];

/** CLAIM's reply, from `at` in a longer reply (END appends one): the job, or how long until asking again is worth it. */
export function decodeClaim(reply: RawReply, at = 0): ClaimReply {
  if (reply[at] !== REPLY.DONE) {
    const ms = Number(reply[at + 1]);
    return { retryInMs: ms < 0 ? null : ms };
  }
  const job = decodeJob(String(reply[at + 1]), reply[at + 2] === 'answers' ? 'answers' : 'line', reply[at + 3] as string[]);
  return { job, more: reply[at + 4] !== 0 };
}

/** END's reply: whether the claim was the caller's, the Bull ids of the jobs that ended with it, the next claim. */
export function decodeEnd(reply: RawReply, claimedNext: boolean): { ended: boolean; joined: string[]; next?: ClaimReply } {
  if (reply[0] === REPLY.CLAIM_LOST) return { ended: false, joined: [] };
  const count = Number(reply[1]);
  const joined = reply.slice(2, 2 + count).map(String);
  return { ended: true, joined, ...(claimedNext ? { next: decodeClaim(reply, 2 + count) } : {}) };
}

/** RENEW's reply: the tokens of the claims that were lost, and whether the worker's own subscription is there (null: not asked). */
export function decodeRenew(reply: RawReply): { lost: string[]; present: boolean | null } {
  const present = Number(reply[0]);
  const lost = reply.slice(1).map((member) => String(member).slice(0, String(member).indexOf('|')));
  return { lost, present: present < 0 ? null : present === 1 };
}

export type HoldBackReply = { tell: true } | { tell: false; heldMs: number } | { tell: false; lost: true };

/** HOLD-BACK's reply: tell the failure now (the claim was confirmed), held back for `heldMs`, or the claim is gone. */
export function decodeHoldBack(reply: RawReply): HoldBackReply {
  if (reply[0] === REPLY.NONE) return { tell: true };
  if (reply[0] === REPLY.HELD_BACK) return { tell: false, heldMs: Number(reply[1]) };
  return { tell: false, lost: true };
}

function decodeJob(fid: string, lane: FairJob['lane'], fields: string[]): FairJob {
  const record: Record<string, string> = {};
  for (let i = 0; i < fields.length; i += 2) record[fields[i]] = fields[i + 1];
  const job: FairJob = {
    fid,
    id: record.bid ?? fid,
    userId: record.uid ?? '',
    data: parseJson(record.data),
    createdAt: Number(record.ts),
    attempts: Math.max(1, Number(record.attempts) || 1),
    attemptsMade: Number(record.made) || 0,
    backoff: parseJson(record.backoff),
    ask: record.ask ?? '',
    remembered: record.remembered === '1',
    lane,
    hasCheckpoint: record.cp === '1',
    stalledOut: record.stalledOut === '1',
  };
  if (record.answer) job.answer = record.answer as ErrorCode;
  if (record.heldMs) job.heldMs = Number(record.heldMs);
  return job;
}

function parseJson(text: string | undefined): unknown {
  try {
    return text === undefined ? null : JSON.parse(text);
  } catch {
    return null;
  }
}
/** Bull's job counts, as its getJobCounts() names them. */
export interface BullCounts {
  waiting: number;
  active: number;
  completed: number;
  failed: number;
  delayed: number;
  paused: number;
}

export interface Intake {
  /** Ids read from Bull's wait list. */
  read: number;
  lined: number;
  joined: number;
  answers: number;
  unapplied: Array<{ id: string; option: string }>;
  /** The jobs that went into a line, with their data as Bull has it. */
  jobs: Array<{ fid: string; data: string }>;
}

export interface FairCounts {
  usersWaiting: number;
  waiting: number;
  running: number;
  retrying: number;
  heldBack: number;
  answers: number;
  joined: number;
  heldBackTotal: number;
}

/** INTAKE's reply: {lined, joined, answers, read, n, n/2 x (id, option), then fid, data of each job lined}. */
export function decodeIntake(reply: RawReply): Intake {
  const notes = Number(reply[4]);
  const unapplied: Intake['unapplied'] = [];
  for (let i = 5; i < 5 + notes; i += 2) unapplied.push({ id: String(reply[i]), option: String(reply[i + 1]) });
  const jobs: Intake['jobs'] = [];
  for (let i = 5 + notes; i < reply.length; i += 2) jobs.push({ fid: String(reply[i]), data: String(reply[i + 1]) });
  return { lined: Number(reply[0]), joined: Number(reply[1]), answers: Number(reply[2]), read: Number(reply[3]), unapplied, jobs };
}

/** REAP's reply: {requeued, stalledOut, promoted, suspects}. */
export function decodeReap(reply: RawReply): { requeued: number; stalledOut: number; promoted: number; suspects: number } {
  const [requeued, stalledOut, promoted, suspects] = reply.map(Number);
  return { requeued, stalledOut, promoted, suspects };
}

export type SweepReply = { swept: false; epoch: number } | { swept: true; looked: number; taken: number; relinked: number; epoch: number };

/** SWEEP's reply: {DONE, looked, taken, relinked, epoch}, or {NONE, epoch} when another live worker sweeps this round. */
export function decodeSweep(reply: RawReply): SweepReply {
  if (reply[0] !== REPLY.DONE) return { swept: false, epoch: Number(reply[1]) };
  const [, looked, taken, relinked, epoch] = reply.map(Number);
  return { swept: true, looked, taken, relinked, epoch };
}

/** COUNTS' reply: Bull's six counts, then the fair queue's (see counts-13.lua). */
export function decodeCounts(reply: RawReply): { bull: BullCounts; fair: FairCounts } {
  const [wait, active, completed, failed, delayed, paused, usersWaiting, running, retrying, heldBack, answers, joined, heldBackTotal] = reply.map(Number);
  const waiting = Math.max(0, active - running - retrying - heldBack - answers - joined);
  return {
    bull: { waiting: wait, active, completed, failed, delayed, paused },
    fair: { usersWaiting, waiting, running, retrying, heldBack, answers, joined, heldBackTotal },
  };
}
