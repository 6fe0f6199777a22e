/**
 * The bench's arithmetic, pure (unit-tested in logic.test.ts): ratios against rsync,
 * CPU per GiB / per 1,000 files, medians of runs, and which link speed a side's CPU
 * per GiB can keep up with.
 */
import { median } from './util.js';

/** CPU time in ms, user and kernel. */
export interface Cpu {
  user: number;
  sys: number;
}

export const GIB = 1024 ** 3;

/** rsync time / tdxfer time: above 1 tdxfer is faster. NaN when either is missing. */
export function ratio(rsyncMs: number, tdxferMs: number): number {
  if (!(rsyncMs > 0) || !(tdxferMs > 0)) return NaN;
  return rsyncMs / tdxferMs;
}

export function fmtRatio(r: number): string {
  return Number.isFinite(r) ? r.toFixed(2) : 'n/a';
}

/** CPU scaled to `per` units of work out of `units` done: per GiB (units = bytes, per = GIB) or per 1,000 files. */
export function cpuPer(c: Cpu, units: number, per: number): Cpu {
  const k = per / units;
  return { user: c.user * k, sys: c.sys * k };
}

/** "1.42 s (0.95 + 0.47)": total, user + kernel, seconds. */
export function fmtCpu(c: Cpu | undefined): string {
  if (!c || !Number.isFinite(c.user) || !Number.isFinite(c.sys)) return 'n/a';
  const s = (ms: number) => (ms / 1000).toFixed(2);
  return `${s(c.user + c.sys)} (${s(c.user)}+${s(c.sys)})`;
}

/**
 * The CPU figures of the run whose total is the median (so user and kernel come from one
 * real run and add up); with an even count the lower middle one.
 */
export function medianCpu(list: Cpu[]): Cpu | undefined {
  const ok = list.filter((c) => Number.isFinite(c.user) && Number.isFinite(c.sys));
  if (ok.length === 0) return undefined;
  const sorted = [...ok].sort((a, b) => a.user + a.sys - (b.user + b.sys));
  return sorted[Math.floor((sorted.length - 1) / 2)];
}

/** Median of per-repetition ratios (each rsync run paired with the tdxfer run of the same repetition). */
export function pairedRatio(rsyncMs: number[], tdxferMs: number[]): number {
  const n = Math.min(rsyncMs.length, tdxferMs.length);
  const rs: number[] = [];
  for (let i = 0; i < n; i++) {
    const r = ratio(rsyncMs[i]!, tdxferMs[i]!);
    if (Number.isFinite(r)) rs.push(r);
  }
  return median(rs);
}

/** Payload rates of common links (TCP over Ethernet, ~94 % of the line rate), MB/s. */
export const LINKS = [
  { name: '1 GbE', mbps: 117 },
  { name: '10 GbE', mbps: 1170 },
] as const;

/**
 * The highest rate (MB/s) one side can sustain if its work per GiB runs one after the other
 * on one core: 1 GiB / CPU seconds per GiB. A conservative bound: tdxfer's file writes and
 * reads also run on libuv's thread pool and the kernel's TCP work partly on other cores.
 */
export function cpuBoundMBps(cpuMsPerGiB: number): number {
  if (!(cpuMsPerGiB > 0)) return Infinity;
  return GIB / 1e6 / (cpuMsPerGiB / 1000);
}

/** For each link: does `cpuMsPerGiB` keep up with it (the CPU bound at or above the link's rate)? */
export function linkVerdicts(cpuMsPerGiB: number): Array<{ link: string; secondsPerGiB: number; keepsUp: boolean }> {
  return LINKS.map((l) => ({ link: l.name, secondsPerGiB: GIB / 1e6 / l.mbps, keepsUp: cpuBoundMBps(cpuMsPerGiB) >= l.mbps }));
}
