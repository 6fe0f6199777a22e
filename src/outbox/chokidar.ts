/**
 * The one place that uses chokidar: a typed adapter for watching one folder tree.
 * chokidar 5 only says *that* something may have changed; everything else (settling,
 * recovery of a deleted root) is ours (settle.ts, supervisor.ts).
 *
 * Backstop (backstop.ts, the same as the native watch's): the names chokidar reported are
 * kept per folder, and every folder is re-read (names only) at least every SWEEP_MS; entries
 * no event reported are reported then (files as `file`, folders as `addDir` and handed to
 * chokidar to watch), vanished ones as `unlink`/`unlinkDir`, and `missed` says so. A folder
 * with a change reported less than half that interval ago is skipped: chokidar re-reads a
 * folder on each change in it, so its watch works.
 */
import type { EventEmitter } from 'node:events';
import type { Stats } from 'node:fs';
import { lstat, readdir, stat } from 'node:fs/promises';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { watch } from 'chokidar';
import { startBackstop, type Backstop } from './backstop.js';
import { diffNames } from './watch-rules.js';

export interface FolderWatchOptions {
  /** Follow symlinks below the root (outboxes[].followSymlinks). */
  followSymlinks: boolean;
  /** Poll instead of OS events (network shares, or after a watch-limit error). */
  usePolling: boolean;
  /** true = do not report and do not enter this path. `stats` is given when chokidar has it. */
  ignored(p: string, stats?: Stats): boolean;
  /** How often every folder is re-read at least (backstop.ts; default SWEEP_MS; tests shorten it). */
  sweepMs?: number;
  /**
   * True when the agent itself just moved or deleted the file at `p` (an after-action): an
   * event naming it is taken as its removal without a stat (dirwatch.ts; issue #12). A file
   * made again under that name is found by the folder's re-read that every event schedules.
   */
  movedAway?(p: string): boolean;
}

export interface FolderWatchEvents {
  /** A file was added or changed; `st` is chokidar's own stat, taken just before. */
  file(abs: string, st: Stats | undefined): void;
  unlink(abs: string): void;
  unlinkDir(abs: string): void;
  addDir(abs: string): void;
  error(err: unknown): void;
  /**
   * A backstop re-read (backstop.ts) found `count` entries in `dir` that no event had
   * reported (events lost, or the folder's watch died); they are reported now.
   */
  missed?(dir: string, count: number): void;
}

export interface FolderWatch {
  /**
   * The emitter behind the watch (chokidar's FSWatcher, or the native watch's own, see
   * dirwatch.ts): only for tests that make it report an error or lose an event.
   */
  readonly chokidar: EventEmitter;
  /** Resolves after the initial scan, or when closed before it finished. */
  readonly ready: Promise<void>;
  /** Stops watching; no event after it resolves. */
  close(): Promise<void>;
}

/** A folder as the backstop knows it: the names chokidar reported in it. */
interface Listed {
  names: Set<string>;
  lastScanAt: number;
}

