/**
 * QuickFs: the per-file metadata calls of small files (stat, lstat, realpath, rename, the
 * open, read, fstat and close of a small file) made synchronously on the main thread while they are
 * fast, through libuv's thread pool otherwise (issue #12).
 *
 * Why: a call through the thread pool costs 10–25 µs of CPU (a worker woken with a futex,
 * the result handed back through an eventfd and a turn of the event loop, a promise) where
 * the same call made synchronously costs 2–4 µs on a local disk. A small file costs the
 * sender about ten such calls; made synchronously they took ~30 % of its CPU per file
 * (2000 × 4 KiB, this 2-core machine).
 *
 * The risk is a call that blocks: a network share that hangs, a disk that seeks. So:
 * - Only below folders registered with addRoot(), and only once their volume is known not
 *   to be a network file system (Linux: the statfs type; Windows: UNC paths never; a
 *   folder watched by polling never).
 * - Every synchronous call is timed. When half of a root's last 16 calls took longer than
 *   `slowMs` (1 ms), or one call took `stallMs` (100 ms), every call below that root goes
 *   through the thread pool for `coolMs` (30 s), then the quick way is tried again. A
 *   volume that is slow (every call a few ms) switches after 8 calls; slow calls here and
 *   there do not (a call's time includes a garbage collection, a compilation, or the
 *   process being preempted on a busy machine: a 5 ms limit per call, and then a moving
 *   average, both switched the bench's agents on a local disk).
 * - Errors are the same as the asynchronous calls' (Node throws the same error objects),
 *   rejected from the returned promise, never thrown.
 * fsync is never made here: it waits for the disk by design.
 */
import fs from 'node:fs';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import type { Logger } from './log.js';

/** statfs f_type of network and user-space file systems (Linux magic numbers): never synchronous there. */
const REMOTE_FS_TYPES = new Set([
  0x6969, // NFS
  0x517b, // SMB
  0xff534d42, // CIFS
  0xfe534d42, // SMB2
  0x65735546, // FUSE (sshfs, rclone, ...)
  0x00c36400, // Ceph
  0x01021997, // 9P (WSL2's /mnt/c, VM shares)
  0x5346414f, // AFS
  0x6b414653, // kAFS
  0x73757245, // Coda
  0x564c, // NCP
  0x0bd00bd0, // Lustre
  0x47504653, // GPFS
  0x01161970, // GFS2
  0x7461636f, // OCFS2
  0x13661366, // OrangeFS
]);

export interface QuickFsOptions {
  /** A call slower than this counts as slow (half of the last 16 slow: thread pool). Default 1 ms. */
  slowMs?: number;
  /** One call this slow sends its root's calls through the thread pool at once. Default 100 ms. */
  stallMs?: number;
  /** How long a slow root stays on the thread pool. Default 30 s. */
  coolMs?: number;
  log?: Logger;
  /** Test seam: statfs type of a folder (null: unknown). */
  fsType?: (dir: string) => Promise<number | null>;
  /** Test seam: the clock calls are timed with, ms (default performance.now). */
  now?: () => number;
}

interface Root {
  dir: string;
  /** Its volume is known local: synchronous calls allowed. */
  local: boolean;
  /** performance.now() until which its calls go through the thread pool (after slow ones). */
  asyncUntil: number;
  /** Its last 16 synchronous calls, one bit each (1: slow), the newest lowest. */
  recent: number;
}

/** How many of the last 16 calls must be slow to switch a root to the thread pool. */
const SLOW_OF_16 = 8;

export class QuickFs {
  readonly #roots: Root[] = [];
  readonly #slowMs: number;
  readonly #stallMs: number;
  readonly #coolMs: number;
  readonly #log: Logger | undefined;
  readonly #fsType: (dir: string) => Promise<number | null>;
  readonly #now: () => number;
  /** Calls made synchronously / through the thread pool (tests, the bench). */
  readonly counts = { sync: 0, async: 0, slow: 0 };

  constructor(opts: QuickFsOptions = {}) {
    this.#slowMs = opts.slowMs ?? 1;
    this.#stallMs = opts.stallMs ?? 100;
    this.#coolMs = opts.coolMs ?? 30_000;
    this.#log = opts.log;
    this.#fsType = opts.fsType ?? statfsType;
    this.#now = opts.now ?? (() => performance.now());
  }

