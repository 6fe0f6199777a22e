/**
 * Small file-system helpers shared by the inbox, outbox and config: durability (fsync), renames that survive
 * Windows' transient locks, free space, and confinement checks on real paths.
 */
import fs from 'node:fs/promises';
import { realpath as jsRealpath, write as fsWrite, writeSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { randomBytes } from 'node:crypto';
import type { Logger } from './log.js';
import { THREAD_POOL_FS, type QuickFs } from './quickfs.js';

export function errCode(err: unknown): string | undefined {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : undefined;
}

/**
 * fsync a folder so a rename inside it survives a power cut. Windows cannot open a
 * folder for fsync (EISDIR/EPERM) and some file systems refuse it (EINVAL, ENOTSUP);
 * there the rename is as durable as the platform allows, so those are ignored.
 */
export async function fsyncDir(dir: string): Promise<void> {
  let fh: fs.FileHandle | undefined;
  try {
    fh = await fs.open(dir, 'r');
    await fh.sync();
  } catch (err) {
    const code = errCode(err);
    if (code !== 'EISDIR' && code !== 'EPERM' && code !== 'EINVAL' && code !== 'ENOTSUP' && code !== 'EACCES' && code !== 'EBADF') throw err;
  } finally {
    await fh?.close().catch(() => undefined); // read-only handle: a close error loses nothing
  }
}

export interface RetryOptions {
  tries?: number;
  firstDelayMs?: number;
  maxDelayMs?: number;
}

const TRANSIENT = new Set(['EPERM', 'EACCES', 'EBUSY']);

/**
 * Runs `fn`, retrying with doubling delays while it fails with EPERM/EACCES/EBUSY: on
 * Windows an antivirus scanner, the search indexer or TouchDesigner reading a file
 * briefly holds it open and renames/unlinks fail with one of these (see
 * https://github.com/isaacs/node-graceful-fs, "EPERM on Windows" in its polyfills).
 * `onRetry` sees each retry; the last failure is thrown.
 */
export async function retryTransient<T>(
  fn: () => Promise<T>,
  opts: RetryOptions & { onRetry?: (code: string, attempt: number, delayMs: number) => void; onGiveUp?: (code: string, tries: number) => void } = {},
): Promise<T> {
  const tries = opts.tries ?? 8;
  let delay = opts.firstDelayMs ?? 50;
  const maxDelay = opts.maxDelayMs ?? 1000;
  for (let attempt = 1; ; attempt++) {
    try {
      return await fn();
    } catch (err) {
      const code = errCode(err);
      if (!code || !TRANSIENT.has(code)) throw err;
      if (attempt >= tries) {
        opts.onGiveUp?.(code, tries);
        throw err;
      }
      opts.onRetry?.(code, attempt, delay);
      await new Promise((r) => setTimeout(r, delay));
      delay = Math.min(delay * 2, maxDelay);
    }
  }
}

/** rename() with retryTransient; each retry is logged at debug, giving up at error. */
export function renameWithRetry(from: string, to: string, log: Logger, opts: RetryOptions & { rename?: (from: string, to: string) => Promise<void> } = {}): Promise<void> {
  const rename = opts.rename ?? fs.rename;
  return retryTransient(() => rename(from, to), {
    ...opts,
    onRetry: (code, attempt, delayMs) => log.debug('rename failed, retrying (target probably held open by another program)', { from, to, code, attempt, delayMs }),
    onGiveUp: (code, tries) => log.error('giving up renaming: the target stays locked', { from, to, code, tries }),
  });
}

/** Free bytes available to this (unprivileged) process on the volume holding `p`, or null when unknown. */
export async function freeBytes(p: string): Promise<number | null> {
  try {
    const s = await fs.statfs(p);
    return Number(s.bavail) * Number(s.bsize);
  } catch {
    return null;
  }
}

const realpathJs = promisify(jsRealpath);

/**
 * realpath() that also works past MAX_PATH on Windows: the native one
 * (GetFinalPathNameByHandleW) fails with UNKNOWN for folders over ~260 characters under
 * wine 8 (measured; the Windows lane), so those fall back to Node's JavaScript realpath,
 * which resolves links one lstat/readlink at a time.
 */
export async function realpathLong(p: string, quick: QuickFs = THREAD_POOL_FS): Promise<string> {
  try {
    return await quick.realpath(p);
  } catch (err) {
    const code = errCode(err);
    if (process.platform !== 'win32' || (code !== 'UNKNOWN' && code !== 'ENAMETOOLONG')) throw err;
    return realpathJs(p);
  }
}

/** True when `child` is `root` or inside it (both absolute, already real paths). */
export function isInside(root: string, child: string): boolean {
  const rel = path.relative(root, child);
  return rel === '' || (rel !== '..' && !rel.startsWith(`..${path.sep}`) && !path.isAbsolute(rel));
}

/** Removes a file if it is there, retrying Windows' transient locks; never throws. */
export async function unlinkQuiet(p: string): Promise<void> {
  // Best effort by contract ("never throws"): callers use it to tidy temp files after another error.
  await retryTransient(() => fs.rm(p, { force: true }), { tries: 5 }).catch(() => undefined);
}

/**
 * Writes `data` to a new temp file next to `file` (exclusive create, `mode`, fsynced, closed) and returns
 * its path; on failure the temp file is removed. The first half of writeFileAtomic, for callers that
 * put the temp file in place themselves (config/key.ts hard-links it so two writers cannot both win).
 */
export async function writeTempSynced(file: string, data: string | Uint8Array, mode = 0o644): Promise<string> {
  const tmp = `${file}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
  const fh = await fs.open(tmp, 'wx', mode);
  try {
    await fh.writeFile(data);
    await fh.sync();
  } catch (err) {
    await fh.close().catch(() => undefined); // the write error is the one worth reporting
    await unlinkQuiet(tmp);
    throw err;
  }
  await fh.close();
  return tmp;
}

/**
 * Replaces `file` atomically and durably: temp file in the same folder, fsync, rename (retrying
 * Windows' transient locks), fsync of the folder. Readers see the old or the new content, never a
 * mix, also after a power cut. The one writer for the agent's own small files (journals' compaction,
 * agent id, key overwrite).
 */
export async function writeFileAtomic(file: string, data: string | Uint8Array, opts: { mode?: number } = {}): Promise<void> {
  const tmp = await writeTempSynced(file, data, opts.mode);
  try {
    await renameRetrying(tmp, file);
  } catch (err) {
    await unlinkQuiet(tmp);
    throw err;
  }
  await fsyncDir(path.dirname(file));
}

/** rename() retrying Windows' transient locks (retryTransient), for the agent's own files. */
export function renameRetrying(from: string, to: string): Promise<void> {
  return retryTransient(() => fs.rename(from, to));
}

export function formatBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
  let v = n;
  let i = 0;
  while (Math.abs(v) >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${i === 0 ? v : v.toFixed(1)} ${units[i]}`;
}

/** A FIFO mutex: `run(fn)` runs `fn` after every earlier `run` has settled. */
export class Mutex {
  #tail: Promise<unknown> = Promise.resolve();
  run<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.#tail.then(fn, fn);
    this.#tail = next.catch(() => undefined); // the caller gets `next` with its error; the queue only orders
    return next;
  }
}

