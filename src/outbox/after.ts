/**
 * After-actions: what happens to an outbox file once every destination confirmed it.
 *
 * Invariants:
 * - A file that changed since it was sent (different size or mtime) is never archived
 *   or deleted: it is a new version to send. The result says so.
 * - Archive keeps the subpath (`<outbox>/sent/<rel>`); an older archived file of the
 *   same name is replaced (the newest render wins).
 * - Folders emptied by archive/delete are removed, up to but never including the
 *   outbox folder itself.
 * - Windows: rename/unlink fail transiently with EPERM/EACCES/EBUSY while an antivirus,
 *   indexer or TouchDesigner itself holds the file; they are retried with backoff (the
 *   same cause graceful-fs retries for). EXDEV (sent/ on another volume, e.g. a mount or
 *   junction) falls back to copy + unlink.
 */
import { copyFile, lstat, mkdir, rename, rmdir, stat, unlink, utimes } from 'node:fs/promises';
import path from 'node:path';
import { TdxError, describeError } from '../errors.js';
import { ARCHIVE_DIR } from '../filters.js';
import type { Logger } from '../log.js';
import type { SentJournal } from './journal.js';
import type { ReadyFile } from './watcher.js';
import { errCode, retryTransient } from '../fsutil.js';
import { THREAD_POOL_FS, type QuickFs } from '../quickfs.js';
import { below, resolvedFolder } from '../paths.js';

export type AfterResult =
  | { action: 'archived'; to: string }
  | { action: 'deleted' }
  | { action: 'kept' }
  /** Changed since it was sent: left in place, the watcher emits the new version. */
  | { action: 'changed'; size: number; mtimeMs: number }
  /** Already gone (removed by the user): nothing to do. */
  | { action: 'missing' };

export interface AfterOptions {
  /** Retries of a transiently failing rename/unlink (Windows locks); 1 = no retry. */
  tries?: number;
  /**
   * Shared by the after-actions of one batch: archive folders already made are not made
   * again, and emptied folders are removed once, by finishAfterBatch(), instead of after
   * every file (a dropped folder of 2000 files would try to remove its folder 2000 times).
   */
  batch?: AfterBatch;
  /** Quick (synchronous) stats and renames while the outbox's volume is local and fast (quickfs.ts). */
  quick?: QuickFs;
}

export interface AfterBatch {
  made: Set<string>;
  emptied: Set<string>;
}

export function newAfterBatch(): AfterBatch {
  return { made: new Set(), emptied: new Set() };
}

/** Removes the folders a batch emptied (deepest first), up to but never including each outbox root. */
export async function finishAfterBatch(batch: AfterBatch, root: string): Promise<void> {
  const dirs = [...batch.emptied].sort((a, b) => b.length - a.length);
  batch.emptied.clear();
  for (const d of dirs) await removeEmptyParents(root, d);
}

/** Destination of `rel` in the archive folder of `outboxPath`. */
export function archivePath(outboxPath: string, rel: string): string {
  return below(resolvedFolder(outboxPath), `${ARCHIVE_DIR}/${rel}`);
}

async function currentVersion(abs: string, quick: QuickFs = THREAD_POOL_FS): Promise<{ size: number; mtimeMs: number } | null> {
  try {
    const st = await quick.stat(abs);
    return st.isFile() ? { size: st.size, mtimeMs: st.mtimeMs } : null;
  } catch (err) {
    if (errCode(err) === 'ENOENT' || errCode(err) === 'ENOTDIR') return null;
    throw err;
  }
}

/** Moves a file; returns 'copied' when it had to copy across volumes (EXDEV), where the mtime is kept only approximately. */
async function move(from: string, to: string, delays: { tries: number }, made?: Set<string>, quick: QuickFs = THREAD_POOL_FS): Promise<'renamed' | 'copied'> {
  const dir = path.dirname(to);
  if (!made?.has(dir)) {
    await mkdir(dir, { recursive: true });
    made?.add(dir);
  }
  try {
    await retryTransient(() => quick.rename(from, to), delays);
    return 'renamed';
  } catch (err) {
    // The folder made earlier in the batch was removed meanwhile (by hand): make it again.
    if (errCode(err) === 'ENOENT' && made?.has(dir)) {
      made.delete(dir);
      return move(from, to, delays, made, quick);
    }
    if (errCode(err) !== 'EXDEV') throw err;
    const tmp = `${to}.tdxfer-${process.pid}.tmp`;
    const st = await stat(from);
    await copyFile(from, tmp);
    await utimes(tmp, st.atime, st.mtime).catch(() => undefined); // keeping the times is a courtesy; the copy is whole
    await retryTransient(() => rename(tmp, to), delays);
    await retryTransient(() => unlink(from), delays);
    return 'copied';
  }
}

