import type { RunSpec } from './measureRun';
import type { Delay } from './xaiServer';

/** How big each scenario is: the full run takes about 20 minutes on 2 busy cores, BENCH_QUICK=1 about 4. */
export interface Plan {
  quick: boolean;
  overhead: { jobs: number; rounds: number; imageBytes: number };
  latency: { jobs: number; delayMs: number; imageBytes: number };
  /** `stall`: the saturated run again, with the relay process frozen for `forMs`, `afterMs` into the run. */
  memory: { batches: number[]; delayMs: number; imageBytes: number; saturatedJobs: number; stall: { jobs: number; afterMs: number; forMs: number } };
  /** Many small jobs as fast as they go, heap read after a full GC between batches: growth that scales with jobs. */
  leak: { batches: number[]; imageBytes: number };
  scaleOut: { jobsPerProcess: number; processes: number[]; delayMs: number; imageBytes: number };
  /** The checkpoint write alone: image size and saves per round. */
  checkpointWrite: Array<{ imageBytes: number; saves: number }>;
  profileJobs: number;
  concurrency: number;
  capacity: CapacityPlan;
  storybang: StorybangPlan;
}

/** Issue 9's scenarios; every run stops by itself at `capMs` at the latest. */
export interface CapacityPlan {
  rateLimit: { workers: number; jobs: number; latencyMs: number; capMs: number };
  fairness: { workers: number[]; heavyJobs: number; loneJobs: number; latencyMs: number; capMs: number };
  story: { workers: number; users: number; pages: number; latencyMs: number; capMs: number };
  cost: { jobs: number; users: number; capMs: number };
}

/**
 * "StoryBang at xAI's real speed": the worker started from StoryBang's original .env, a 6-12 s API admitting 5
 * requests/s, StoryBang's wait pages. Every run stops by itself at its `capMs` at the latest.
 */
export interface StorybangPlan {
  /** 1. Users x pages at once, 1 worker, once per latency; 2. the same with `threeWorkers.workers` processes. */
  stories: { users: number; pages: number; latencies: Delay[]; capMs: number };
  threeWorkers: { workers: number; users: number; pages: number; latency: Delay; capMs: number };
  /** 3. A refused and a blank prompt, re-asked at once for `seconds`; Redis commands sampled every `sampleS`, after `idleS` of an idle worker. */
  loops: { seconds: number; sampleS: number; idleS: number; latency: Delay };
  /** 4. A story reloaded after its 2nd picture. */
  reload: { pages: number; latency: Delay; capMs: number };
  /** 5. A heavy user's `heavyJobs`, then a light user's one. */
  burst: { heavyJobs: number; latency: Delay; capMs: number };
}

/** xAI's image API as measured in 2026: p50 7.7 s, p95 11.9 s. */
const REAL_SPEED: Delay = [6000, 12000];
/** BENCH_LOOP_S: how long the refusal and blank-prompt loops run. */
const loopSeconds = (fallback: number): number => {
  const s = Number(process.env.BENCH_LOOP_S);
  return Number.isFinite(s) && s > 0 ? s : fallback;
};

const CONCURRENCY = 20;
const SMALL_IMAGE = 2_000;

