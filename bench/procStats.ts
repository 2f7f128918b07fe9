import { execFileSync } from 'node:child_process';
import fs from 'node:fs';

/** Linux process figures read from /proc: what the kernel charges a process, whatever language it runs. */

const CLOCK_TICKS_PER_S = (() => {
  try {
    return Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
  } catch {
    return 100;
  }
})();

/** Resident memory now and its high-water mark since the process started, in bytes. */
export function memoryOf(pid: number): { rss: number; peak: number } {
  const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (field: string): number => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? 0) * 1024;
  return { rss: kb('VmRSS'), peak: kb('VmHWM') };
}

/** User plus system CPU time the process has used, in milliseconds. */
export function cpuMsOf(pid: number): number {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  // The command name may hold spaces and parentheses: count fields from the last ')'.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const ticks = Number(fields[11]) + Number(fields[12]);
  return (ticks * 1000) / CLOCK_TICKS_PER_S;
}

export function ownCpuMs(): number {
  const { user, system } = process.cpuUsage();
  return (user + system) / 1000;
}

export interface MachineInfo {
  cpus: number;
  model: string;
  memoryGb: number;
  node: string;
  os: string;
  redis: string;
  /** The commit measured, and whether src/ had uncommitted changes (others may be editing it). */
  source: string;
}

export function machineInfo(): MachineInfo {
  const read = (file: string): string => {
    try {
      return fs.readFileSync(file, 'utf8');
    } catch {
      return '';
    }
  };
  const cpuinfo = read('/proc/cpuinfo');
  const model = /^model name\s*:\s*(.+)$/m.exec(cpuinfo)?.[1]?.trim() ?? 'unknown';
  const memKb = Number(/^MemTotal:\s+(\d+) kB/m.exec(read('/proc/meminfo'))?.[1] ?? 0);
  const run = (cmd: string, args: string[]): string => {
    try {
      return execFileSync(cmd, args, { encoding: 'utf8' }).trim();
    } catch {
      return 'unknown';
    }
  };
  const osRelease = /^PRETTY_NAME="?([^"\n]+)"?$/m.exec(read('/etc/os-release'))?.[1] ?? 'Linux';
  return {
    cpus: Number(run('nproc', [])) || 0,
    model,
    memoryGb: Math.round((memKb / 1024 / 1024) * 10) / 10,
    node: process.version,
    os: `${osRelease}, kernel ${run('uname', ['-r'])}`,
    redis: run('redis-server', ['--version']).replace(/^Redis server v=(\S+).*$/, '$1'),
    source: sourceState(run),
  };
}

/** CPU time all cores spent busy (anything but idle and iowait) since boot, in ms: with ours subtracted, the rest of the machine's load. */
export function machineBusyMs(): number {
  const line = fs.readFileSync('/proc/stat', 'utf8').split('\n', 1)[0];
  const [user, nice, system, , , irq, softirq, steal] = line.trim().split(/\s+/).slice(1).map(Number);
  return ((user + nice + system + irq + softirq + steal) * 1000) / CLOCK_TICKS_PER_S;
}

function sourceState(run: (cmd: string, args: string[]) => string): string {
  const commit = run('git', ['rev-parse', '--short', 'HEAD']);
  if (commit === 'unknown') return 'not a git checkout';
  const dirty = run('git', ['status', '--porcelain', '--', 'src']);
  return dirty && dirty !== 'unknown' ? `${commit} with uncommitted changes in src/` : commit;
}