/**
 * `mkdir -p` that names the real cause: a recursive mkdir under a read-only mount or a folder the user may
 * not write reports ENOENT (Node tries the parents bottom-up and returns the first error it met). On failure
 * this walks up to the deepest existing ancestor and creates the next level by itself, so the error thrown
 * carries that level's errno (EROFS, EACCES, ENOTDIR…). Returns the first folder created, like fs.mkdir.
 */
export async function mkdirp(dir: string): Promise<string | undefined> {
  try {
    return await fs.mkdir(dir, { recursive: true });
  } catch (err) {
    let child = path.resolve(dir);
    for (let parent = path.dirname(child); parent !== child; child = parent, parent = path.dirname(parent)) {
      const st = await fs.stat(parent).catch(() => null);
      if (st === null) continue;
      if (!st.isDirectory()) throw Object.assign(new Error(`${parent} is not a folder`), { code: 'ENOTDIR', path: parent });
      try {
        await fs.mkdir(child);
      } catch (inner) {
        if (errCode(inner) !== undefined && errCode(inner) !== 'EEXIST') throw inner;
      }
      break;
    }
    throw err;
  }
}

/**
 * The fix for a folder the agent cannot use, as a sentence: `what` names it (`inbox "renders" (/srv/in)`),
 * `field` is the config field to change. Pure: the errno alone decides the wording.
 */
export function folderProblem(what: string, err: unknown, field: string): string {
  const code = errCode(err);
  const at = (err as { path?: unknown } | null)?.path;
  const where = typeof at === 'string' ? ` (at ${at})` : '';
  switch (code) {
    case 'EROFS':
      return `The ${what} is on a read-only file system${where}; remount it read-write or change ${field} to a folder on a writable disk`;
    case 'EACCES':
    case 'EPERM':
      return `The ${what} is not writable by this user${where}; give the agent's user write access to it or change ${field}`;
    case 'ENOTDIR':
      return `The ${what} cannot be created: a file stands where a folder is needed${where}; move that file away or change ${field}`;
    case 'ENOSPC':
      return `The ${what} cannot be created: the disk is full${where}; free space or change ${field}`;
    default:
      return `The ${what} cannot be created or written${where}: ${(err as Error | null)?.message ?? String(err)}; check the path and its permissions or change ${field}`;
  }
}

/**
 * Writes `len` bytes of `buf` to `fd` at `position` (null: the file's current position, or its
 * end for a file opened to append), continuing after a short write; `done` gets the error, or a
 * "short write" error when a write wrote nothing.
 */
export function writeAll(fd: number, buf: Buffer, len: number, position: number | null, done: (err: Error | null) => void): void {
  let written = 0;
  const step = (): void => {
    fsWrite(fd, buf, written, len - written, position === null ? null : position + written, (err, n) => {
      if (err) return done(err);
      written += n;
      // Short writes are rare but legal: continue after what was written.
      if (written < len && n > 0) step();
      else done(written < len ? new Error(`short write: ${written} of ${len} bytes`) : null);
    });
  };
  step();
}

/** writeAll, synchronously: throws the error. */
export function writeAllSync(fd: number, buf: Buffer, len: number, position: number | null): void {
  let written = 0;
  while (written < len) {
    const n = writeSync(fd, buf, written, len - written, position === null ? null : position + written);
    if (n <= 0) throw new Error(`short write: ${written} of ${len} bytes`);
    written += n;
  }
}