export const FULL: Plan = {
  quick: false,
  overhead: { jobs: 600, rounds: 3, imageBytes: 200_000 },
  latency: { jobs: 1200, delayMs: 300, imageBytes: SMALL_IMAGE },
  // An API that takes 500 ms keeps both consumers and the relay below saturation, so the peak is the
  // pipeline's own working set rather than a backlog; the saturated case is measured separately.
  memory: { batches: [1000, 1000], delayMs: 500, imageBytes: 1_000_000, saturatedJobs: 400, stall: { jobs: 400, afterMs: 1000, forMs: 3000 } },
  leak: { batches: [2000, 2000, 2000, 2000], imageBytes: SMALL_IMAGE },
  scaleOut: { jobsPerProcess: 600, processes: [1, 2, 4], delayMs: 300, imageBytes: SMALL_IMAGE },
  checkpointWrite: [
    { imageBytes: 200_000, saves: 1000 },
    { imageBytes: 1_000_000, saves: 300 },
  ],
  profileJobs: 600,
  concurrency: CONCURRENCY,
  capacity: {
    rateLimit: { workers: 3, jobs: 150, latencyMs: 1000, capMs: 120_000 },
    fairness: { workers: [1, 3], heavyJobs: 200, loneJobs: 200, latencyMs: 300, capMs: 60_000 },
    story: { workers: 3, users: 10, pages: 6, latencyMs: 1500, capMs: 90_000 },
    cost: { jobs: 300, users: 10, capMs: 60_000 },
  },
  storybang: {
    stories: { users: 10, pages: 6, latencies: [REAL_SPEED, 1500], capMs: 300_000 },
    threeWorkers: { workers: 3, users: 10, pages: 6, latency: REAL_SPEED, capMs: 300_000 },
    loops: { seconds: loopSeconds(600), sampleS: 60, idleS: 30, latency: REAL_SPEED },
    reload: { pages: 6, latency: REAL_SPEED, capMs: 180_000 },
    burst: { heavyJobs: 200, latency: REAL_SPEED, capMs: 600_000 },
  },
};

export const QUICK: Plan = {
  quick: true,
  overhead: { jobs: 200, rounds: 1, imageBytes: 200_000 },
  latency: { jobs: 300, delayMs: 300, imageBytes: SMALL_IMAGE },
  memory: { batches: [100, 100], delayMs: 500, imageBytes: 1_000_000, saturatedJobs: 100, stall: { jobs: 200, afterMs: 500, forMs: 2000 } },
  leak: { batches: [300, 300, 300, 300], imageBytes: SMALL_IMAGE },
  scaleOut: { jobsPerProcess: 200, processes: [1, 2, 4], delayMs: 300, imageBytes: SMALL_IMAGE },
  checkpointWrite: [
    { imageBytes: 200_000, saves: 300 },
    { imageBytes: 1_000_000, saves: 100 },
  ],
  profileJobs: 200,
  concurrency: CONCURRENCY,
  capacity: {
    rateLimit: { workers: 3, jobs: 40, latencyMs: 1000, capMs: 30_000 },
    fairness: { workers: [1], heavyJobs: 40, loneJobs: 40, latencyMs: 300, capMs: 20_000 },
    story: { workers: 3, users: 3, pages: 6, latencyMs: 1500, capMs: 30_000 },
    cost: { jobs: 60, users: 5, capMs: 30_000 },
  },
  storybang: {
    stories: { users: 4, pages: 6, latencies: [REAL_SPEED, 1500], capMs: 120_000 },
    threeWorkers: { workers: 3, users: 4, pages: 6, latency: REAL_SPEED, capMs: 120_000 },
    loops: { seconds: loopSeconds(60), sampleS: 10, idleS: 10, latency: REAL_SPEED },
    reload: { pages: 6, latency: REAL_SPEED, capMs: 120_000 },
    burst: { heavyJobs: 40, latency: REAL_SPEED, capMs: 180_000 },
  },
};

/**
 * What-if environments for the worker in the overhead setting, each taking one thing away to show what it costs a
 * job: the checkpoint store (patched to no-ops by the benchmark), and through the worker's own settings the
 * progress event and the info-level log lines (the job-end line).
 */
export const WHAT_IF = {
  noCheckpoint: { BENCH_CHECKPOINT: 'none' },
  noProgress: { NOTIFY_PROGRESS: 'false' },
  quietLog: { LOG_LEVEL: 'warn' },
} as const;
export type WhatIf = keyof typeof WHAT_IF;

export function spec(name: string, kind: RunSpec['kind'], rest: Omit<RunSpec, 'name' | 'kind' | 'processes'> & { processes?: number }): RunSpec {
  return { name, kind, processes: 1, ...rest };
}