export function watchFolder(root: string, opts: FolderWatchOptions, on: FolderWatchEvents): FolderWatch {
  const fsw = watch(root, {
    persistent: true,
    ignoreInitial: false,
    followSymlinks: opts.followSymlinks,
    usePolling: opts.usePolling,
    interval: 1000,
    binaryInterval: 1000,
    ignorePermissionErrors: false,
    ignored: (p: string, stats?: Stats) => opts.ignored(p, stats),
  });
  // The names chokidar reported, per folder, for the backstop.
  const top = path.resolve(root);
  const folders = new Map<string, Listed>([[top, { names: new Set(), lastScanAt: performance.now() }]]);
  let closed = false;
  const folderOf = (dir: string, touched: boolean): Listed | undefined => {
    let f = folders.get(dir);
    if (!f && dir !== top && path.dirname(dir) !== dir && folders.has(path.dirname(dir))) {
      f = { names: new Set(), lastScanAt: performance.now() };
      folders.set(dir, f);
    }
    if (f && touched) f.lastScanAt = performance.now();
    return f;
  };
  const known = (p: string, touched: boolean): void => {
    const abs = path.resolve(p);
    folderOf(path.dirname(abs), touched)?.names.add(path.basename(abs));
  };
  const forgetDir = (p: string): void => {
    const prefix = p + path.sep;
    for (const d of [...folders.keys()]) if (d === p || d.startsWith(prefix)) folders.delete(d);
  };
  fsw.on('add', (p, st) => {
    known(p, true);
    on.file(p, st);
  });
  fsw.on('change', (p, st) => {
    known(p, false);
    on.file(p, st);
  });
  fsw.on('unlink', (p) => {
    const abs = path.resolve(p);
    folderOf(path.dirname(abs), true)?.names.delete(path.basename(abs));
    on.unlink(p);
  });
  fsw.on('unlinkDir', (p) => {
    const abs = path.resolve(p);
    forgetDir(abs);
    folderOf(path.dirname(abs), true)?.names.delete(path.basename(abs));
    on.unlinkDir(p);
  });
  fsw.on('addDir', (p) => {
    const abs = path.resolve(p);
    if (abs !== top) {
      known(abs, true);
      folderOf(abs, true);
    }
    on.addDir(p);
  });
  fsw.on('error', (err) => on.error(err));

  /** The backstop's re-read of one folder: what chokidar did not report is reported now. */
  async function reread(dir: string, f: Listed): Promise<void> {
    let entries;
    try {
      entries = await readdir(dir, { withFileTypes: true });
    } catch {
      return; // gone or unreadable: chokidar's own events and errors say so
    }
    if (closed || folders.get(dir) !== f) return;
    f.lastScanAt = performance.now();
    const { added, removed } = diffNames(f.names, entries.map((e) => e.name));
    let missed = 0;
    for (const name of removed) {
      f.names.delete(name);
      const p = path.join(dir, name);
      if (folders.has(p)) {
        forgetDir(p);
        on.unlinkDir(p);
      } else on.unlink(p);
    }
    const subdirs: string[] = [];
    for (const i of added) {
      const e = entries[i]!;
      const p = path.join(dir, e.name);
      // Ignored entries (and sockets, FIFOs) are never reported: known from now on, not missed.
      f.names.add(e.name);
      if (opts.ignored(p)) continue;
      // Globs decide about files with their stats, as chokidar asks (a file they exclude is not missed).
      if (!e.isDirectory() && opts.ignored(p, (await (opts.followSymlinks ? stat : lstat)(p).catch(() => undefined)) ?? undefined)) continue;
      if (closed) return;
      if (e.isDirectory()) {
        missed++;
        subdirs.push(p);
      } else if (e.isFile() || e.isSymbolicLink()) {
        missed++;
        on.file(p, undefined);
      }
    }
    if (missed > 0) on.missed?.(dir, missed);
    for (const d of subdirs) {
      if (closed) return;
      const sub: Listed = { names: new Set(), lastScanAt: 0 };
      folders.set(d, sub);
      on.addDir(d);
      fsw.add(d); // chokidar watches it from now on
      await reread(d, sub);
    }
  }
  let backstop: Backstop | null = null;

  let finish: () => void = () => undefined;
  const ready = new Promise<void>((resolve) => {
    finish = resolve;
    fsw.once('ready', () => resolve());
  });
  void ready.then(() => {
    if (!closed) backstop = startBackstop({ everyMs: opts.sweepMs, folders, reread, fail: (err) => on.error(err) });
  });
  return {
    chokidar: fsw,
    ready,
    async close(): Promise<void> {
      closed = true;
      backstop?.close();
      finish();
      const closing = fsw.close();
      // close() removes every listener, yet chokidar can still emit 'error' from fs calls
      // in flight; with no listener that would crash the process.
      fsw.on('error', () => undefined);
      await closing;
    },
  };
}
