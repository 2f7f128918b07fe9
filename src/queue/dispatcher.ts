import { errorSummary } from '../base/errors';
import type { WorkerEvents } from '../events/workerEvents';
import type { Logger } from '../base/logger';
import { backoffDelayMs } from '../base/retryPolicy';
import { timeLimit } from '../base/sleep';
import { Throttle } from '../base/throttle';
import type { NextJob } from './ending';
import type { Claim, FairQueue, KnownClaims } from './fairQueue';
import type { ClaimReply } from './replies';

/**
 * A claim looks at fq:answers when the fleet said there may be work there (a wake message 'answers', which a lost
 * message could hide), and at least every this many claims.
 */
const ANSWERS_LOOK_EVERY = 20;
/** How long the dispatcher waits for a claimed job's first image API slot before it claims the next one anyway. */
const FIRST_SLOT_WAIT_MS = 2000;
/**
 * An idle worker is woken by the fleet's wake messages (and by its own intake, and when its subscription comes
 * back after a drop, when a message may have been lost); it asks again this often even without one.
 */
const IDLE_POLL_MS = 120_000;

type Waiting = 'work' | 'room' | 'first-slot' | 'pace' | 'redis' | 'nothing';

export interface DispatcherDeps {
  fair: FairQueue;
  /** A new claim token: `<worker>.<n>`. */
  token(): string;
  /** Runs one claimed job to its end; calls `onSlot` once it has its first image API slot (or needs none). */
  run(claim: Claim, onSlot: () => void, next: NextJob): Promise<void>;
  /** Gives back a job claimed once shutdown had begun, without starting it. */
  handBack(claim: Claim): Promise<void>;
  /** How many jobs this process may have in flight now, given how many it has. */
  limit(inFlight: number): number;
  paced: boolean;
  events: WorkerEvents;
  logger: Logger;
}

/**
 * Claims jobs from the fair queue while this process has room (the in-flight limit) and starts each run. With the
 * pace on it claims one job that needs the image API at a time, each once the previous one has its slot: the queue
 * then decides, fairly between users, who gets each slot. Every run is tracked by its claim from the moment it is
 * claimed until it has ended or been handed back, so shutdown waits for exactly that; a job claimed once shutdown
 * has begun (a claim under way, or one made with another job's end) is handed back, never started.
 */
export class Dispatcher {
  private readonly running = new Map<string, { claim: Claim; ended: Promise<void> }>();
  private readonly throttle = new Throttle(30_000);
  private stopping = false;
  private waiting: Waiting = 'nothing';
  private nudge: (() => void) | undefined;
  /** A wake that came while the dispatcher was not idle (a claim under way may have missed what it announced). */
  private woken: 'answers' | 'line' | null = null;
  /**
   * fq:answers may hold work: told so since a claim last looked there, or the last look found a job there. Claims
   * look only then (and every ANSWERS_LOOK_EVERY claims).
   */
  private answersPending = true;
  private claimsSinceLook = 0;
  /** Tokens of claims sent and not yet settled (the reply is on its way). */
  private readonly unsettled = new Set<string>();
  private loop: Promise<void> = Promise.resolve();
  /** The last claim found a job: more are likely waiting, and claiming with the end of a run is worth it. */
  private backlog = false;

  constructor(private readonly deps: DispatcherDeps) {}

  start(): void {
    this.loop = this.dispatch();
  }

  get inFlight(): number {
    return this.running.size;
  }

  /** How many more jobs this process would claim now (0 once stopping). */
  get room(): number {
    if (this.stopping) return 0;
    return Math.max(0, this.deps.limit(this.running.size) - this.running.size - this.unsettled.size);
  }

  /**
   * Jobs became ready somewhere in the fleet. An idle dispatcher claims now rather than at its next poll; one that
   * waits for the pace claims now only for `answers` (they never wait for it).
   */
  wake(what: 'answers' | 'line' = 'line'): void {
    if (what === 'answers') this.answersPending = true;
    if (this.waiting === 'work' || (what === 'answers' && this.waiting === 'pace')) this.nudge?.();
    else if (this.woken !== 'answers') this.woken = what;
  }

  /** Stops claiming and resolves true once every run has ended or been handed back, or false after `timeoutMs`. */
  async drain(timeoutMs: number): Promise<boolean> {
    const startedAt = performance.now();
    this.stopping = true;
    this.nudge?.();
    // A claim under way (Redis silent) ends the loop only once it is answered: the limit covers that wait too.
    await Promise.race([this.loop, timeLimit(timeoutMs)]);
    return this.settled(Math.max(0, timeoutMs - (performance.now() - startedAt)));
  }

  /** Resolves true when no run is left (including runs that start meanwhile), or false after `limitMs`. */
  async settled(limitMs: number): Promise<boolean> {
    const limit = timeLimit(limitMs).then(() => false);
    while (this.running.size > 0) {
      if (!(await Promise.race([Promise.all([...this.running.values()].map((r) => r.ended)).then(() => true), limit]))) return false;
    }
    return true;
  }

