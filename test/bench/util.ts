/**
 * Small helpers for the benchmark: temp folders, random files, child processes,
 * memory sampling from /proc, statistics. No dependency on the agent's code: the
 * bench drives the built CLI from the outside like a user would.
 */
import fs from 'node:fs/promises';
import { createWriteStream } from 'node:fs';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import path from 'node:path';

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** A new empty folder under `base`, named `<prefix><random>`. */
export function freshDir(base: string, prefix: string): Promise<string> {
  return fs.mkdtemp(path.join(base, prefix));
}

/** `cp -r src dst` (dst must not exist); returns its milliseconds, the disk's baseline at that moment. */
export function copyTree(src: string, dst: string): number {
  const t0 = performance.now();
  const cp = spawnSync('cp', ['-r', src, dst]);
  const ms = performance.now() - t0;
  if (cp.status !== 0) throw new Error(`bench: cp -r ${src} ${dst} failed: ${cp.stderr.toString()}`);
  return ms;
}

export function median(xs: number[]): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

/** "1G", "256M", "4K", "1048576" → bytes (binary units). */
export function parseSize(text: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)i?b?\s*$/i.exec(text);
  if (!m) throw new Error(`cannot read size ${JSON.stringify(text)}: use a number with an optional K, M or G suffix, e.g. 256M`);
  const mult = { '': 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3, t: 1024 ** 4 }[m[2]!.toLowerCase() as '' | 'k' | 'm' | 'g' | 't'];
  return Math.round(Number(m[1]) * mult);
}

export function fmtBytes(n: number): string {
  if (n >= 1024 ** 3) return `${+(n / 1024 ** 3).toFixed(2)} GiB`;
  if (n >= 1024 ** 2) return `${+(n / 1024 ** 2).toFixed(1)} MiB`;
  if (n >= 1024) return `${+(n / 1024).toFixed(1)} KiB`;
  return `${n} B`;
}