/** The first folder between `root` (exclusive) and `abs`'s folder that is a symlink, or null. */
async function linkedFolder(root: string, abs: string): Promise<string | null> {
  const r = path.relative(root, path.dirname(abs));
  if (r === '' || r.startsWith('..') || path.isAbsolute(r)) return null;
  let cur = root;
  for (const part of r.split(path.sep)) {
    cur = path.join(cur, part);
    try {
      if ((await lstat(cur)).isSymbolicLink()) return cur;
    } catch {
      return null; // gone: the after-action finds nothing either
    }
  }
  return null;
}

/** Removes now-empty folders from `dir` upwards, stopping below `root`. */
export async function removeEmptyParents(root: string, dir: string): Promise<void> {
  const top = path.resolve(root);
  let cur = path.resolve(dir);
  for (;;) {
    const r = path.relative(top, cur);
    if (r === '' || r.startsWith('..') || path.isAbsolute(r)) return;
    try {
      await rmdir(cur);
    } catch {
      return; // not empty, in use, or already gone: stop climbing
    }
    cur = path.dirname(cur);
  }
}

/**
 * Applies `file.outbox.after` to a file every destination confirmed. `file.size` and
 * `file.mtimeMs` are the version that was sent.
 */
export async function applyAfter(file: ReadyFile, journal: SentJournal, log: Logger, opts: AfterOptions = {}): Promise<AfterResult> {
  const delays = { tries: opts.tries ?? 8 };
  const { outbox, rel, abs } = file;
  const root = resolvedFolder(outbox.path);

  if (outbox.after === 'keep') {
    await journal.record(outbox.path, rel, file.size, file.mtimeMs);
    return { action: 'kept' };
  }

  // outboxes[].followSymlinks: after-actions act on links, never on what they point to
  // (issue #10). A file link is deleted or archived as the link itself (unlink and rename
  // do not follow the last component); a file reached through a linked folder is left
  // where it is, as with after: "keep", so nothing in the link's target is moved or deleted.
  if (outbox.followSymlinks === true) {
    const link = await linkedFolder(root, abs);
    if (link !== null) {
      log.info('sent through a linked folder; after-actions act on links only, so the file in the target is left untouched', { rel, link });
      await journal.record(outbox.path, rel, file.size, file.mtimeMs);
      return { action: 'kept' };
    }
  }

  const now = await currentVersion(abs, opts.quick);
  if (!now) {
    await journal.forget(outbox.path, rel);
    return { action: 'missing' };
  }
  if (now.size !== file.size || now.mtimeMs !== file.mtimeMs) {
    log.info('file changed since it was sent; leaving it for the next send', { rel, sentSize: file.size, size: now.size });
    return { action: 'changed', ...now };
  }

  if (outbox.after === 'delete') {
    try {
      await retryTransient(() => unlink(abs), delays);
    } catch (err) {
      if (errCode(err) === 'ENOENT') return { action: 'missing' };
      throw new TdxError('AFTER_DELETE_FAILED', `Could not delete sent file ${abs}: ${describeError(err)}. Close programs holding it or fix permissions; it stays in the outbox and is not sent again until it changes.`, { cause: err });
    }
    await journal.forget(outbox.path, rel);
    if (opts.batch) opts.batch.emptied.add(path.dirname(abs));
    else await removeEmptyParents(root, path.dirname(abs));
    return { action: 'deleted' };
  }

  const to = archivePath(root, rel);
  let how: 'renamed' | 'copied';
  try {
    how = await move(abs, to, delays, opts.batch?.made, opts.quick);
  } catch (err) {
    if (errCode(err) === 'ENOENT') return { action: 'missing' };
    throw new TdxError('AFTER_ARCHIVE_FAILED', `Could not archive sent file ${abs} to ${to}: ${describeError(err)}. Close programs holding either file, remove a folder of that name in sent/, or fix permissions.`, { cause: err });
  }
  // The file may have been rewritten between the check and the move; then it is a new
  // version that must not hide in sent/: put it back when its old place is still free.
  const moved = await currentVersion(to, opts.quick);
  if (moved && (moved.size !== file.size || (how === 'renamed' && moved.mtimeMs !== file.mtimeMs))) {
    if ((await currentVersion(abs)) === null) {
      await move(to, abs, delays).catch((err: unknown) => log.warn(`A changed file was archived as ${to} and could not be moved back: ${describeError(err)}. Move it back into the outbox to send it.`));
      return { action: 'changed', ...moved };
    }
  }
  await journal.forget(outbox.path, rel);
  if (opts.batch) opts.batch.emptied.add(path.dirname(abs));
  else await removeEmptyParents(root, path.dirname(abs));
  log.debug('archived', { rel, to });
  return { action: 'archived', to };
}