  private async dispatch(): Promise<void> {
    for (let failures = 0; !this.stopping;) {
      if (this.running.size >= this.deps.limit(this.running.size)) {
        await this.idle('room', IDLE_POLL_MS);
        continue;
      }
      const token = this.deps.token();
      let reply: ClaimReply;
      const looked = this.lookAtAnswers();
      this.woken = null;
      this.unsettled.add(token);
      try {
        reply = await this.deps.fair.claim(token, looked);
        failures = 0;
      } catch (err) {
        this.unsettled.delete(token);
        // What the claim was to look at is still unlooked-at.
        if (looked) this.answersPending = true;
        failures += 1;
        if (this.throttle.allow()) this.deps.logger.warn({ component: 'fair-queue', err: errorSummary(err) }, 'jobs not claimed: Redis failed; trying again');
        await this.idle('redis', backoffDelayMs(failures, { baseMs: 200, maxMs: 5000 }));
        continue;
      }
      this.found(reply, looked);
      this.unsettled.delete(token);
      if (reply.job) {
        const hasSlot = this.begin({ token, job: reply.job });
        if (this.deps.paced && reply.job.lane === 'line') {
          await Promise.race([hasSlot, this.idle('first-slot', FIRST_SLOT_WAIT_MS)]);
          if (this.waiting === 'first-slot') this.nudge?.();
        }
        // Nothing else was waiting: the next claim waits to be woken (a job taken in, a wake message, a run's end).
        if (!reply.more) await this.idle('work', IDLE_POLL_MS);
        continue;
      }
      await this.idle(reply.retryInMs === null ? 'work' : 'pace', reply.retryInMs ?? IDLE_POLL_MS);
    }
  }

  /**
   * Without the pace, a run that ends claims the next job in the same round trip when this process has room for
   * it (the ending run still counts until it has left). With the pace on, claims wait for the pace's slots.
   */
  private readonly next: NextJob = {
    wanted: () => {
      if (!this.backlog || this.stopping || this.deps.paced || this.running.size > this.deps.limit(this.running.size)) return undefined;
      const token = this.deps.token();
      this.unsettled.add(token);
      return { token, answers: this.lookAtAnswers() };
    },
    take: (reply, next) => {
      this.found(reply, next.answers);
      if (reply.job) void this.begin({ token: next.token, job: reply.job });
      this.unsettled.delete(next.token);
    },
    // The claim was not made (the end was refused) or its reply is lost: what it would have looked at is still
    // unlooked-at, so the dispatcher claims on its own.
    lost: (next) => {
      this.unsettled.delete(next.token);
      this.wake(next.answers ? 'answers' : 'line');
    },
  };

  /** The claims this worker knows: its runs (hand-backs included), and its claims whose replies are on their way. */
  get known(): KnownClaims {
    return { running: [...this.running.values()].map((r) => r.claim), pending: [...this.unsettled] };
  }

  /**
   * A job found with others waiting means claiming with a run's end is worth it; one found in fq:answers means the
   * next claim looks there again, and so does a claim that looked there and gave up (it passed over ten entries no
   * longer valid: more may follow).
   */
  private found(reply: ClaimReply, looked: boolean): void {
    this.backlog = reply.more === true;
    if (reply.job?.lane === 'answers' || (looked && reply.retryInMs === 0)) this.answersPending = true;
  }

  private lookAtAnswers(): boolean {
    const look = this.answersPending || ++this.claimsSinceLook >= ANSWERS_LOOK_EVERY;
    if (look) {
      this.answersPending = false;
      this.claimsSinceLook = 0;
    }
    return look;
  }

  /** Starts the claim's run (or hands it back, once stopping); settles once it has its first image API slot. */
  private begin(claim: Claim): Promise<void> {
    const { job, token } = claim;
    this.deps.events.emit('job:claimed', { jobId: job.id, fid: job.fid, claim: token, lane: job.lane });
    let gotSlot!: () => void;
    const hasSlot = new Promise<void>((resolve) => (gotSlot = resolve));
    const work = this.stopping ? this.deps.handBack(claim) : this.deps.run(claim, () => gotSlot(), this.next);
    const ended = work
      .catch((err: unknown) => this.deps.logger.error({ jobId: job.id, err: errorSummary(err) }, 'job run failed unexpectedly'))
      .finally(() => {
        this.running.delete(token);
        gotSlot();
        if (this.waiting === 'room') this.nudge?.();
      });
    this.running.set(token, { claim, ended });
    return hasSlot;
  }

  /** Waits `ms`, or less when nudged (a wake message for 'work', a run ending for 'room'), or stopped. */
  private idle(reason: Waiting, ms: number): Promise<void> {
    if (this.stopping) return Promise.resolve();
    if (this.woken && (reason === 'work' || (reason === 'pace' && this.woken === 'answers'))) {
      this.woken = null;
      return Promise.resolve();
    }
    return new Promise((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        if (this.nudge === done) {
          this.nudge = undefined;
          this.waiting = 'nothing';
        }
        resolve();
      };
      const timer = setTimeout(done, ms);
      this.nudge = done;
      this.waiting = reason;
    });
  }
}