  /**
   * Calls on paths below `dir` may be made synchronously, once its volume is known local
   * (never with `never`, e.g. an outbox watched by polling). Until this resolves they are not.
   */
  async addRoot(dir: string, opts: { never?: boolean } = {}): Promise<void> {
    const abs = path.resolve(dir);
    this.removeRoot(abs);
    const root: Root = { dir: abs, local: false, asyncUntil: 0, recent: 0 };
    this.#roots.push(root);
    // Longest first: a root inside another one decides for its own paths.
    this.#roots.sort((a, b) => b.dir.length - a.dir.length);
    if (opts.never === true || isUncPath(abs)) return;
    const type = await this.#fsType(abs).catch(() => null);
    root.local = type !== null && !REMOTE_FS_TYPES.has(type);
  }

  removeRoot(dir: string): void {
    const abs = path.resolve(dir);
    const i = this.#roots.findIndex((r) => r.dir === abs);
    if (i >= 0) this.#roots.splice(i, 1);
  }

  /** The root whose calls `abs` follows, when they may be synchronous now. */
  #quickRoot(abs: string): Root | null {
    for (const r of this.#roots) {
      // The root itself too: its lookup walks the same components as a path below it.
      if (abs.startsWith(r.dir) && (abs.length === r.dir.length || abs[r.dir.length] === path.sep)) {
        return r.local && this.#now() >= r.asyncUntil ? r : null;
      }
    }
    return null;
  }

  /**
   * `quick()` now, timed, when `abs` lies below a local root that was not slow lately;
   * else `slow()` (the thread pool). Either way the result or error comes as a promise.
   */
  call<T>(abs: string, quick: () => T, slow: () => Promise<T>): Promise<T> {
    const root = this.#quickRoot(abs);
    if (root === null) {
      this.counts.async++;
      return slow();
    }
    this.counts.sync++;
    const t0 = this.#now();
    try {
      return Promise.resolve(quick());
    } catch (err) {
      return Promise.reject(err as Error);
    } finally {
      const now = this.#now();
      const ms = now - t0;
      root.recent = ((root.recent << 1) | (ms > this.#slowMs ? 1 : 0)) & 0xffff;
      if (ms > this.#slowMs && (ms >= this.#stallMs || bitCount(root.recent) >= SLOW_OF_16)) this.#slow(root, ms, now);
    }
  }

  #slow(root: Root, ms: number, now: number): void {
    this.counts.slow++;
    this.#log?.debug(`file calls below ${root.dir} are slow (${bitCount(root.recent)} of the last 16, the last one ${ms.toFixed(1)} ms): made through the thread pool for ${Math.round(this.#coolMs / 1000)} s`);
    root.recent = 0;
    root.asyncUntil = now + this.#coolMs;
  }

  stat(abs: string): Promise<fs.Stats> {
    return this.call(abs, () => fs.statSync(abs), () => fs.promises.stat(abs));
  }

  /** stat with 64-bit dev/ino (folder identity checks: Windows file ids do not fit a double). */
  statBig(abs: string): Promise<fs.BigIntStats> {
    return this.call(abs, () => fs.statSync(abs, { bigint: true }), () => fs.promises.stat(abs, { bigint: true }));
  }

  /** The native realpath (the same call as fs.promises.realpath). */
  realpath(abs: string): Promise<string> {
    return this.call(abs, () => fs.realpathSync.native(abs), () => fs.promises.realpath(abs));
  }

  lstat(abs: string): Promise<fs.Stats> {
    return this.call(abs, () => fs.lstatSync(abs), () => fs.promises.lstat(abs));
  }

  rename(from: string, to: string): Promise<void> {
    return this.call(from, () => fs.renameSync(from, to), () => fs.promises.rename(from, to));
  }
}

/**
 * A QuickFs with no roots: every call goes through the thread pool, as the same fs.promises
 * call would. The default where a caller was given no QuickFs; never add roots to it.
 */
export const THREAD_POOL_FS = new QuickFs();

function bitCount(n: number): number {
  let c = 0;
  for (let v = n; v !== 0; v &= v - 1) c++;
  return c;
}

/** Windows UNC paths (\\server\share\…, \\?\UNC\…): always a network share. */
function isUncPath(abs: string): boolean {
  return process.platform === 'win32' && abs.startsWith('\\\\') && !/^\\\\[?.]\\[A-Za-z]:/.test(abs);
}

/**
 * The statfs type of `dir`'s volume where it names the file system (Linux); elsewhere 0
 * (Windows reports no type, macOS numbers are not stable): local unless timing says otherwise.
 */
async function statfsType(dir: string): Promise<number | null> {
  const st = await fs.promises.statfs(dir);
  return process.platform === 'linux' ? Number(st.type) : 0;
}