export async function writeRandomFile(file: string, size: number): Promise<void> {
  const fh = await fs.open(file, 'w');
  try {
    for (let left = size; left > 0; ) {
      const n = Math.min(left, 8 * 1024 * 1024);
      await fh.write(randomBytes(n));
      left -= n;
    }
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/** Every regular file under root (recursive), as a count. */
export async function countFiles(root: string): Promise<number> {
  let n = 0;
  let entries;
  try {
    entries = await fs.readdir(root, { withFileTypes: true });
  } catch {
    return 0;
  }
  for (const e of entries) {
    if (e.isDirectory()) n += await countFiles(path.join(root, e.name));
    else if (e.isFile()) n++;
  }
  return n;
}

/** Polls `cond` every `everyMs` until true; returns the time (performance.now) it first held. */
export async function pollUntil(cond: () => boolean | Promise<boolean>, timeoutMs: number, what: string, everyMs = 5): Promise<number> {
  const end = performance.now() + timeoutMs;
  for (;;) {
    if (await cond()) return performance.now();
    if (performance.now() > end) throw new Error(`bench: timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(everyMs);
  }
}

/** Whether an agent at log level `level` (unset: its default, info) writes its per-file info lines (`sent …`, `received …`). */
export function infoLogged(level: string | undefined): boolean {
  return level === undefined || level === '' || ['info', 'verbose', 'debug', 'silly'].includes(level);
}

/** CPU (user + system) this process used since `start` (a process.cpuUsage()), ms. */
export function cpuSinceMs(start: NodeJS.CpuUsage): number {
  const u = process.cpuUsage(start);
  return (u.user + u.system) / 1000;
}

/**
 * PURE: counts the occurrences of `needle` in text that arrives in chunks, matches split
 * between two chunks included (non-overlapping, left to right, as `indexOf` finds them).
 */
export class TextCounter {
  count = 0;
  #carry = '';

  constructor(readonly needle: string) {
    if (needle === '') throw new RangeError('TextCounter: the needle must not be empty');
  }

  /** Counts the matches `text` completes; returns the total so far. */
  feed(text: string): number {
    const s = this.#carry + text;
    const n = this.needle.length;
    let from = 0;
    for (let i = s.indexOf(this.needle); i !== -1; i = s.indexOf(this.needle, from)) {
      this.count++;
      from = i + n;
    }
    // Only the tail that could begin a match ending in the next chunk, never a counted one.
    this.#carry = s.slice(Math.max(from, s.length - (n - 1)));
    return this.count;
  }
}

/** Occurrences of a text in a process's standard output, counted as it arrives (Proc.tally). */
export interface Tally {
  readonly count: number;
  /**
   * Resolves with the time (performance.now) the count first reached `n`: on the output
   * event itself, without polling. Rejects after `timeoutMs`, or when the process exits first.
   */
  reached: (n: number, timeoutMs: number) => Promise<number>;
  /** Stop counting. */
  close: () => void;
}

export interface Proc {
  child: ChildProcess;
  pid: number;
  output: () => string;
  /** Resolves once `re` matched the process output (stdout + stderr). */
  waitFor: (re: RegExp, timeoutMs?: number) => Promise<RegExpExecArray>;
  /** Counts `needle` in what the process prints on stdout from now on. */
  tally: (needle: string) => Tally;
  stop: (signal?: NodeJS.Signals) => Promise<number | null>;
}

/** `logFile`: also append everything the process prints to this file. */
export function spawnProc(cmd: string, args: string[], env: NodeJS.ProcessEnv = {}, logFile?: string): Proc {
  const child = spawn(cmd, args, { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  if (child.pid === undefined) throw new Error(`bench: could not start ${cmd} ${args.join(' ')}`);
  const sink = logFile ? createWriteStream(logFile, { flags: 'a' }) : null;
  let out = '';
  // Keep only the tail: an agent logs a line per file.
  const add = (d: Buffer): string => {
    sink?.write(d);
    const text = d.toString();
    out += text;
    if (out.length > 200_000) out = out.slice(-100_000);
    return text;
  };
  const tallies = new Set<(text: string) => void>();
  child.stdout!.on('data', (d: Buffer) => {
    const text = add(d);
    for (const t of tallies) t(text);
  });
  child.stderr!.on('data', add);
  const exited = new Promise<number | null>((resolve) =>
    child.once('close', (code) => {
      if (sink) sink.end(() => resolve(code));
      else resolve(code);
    }),
  );
  return {
    child,
    pid: child.pid,
    output: () => out,
    waitFor: async (re, timeoutMs = 20_000) => {
      let m: RegExpExecArray | null = null;
      await pollUntil(() => (m = re.exec(out)) !== null || child.exitCode !== null, timeoutMs, `${re} in the output of ${cmd} ${args.join(' ')}:\n${out.slice(-3000)}`, 10);
      if (!m) throw new Error(`bench: ${cmd} ${args.join(' ')} exited (code ${child.exitCode}) before printing ${re}:\n${out.slice(-3000)}`);
      return m;
    },
    tally: (needle) => {
      const counter = new TextCounter(needle);
      let waiter: { n: number; resolve: (t: number) => void } | null = null;
      const onText = (text: string): void => {
        if (counter.feed(text) >= (waiter?.n ?? Infinity)) waiter!.resolve(performance.now());
      };
      tallies.add(onText);
      return {
        get count() {
          return counter.count;
        },
        reached: (n, timeoutMs) =>
          counter.count >= n
            ? Promise.resolve(performance.now())
            : new Promise<number>((resolve, reject) => {
                const fail = (why: string) => {
                  settle();
                  reject(new Error(`bench: ${why} while waiting for ${n} × ${JSON.stringify(needle)} in the output of ${cmd} ${args.join(' ')} (${counter.count} seen):\n${out.slice(-3000)}`));
                };
                const timer = setTimeout(() => fail(`timed out after ${timeoutMs} ms`), timeoutMs);
                const onExit = () => fail(`the process exited (code ${child.exitCode})`);
                const settle = () => {
                  clearTimeout(timer);
                  child.off('exit', onExit);
                  waiter = null;
                };
                if (child.exitCode !== null || child.signalCode !== null) return onExit();
                child.once('exit', onExit);
                waiter = {
                  n,
                  resolve: (t) => {
                    settle();
                    resolve(t);
                  },
                };
              }),
        close: () => {
          tallies.delete(onText);
        },
      };
    },
    stop: async (signal = 'SIGTERM') => {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      return exited;
    },
  };
}

/** kB fields of /proc/<pid>/status, in bytes (null when the process is gone). */
export async function procMemory(pid: number): Promise<{ rss: number; hwm: number } | null> {
  try {
    const text = await fs.readFile(`/proc/${pid}/status`, 'utf8');
    const kb = (name: string) => Number(new RegExp(`^${name}:\\s+(\\d+)\\s+kB`, 'm').exec(text)?.[1] ?? NaN) * 1024;
    return { rss: kb('VmRSS'), hwm: kb('VmHWM') };
  } catch {
    return null;
  }
}

/** CPU time (user + system) a process has used so far, in ms (null when it is gone). */
/** User and system CPU time of a process so far, ms (Linux /proc), or null when gone. */
export async function procCpuSplitMs(pid: number): Promise<{ user: number; sys: number } | null> {
  try {
    const text = await fs.readFile(`/proc/${pid}/stat`, 'utf8');
    const f = text.slice(text.lastIndexOf(')') + 2).split(' ');
    return { user: (Number(f[11]) * 1000) / 100, sys: (Number(f[12]) * 1000) / 100 };
  } catch {
    return null;
  }
}

export async function procCpuMs(pid: number): Promise<number | null> {
  try {
    const text = await fs.readFile(`/proc/${pid}/stat`, 'utf8');
    // Fields after the command name (which may contain spaces) start after the last ')'.
    const f = text.slice(text.lastIndexOf(')') + 2).split(' ');
    return ((Number(f[11]) + Number(f[12])) * 1000) / 100; // utime, stime in clock ticks (USER_HZ = 100 on Linux)
  } catch {
    return null;
  }
}

/**
 * Samples VmRSS of each pid every `everyMs`; `stop()` returns per pid the highest of
 * the sampled RSS and the kernel's own high-water mark (VmHWM), read last.
 */
export function sampleMemory(pids: number[], everyMs = 50): { stop: () => Promise<number[]> } {
  const peaks = pids.map(() => 0);
  let running = true;
  const loop = (async () => {
    while (running) {
      for (const [i, pid] of pids.entries()) {
        const m = await procMemory(pid);
        if (m) peaks[i] = Math.max(peaks[i]!, m.rss);
      }
      await sleep(everyMs);
    }
  })();
  return {
    stop: async () => {
      running = false;
      await loop;
      for (const [i, pid] of pids.entries()) {
        const m = await procMemory(pid);
        if (m) peaks[i] = Math.max(peaks[i]!, m.hwm, m.rss);
      }
      return peaks;
    },
  };
}

/** Renders rows as a plain-text table with aligned columns. */
export function table(head: string[], rows: string[][]): string {
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) => cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ');
  return [line(head), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(line)].join('\n');
}
