import type { BenchChild } from './benchChild';
import { cpuMsOf, machineBusyMs, ownCpuMs } from './procStats';

/** Where CPU went during a stretch of a run, by part of the system, and how busy each event loop was. */
export interface Usage {
  wallMs: number;
  cpuMs: { consumers: number; relay: number; harness: number; redis: number; otherOnMachine: number };
  /** Share of wall time each event loop ran callbacks (consumers: the mean over processes). */
  loopBusy: { consumers: number; relay: number; harness: number };
}

interface Reading {
  at: number;
  cpu: { consumers: number; relay: number; harness: number; redis: number; machine: number };
  loops: { consumers: number[]; relay: number; harness: number };
}

/** Reads every part's CPU time and event loop activity; `usageSince` turns two readings into a Usage. */
export class Meter {
  constructor(
    private readonly consumers: BenchChild[],
    private readonly relay: BenchChild,
    private readonly redisPid: number,
  ) {}

  async read(): Promise<Reading> {
    const [consumerLoops, relayLoop] = await Promise.all([Promise.all(this.consumers.map((c) => c.loop())), this.relay.loop()]);
    return {
      at: performance.now(),
      cpu: {
        consumers: this.consumers.reduce((sum, c) => sum + cpuMsOf(c.pid), 0),
        relay: cpuMsOf(this.relay.pid),
        harness: ownCpuMs(),
        redis: cpuMsOf(this.redisPid),
        machine: machineBusyMs(),
      },
      loops: {
        consumers: consumerLoops.map((l) => l.active),
        relay: relayLoop.active,
        harness: performance.eventLoopUtilization().active,
      },
    };
  }

  static usage(start: Reading, end: Reading): Usage {
    const wallMs = end.at - start.at;
    const cpu = {
      consumers: end.cpu.consumers - start.cpu.consumers,
      relay: end.cpu.relay - start.cpu.relay,
      harness: end.cpu.harness - start.cpu.harness,
      redis: end.cpu.redis - start.cpu.redis,
    };
    const ours = cpu.consumers + cpu.relay + cpu.harness + cpu.redis;
    const consumerBusy = end.loops.consumers.reduce((sum, active, i) => sum + (active - start.loops.consumers[i]), 0) / end.loops.consumers.length;
    return {
      wallMs,
      cpuMs: { ...cpu, otherOnMachine: Math.max(0, end.cpu.machine - start.cpu.machine - ours) },
      loopBusy: {
        consumers: consumerBusy / wallMs,
        relay: (end.loops.relay - start.loops.relay) / wallMs,
        harness: (end.loops.harness - start.loops.harness) / wallMs,
      },
    };
  }

  static add(a: Usage, b: Usage): Usage {
    const weighted = (x: number, y: number): number => (x * a.wallMs + y * b.wallMs) / (a.wallMs + b.wallMs || 1);
    return {
      wallMs: a.wallMs + b.wallMs,
      cpuMs: {
        consumers: a.cpuMs.consumers + b.cpuMs.consumers,
        relay: a.cpuMs.relay + b.cpuMs.relay,
        harness: a.cpuMs.harness + b.cpuMs.harness,
        redis: a.cpuMs.redis + b.cpuMs.redis,
        otherOnMachine: a.cpuMs.otherOnMachine + b.cpuMs.otherOnMachine,
      },
      loopBusy: {
        consumers: weighted(a.loopBusy.consumers, b.loopBusy.consumers),
        relay: weighted(a.loopBusy.relay, b.loopBusy.relay),
        harness: weighted(a.loopBusy.harness, b.loopBusy.harness),
      },
    };
  }

  static empty(): Usage {
    return {
      wallMs: 0,
      cpuMs: { consumers: 0, relay: 0, harness: 0, redis: 0, otherOnMachine: 0 },
      loopBusy: { consumers: 0, relay: 0, harness: 0 },
    };
  }
}
