/**
 * The native folder watch (issue #12): one `fs.watch` per folder (inotify, FSEvents,
 * ReadDirectoryChangesW), each event handled as the one name it names.
 *
 * Why not chokidar here: chokidar 5 re-reads (readdir + lstat of every entry) a whole
 * folder on every change in it, at most once a second, and keeps an fs.watch handle per
 * file. With 20,000 files waiting in an outbox, every archive move into `sent/` made it
 * stat all the others again: 60 % of the sender's CPU, growing with the square of the
 * backlog, and ~300 MB of handles. chokidar stays for `usePolling` (network shares).
 *
 * Invariants (the same contract as chokidar.ts' watchFolder):
 * - A folder is watched before it is read, so nothing created in between is missed.
 * - An event names one entry: only that entry is stat'ed. An event without a name (the
 *   OS dropped detail) re-reads its folder.
 * - Lost events (a full inotify queue drops them silently) cannot lose a file: a folder
 *   that had events is re-read (names only, no stat) once it has been quiet a moment,
 *   and at most every `rescanDelay()` while it keeps changing, so re-reading costs a
 *   bounded share of the time however big the folder is.
 * - Files reported by a scan come without stats (the poll loop stats them anyway).
 * - No event after close() resolves; nothing throws into the owner (errors → `error`).
 */
import { EventEmitter } from 'node:events';
import { watch, type FSWatcher, type Stats } from 'node:fs';
import { lstat, readdir, realpath, stat } from 'node:fs/promises';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { forEachLimit } from '../concurrency.js';
import type { FolderWatch, FolderWatchEvents, FolderWatchOptions } from './chokidar.js';
import { diffNames, rescanDelay } from './watch-rules.js';

/** Delay that gathers a burst of events into one batch of stats. */
const BATCH_MS = 10;
/** A folder is re-read this long after its last event (see the file header). */
const QUIET_MS = 250;
const STAT_CONCURRENCY = 64;

interface Folder {
  fsw: FSWatcher | null;
  /** Names of entries reported (files, links and folders). */
  names: Set<string>;
  /** Rescan timer, when it was last done and how long it took. */
  timer: NodeJS.Timeout | null;
  lastScanAt: number;
  lastScanMs: number;
}

