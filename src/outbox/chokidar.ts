/**
 * The one place that uses chokidar: a typed adapter for watching one folder tree.
 * chokidar 5 only says *that* something may have changed; everything else (settling,
 * recovery of a deleted root) is ours (settle.ts, supervisor.ts).
 */
import type { EventEmitter } from 'node:events';
import type { Stats } from 'node:fs';
import { watch } from 'chokidar';

export interface FolderWatchOptions {
  /** Follow symlinks below the root (outboxes[].followSymlinks). */
  followSymlinks: boolean;
  /** Poll instead of OS events (network shares, or after a watch-limit error). */
  usePolling: boolean;
  /** true = do not report and do not enter this path. `stats` is given when chokidar has it. */
  ignored(p: string, stats?: Stats): boolean;
  /** Native watch only (dirwatch.ts): how often every folder is re-read at least (default SWEEP_MS; tests shorten it). */
  sweepMs?: number;
}

export interface FolderWatchEvents {
  /** A file was added or changed; `st` is chokidar's own stat, taken just before. */
  file(abs: string, st: Stats | undefined): void;
  unlink(abs: string): void;
  unlinkDir(abs: string): void;
  addDir(abs: string): void;
  error(err: unknown): void;
  /**
   * Native watch only: a backstop re-read found `count` entries in `dir` that no event had
   * reported (events lost, or the folder's watch died), and the folder is watched anew.
   */
  missed?(dir: string, count: number): void;
}

export interface FolderWatch {
  /**
   * The emitter behind the watch (chokidar's FSWatcher, or the native watch's own, see
   * dirwatch.ts): only for tests that make it report an error.
   */
  readonly chokidar: EventEmitter;
  /** Resolves after the initial scan, or when closed before it finished. */
  readonly ready: Promise<void>;
  /** Stops watching; no event after it resolves. */
  close(): Promise<void>;
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
  fsw.on('add', (p, st) => on.file(p, st));
  fsw.on('change', (p, st) => on.file(p, st));
  fsw.on('unlink', (p) => on.unlink(p));
  fsw.on('unlinkDir', (p) => on.unlinkDir(p));
  fsw.on('addDir', (p) => on.addDir(p));
  fsw.on('error', (err) => on.error(err));
  let finish: () => void = () => undefined;
  const ready = new Promise<void>((resolve) => {
    finish = resolve;
    fsw.once('ready', () => resolve());
  });
  return {
    chokidar: fsw,
    ready,
    async close(): Promise<void> {
      finish();
      const closing = fsw.close();
      // close() removes every listener, yet chokidar can still emit 'error' from fs calls
      // in flight; with no listener that would crash the process.
      fsw.on('error', () => undefined);
      await closing;
    },
  };
}
