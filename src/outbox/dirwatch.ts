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
 * - A folder removed and re-created under the same name (an after-action removes an emptied
 *   folder and a writer makes it again at once) is watched anew: the record of a folder
 *   keeps its identity (dev, ino, birth time, see sameFolder), and a parent's event for a
 *   known folder, a folder's own "I went away" event and every re-read compare it. Before
 *   this, the two parent events of a quick rmdir + mkdir were handled as one, the folder
 *   looked unchanged, and its files were not seen until the agent restarted (minutes in the
 *   soak of issue #20).
 * - Backstop (backstop.ts, shared with chokidar.ts): every folder is re-read (names only,
 *   plus one stat of the folder) at least every SWEEP_MS, rate-limited like rescans, so a dead watch or lost events
 *   cannot leave files unseen for longer. A sweep that finds entries no event reported
 *   watches that folder anew and says so (`missed`).
 * - No event after close() resolves; nothing throws into the owner (errors → `error`).
 */
import { EventEmitter } from 'node:events';
import { watch, type FSWatcher, type Stats } from 'node:fs';
import { lstat, readdir, realpath, stat } from 'node:fs/promises';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { forEachLimit } from '../concurrency.js';
import type { FolderWatch, FolderWatchEvents, FolderWatchOptions } from './chokidar.js';
import { startBackstop, type Backstop } from './backstop.js';
import { childPath } from '../paths.js';
import { diffNames, rescanDelay, sameFolder, type FolderId } from './watch-rules.js';

/** Delay that gathers a burst of events into one batch of stats. */
const BATCH_MS = 10;
/** A folder is re-read this long after its last event (see the file header). */
const QUIET_MS = 250;
const STAT_CONCURRENCY = 64;

interface Folder {
  fsw: FSWatcher | null;
  /** Which folder this record watches (stat'ed before its watch started); null when that stat failed. */
  id: FolderId | null;
  /** Its watch named the folder itself: it may have been removed (inotify's IN_DELETE_SELF), see check(). */
  selfEvent: boolean;
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
  let backstop: Backstop | null = null;
  let closed = false;
  const top = path.resolve(root);

  emitter.on('error', (err: unknown) => {
    if (!closed) on.error(err);
  });
  const fail = (err: unknown) => {
    if (!closed) emitter.emit('error', err);
  };
  const entryStat = (p: string): Promise<Stats> => (opts.followSymlinks ? stat(p) : lstat(p));

  const idOf = (st: Stats): FolderId => ({ dev: st.dev, ino: st.ino, birthtimeMs: st.birthtimeMs });

  function startWatch(dir: string, f: Folder): void {
    const base = path.basename(dir);
    try {
      const fsw = watch(dir, { persistent: true }, (_type, name) => {
        if (closed || f.fsw !== fsw) return;
        if (name === null || name === undefined || name === '') scheduleScan(dir, 0);
        else {
          const n = name.toString();
          // inotify names the folder itself when it is removed or moved (IN_DELETE_SELF,
          // IN_MOVE_SELF): the watch is dead then. Check the folder as its parent's event would.
          if (n === base && dir !== top) {
            f.selfEvent = true;
            queue(dir);
          }
          queue(childPath(dir, n));
          scheduleScan(dir, QUIET_MS);
        }
      });
      fsw.on('error', (err) => {
        if (closed || f.fsw !== fsw) return;
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
    const f: Folder = { fsw: null, id: null, selfEvent: false, names: new Set(), timer: null, lastScanAt: 0, lastScanMs: 0 };
    folders.set(dir, f);
    if (announce) on.addDir(dir);
    // Identity first, then the watch: a folder replaced in between is told apart by the next check.
    const st = await stat(dir).catch(() => null);
    if (closed || folders.get(dir) !== f) return;
    f.id = st?.isDirectory() ? idOf(st) : null;
    startWatch(dir, f);
    await scan(dir, f);
  }

  /** `dir` is another folder than the one its record watches: forget the old one (and below), watch the new one. */
  async function replaceFolder(dir: string): Promise<void> {
    const parent = folders.get(path.dirname(dir));
    removeFolder(dir); // files below are reported as suspects: the poll loop checks them
    if (closed || !parent || folders.get(path.dirname(dir)) !== parent) return;
    parent.names.add(path.basename(dir));
    await addFolder(dir, true);
  }

  /** The folder is the same, but its watch died (an error): watch it again and re-read it. */
  async function rewatch(dir: string, f: Folder): Promise<void> {
    f.fsw?.close();
    f.fsw = null;
    startWatch(dir, f);
    await scan(dir, f);
  }

  /** Whether the folder at `dir` (stat'ed as `st`) is the one `f` watches. */
  const isSame = (f: Folder, st: Stats): boolean => f.id !== null && st.isDirectory() && sameFolder(f.id, idOf(st));

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

  /**
   * Reads a folder's names; new ones are checked, vanished ones reported. `sweep`: the
   * backstop re-read, which also checks the folder's identity and watch first.
   */
  async function scan(dir: string, f: Folder, sweep = false): Promise<void> {
    const t0 = performance.now();
    if (sweep && dir !== top) {
      // The root's identity is the supervisor's (ROOT_CHECK_MS).
      const st = await stat(dir).catch(() => null);
      if (closed || folders.get(dir) !== f) return;
      if (st && !isSame(f, st)) return replaceFolder(dir);
    }
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
    if (sweep && (added.length > 0 || f.fsw === null)) {
      // Entries no event reported: events were lost or the watch is dead. A new watch first
      // (nothing created from now on is missed), then this listing is handled as usual.
      if (added.length > 0) on.missed?.(dir, added.length);
      f.fsw?.close();
      f.fsw = null;
      startWatch(dir, f);
    }
    for (const name of removed) gone(dir, f, name);
    const subdirs: string[] = [];
    for (const i of added) {
      const e = entries[i]!;
      const name = e.name;
      const p = childPath(dir, name);
      if (e.isDirectory()) {
        if (!opts.ignored(p)) subdirs.push(p);
        f.names.add(name);
      } else if (e.isFile() || (e.isSymbolicLink() && !opts.followSymlinks)) {
        f.names.add(name);
        if (!opts.ignored(p)) on.file(p, undefined);
      } else if (e.isSymbolicLink()) queue(p); // followed: stat tells file or folder
      else f.names.add(name); // a socket, FIFO or device: never sent, but known (a sweep must not count it as missed)
    }
    f.lastScanAt = performance.now();
    f.lastScanMs = f.lastScanAt - t0;
    for (const d of subdirs) await addFolder(d, true);
  }

  function gone(dir: string, f: Folder, name: string): void {
    f.names.delete(name);
    const p = childPath(dir, name);
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
    if (!folders.has(p) && opts.movedAway?.(p) === true) {
      // The after-action moved it away: gone without a stat. Made again meanwhile (this event
      // may be about that), it is found by the re-read the event scheduled (it is not in names now).
      if (parent.names.has(name)) gone(dir, parent, name);
      return;
    }
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
      const known = folders.get(p);
      if (known) {
        // Removed and made again between two looks (its two events handled as one), or its watch died.
        // Its own watch naming it, with no entry of that name inside, means it was removed: on
        // volumes without birth times a re-created folder can have the old one's dev + ino.
        const selfGone = known.selfEvent && (await lstat(path.join(p, name)).then(() => false, () => true));
        known.selfEvent = false;
        if (closed || folders.get(p) !== known) return;
        if (selfGone || !isSame(known, st)) await replaceFolder(p);
        // A watch that errors again at once is retried at most once a second here (and by the sweep).
        else if (known.fsw === null && performance.now() - known.lastScanAt >= 1000) await rewatch(p, known);
        return;
      }
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
    // The backstop (see the file header): every folder re-read at least every `sweepMs`.
    if (!closed) backstop = startBackstop({ everyMs: opts.sweepMs, folders, reread: (dir, f) => scan(dir, f, true), fail });
  })();

  return {
    chokidar: emitter,
    ready,
    async close(): Promise<void> {
      closed = true;
      if (batchTimer) clearTimeout(batchTimer);
      batchTimer = null;
      backstop?.close();
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