export function watchNative(root: string, opts: FolderWatchOptions, on: FolderWatchEvents): FolderWatch {
  const emitter = new EventEmitter();
  const folders = new Map<string, Folder>();
  const realFolders = new Set<string>();
  const pending = new Set<string>();
  let batchTimer: NodeJS.Timeout | null = null;
  let closed = false;
  const top = path.resolve(root);

  emitter.on('error', (err: unknown) => {
    if (!closed) on.error(err);
  });
  const fail = (err: unknown) => {
    if (!closed) emitter.emit('error', err);
  };
  const entryStat = (p: string): Promise<Stats> => (opts.followSymlinks ? stat(p) : lstat(p));

  function startWatch(dir: string, f: Folder): void {
    try {
      const fsw = watch(dir, { persistent: true }, (_type, name) => {
        if (closed) return;
        if (name === null || name === undefined || name === '') scheduleScan(dir, 0);
        else {
          queue(path.join(dir, name.toString()));
          scheduleScan(dir, QUIET_MS);
        }
      });
      fsw.on('error', (err) => {
        if (closed) return;
        // The folder itself went away (Windows reports EPERM): check it like an event would.
        fsw.close();
        f.fsw = null;
        if (dir === top) void lstat(dir).then(() => fail(err), () => on.unlinkDir(dir));
        else queue(dir);
      });
      f.fsw = fsw;
    } catch (err) {
      const code = (err as { code?: string }).code;
      if (code === 'ENOENT' || code === 'ENOTDIR') return; // gone already: its parent's event says so
      fail(err);
    }
  }

  /** Watches and reads a folder (and the folders below it). */
  async function addFolder(dir: string, announce: boolean): Promise<void> {
    if (closed || folders.has(dir)) return;
    if (opts.followSymlinks) {
      const real = await realpath(dir).catch(() => null);
      if (real === null || realFolders.has(real)) return;
      realFolders.add(real);
    }
    const f: Folder = { fsw: null, names: new Set(), timer: null, lastScanAt: 0, lastScanMs: 0 };
    folders.set(dir, f);
    if (announce) on.addDir(dir);
    startWatch(dir, f);
    await scan(dir, f);
  }

  function removeFolder(dir: string): void {
    const prefix = dir + path.sep;
    for (const [d, f] of folders) {
      if (d !== dir && !d.startsWith(prefix)) continue;
      f.fsw?.close();
      if (f.timer) clearTimeout(f.timer);
      folders.delete(d);
    }
    if (opts.followSymlinks) realFolders.clear(); // rebuilt lazily; only guards loops
    folders.get(path.dirname(dir))?.names.delete(path.basename(dir));
    on.unlinkDir(dir);
  }

  /** Reads a folder's names; new ones are checked, vanished ones reported. */
  async function scan(dir: string, f: Folder): Promise<void> {
    const t0 = performance.now();
    let entries;
    try {
      entries = await readdir(dir, { withFileTypes: true });
    } catch (err) {
      const code = (err as { code?: string }).code;
      if (code === 'ENOENT' || code === 'ENOTDIR') {
        if (dir === top) on.unlinkDir(dir);
        else removeFolder(dir);
      } else if (code !== 'EACCES' && code !== 'EPERM') fail(err);
      return;
    }
    if (closed || folders.get(dir) !== f) return;
    const names = entries.map((e) => e.name);
    const { added, removed } = diffNames(f.names, names);
    for (const name of removed) gone(dir, f, name);
    const subdirs: string[] = [];
    for (const i of added) {
      const e = entries[i]!;
      const name = e.name;
      const p = path.join(dir, name);
      if (e.isDirectory()) {
        if (!opts.ignored(p)) subdirs.push(p);
        f.names.add(name);
      } else if (e.isFile() || (e.isSymbolicLink() && !opts.followSymlinks)) {
        f.names.add(name);
        if (!opts.ignored(p)) on.file(p, undefined);
      } else if (e.isSymbolicLink()) queue(p); // followed: stat tells file or folder
    }
    f.lastScanAt = performance.now();
    f.lastScanMs = f.lastScanAt - t0;
    for (const d of subdirs) await addFolder(d, true);
  }

  function gone(dir: string, f: Folder, name: string): void {
    f.names.delete(name);
    const p = path.join(dir, name);
    if (folders.has(p)) removeFolder(p);
    else on.unlink(p);
  }

  function scheduleScan(dir: string, quietMs: number): void {
    const f = folders.get(dir);
    // A re-read already planned starts after this event, so it sees what the event was about.
    if (!f || closed || f.timer) return;
    // `quietMs` after the event, and never sooner than the bounded interval after the last read.
    const due = Math.max(quietMs, f.lastScanAt + rescanDelay(f.lastScanMs) - performance.now());
    f.timer = setTimeout(() => {
      f.timer = null;
      if (closed || folders.get(dir) !== f) return;
      scan(dir, f).catch(fail);
    }, due);
  }

  function queue(p: string): void {
    pending.add(p);
    batchTimer ??= setTimeout(() => {
      batchTimer = null;
      const batch = [...pending];
      pending.clear();
      forEachLimit(batch, STAT_CONCURRENCY, check).catch(fail);
    }, BATCH_MS);
  }

  /** One named entry changed: what is it now? */
  async function check(p: string): Promise<void> {
    if (closed) return;
    const dir = path.dirname(p);
    const name = path.basename(p);
    const parent = folders.get(dir);
    if (!parent) return; // its folder is not watched (ignored, or gone)
    let st: Stats;
    try {
      st = await entryStat(p);
    } catch (err) {
      const code = (err as { code?: string }).code;
      if (closed) return;
      if (code === 'ENOENT' || code === 'ENOTDIR') {
        if (parent.names.has(name) || folders.has(p)) gone(dir, parent, name);
        else on.unlink(p);
      } else if (code === 'ELOOP' || code === 'EACCES' || code === 'EPERM') {
        on.file(p, undefined); // the poll loop says what is wrong with it
      }
      return;
    }
    if (closed || folders.get(dir) !== parent) return;
    if (st.isDirectory()) {
      if (folders.has(p)) return;
      parent.names.add(name);
      if (!opts.ignored(p, st)) await addFolder(p, true);
      return;
    }
    if (folders.has(p)) removeFolder(p); // a folder replaced by a file
    parent.names.add(name);
    if (!opts.ignored(p, st)) on.file(p, st);
  }

  const ready = (async () => {
    try {
      await addFolder(top, false);
    } catch (err) {
      fail(err);
    }
  })();

  return {
    chokidar: emitter,
    ready,
    async close(): Promise<void> {
      closed = true;
      if (batchTimer) clearTimeout(batchTimer);
      batchTimer = null;
      pending.clear();
      for (const f of folders.values()) {
        f.fsw?.close();
        if (f.timer) clearTimeout(f.timer);
      }
      folders.clear();
      emitter.removeAllListeners('error');
      emitter.on('error', () => undefined);
    },
  };
}
