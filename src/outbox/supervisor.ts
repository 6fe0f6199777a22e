/**
 * WatchSupervisor: keeps one chokidar watch (chokidar.ts) alive on an outbox root.
 * Restarts it with a backoff after errors, switches to polling when the OS runs out of
 * watches, and notices a deleted or replaced root, which chokidar does not
 * (https://github.com/paulmillr/chokidar/issues/1278, #1207): the root is stat'ed every
 * ROOT_CHECK_MS (and whenever files vanish) and the watch re-created when it vanished or
 * its identity (dev, ino, birth time) changed. Problems are logged once each (then at
 * debug level) until the watch is healthy again. The settle/poll loop is in watcher.ts.
 */
import { readdir, stat } from 'node:fs/promises';
import type { Stats } from 'node:fs';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { backoffDelay } from '../backoff.js';
import { describeError } from '../errors.js';
import { retryTransient } from '../fsutil.js';
import type { Logger } from '../log.js';
import { watchFolder, type FolderWatch } from './chokidar.js';
import { watchNative } from './dirwatch.js';
import { classifyWatchError, errCode, sameFolder, type FolderId } from './watch-rules.js';

/** How often the outbox root itself is checked for deletion/replacement. */
export const ROOT_CHECK_MS = 1000;
const BACKOFF = { initialMs: 500, maxMs: 30_000 };
/** When a new folder is read again after chokidar reported it (see rescanLater). */
const RESCAN_AFTER_MS = [100, 1000];

/** What the supervised watch reports to its owner (the poll loop). */
export interface SupervisedEvents {
  ignored(p: string, stats?: Stats): boolean;
  /** A file was added or changed; returns its rel when it is tracked (counted as seen by a scan). */
  file(abs: string, st: Stats | undefined): string | null;
  unlink(abs: string): void;
  /** A folder below the root was removed. */
  unlinkDir(abs: string): void;
  /** A file found by re-reading a new folder; true when it was not known before. */
  found(abs: string): boolean;
  /** A scan (after start or a restart) finished; `seen` are the rels it reported. */
  scanned(seen: ReadonlySet<string>): void;
  /** Something needs the poll loop soon. */
  kick(): void;
  /** The agent itself just moved or deleted this file (FolderWatchOptions.movedAway). */
  movedAway?(abs: string): boolean;
}

export interface WatchSupervisorOptions {
  root: string;
  log: Logger;
  followSymlinks: boolean;
  usePolling: boolean;
}

export class WatchSupervisor {
  private readonly root: string;
  private readonly log: Logger;
  private usePolling: boolean;
  private fw: FolderWatch | null = null;
  /** Identity of the watched root folder; inode numbers are reused at once on ext4, birth times are not. */
  private rootId: FolderId | null = null;
  private stopped = true;
  private lastRootCheck = 0;
  private restartTimer: NodeJS.Timeout | null = null;
  /** Restarts scheduled since the watch last worked (or was reset); sets the restart delay. */
  private restarts = 0;
  /** Key of the problem last logged at warn level; the same problem is not repeated. */
  private problem: string | null = null;
  private readonly rescanTimers = new Set<NodeJS.Timeout>();

  constructor(
    private readonly opts: WatchSupervisorOptions,
    private readonly on: SupervisedEvents,
  ) {
    this.root = opts.root;
    this.log = opts.log;
    this.usePolling = opts.usePolling;
  }

  /** When the root is next due for a check (performance.now() time). */
  get nextRootCheck(): number {
    return this.lastRootCheck + ROOT_CHECK_MS;
  }

  /** Resolves after the first scan, or at once (warning) when the root is missing: it is picked up when it appears. */
  async start(): Promise<void> {
    if (!this.stopped) return;
    this.stopped = false;
    await this.open();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.restartTimer) clearTimeout(this.restartTimer);
    this.restartTimer = null;
    for (const t of this.rescanTimers) clearTimeout(t);
    this.rescanTimers.clear();
    await this.close();
  }

  private async open(): Promise<void> {
    if (this.stopped) return;
    let st: Stats;
    try {
      // Windows: a root just removed and re-created can be delete-pending for a moment (EPERM/EBUSY
      // while the old handles close): retried with a short bounded backoff, then the restart backoff applies.
      st = await retryTransient(() => stat(this.root), { tries: 5 });
      if (!st.isDirectory()) throw Object.assign(new Error('not a folder'), { code: 'ENOTDIR' });
    } catch (err) {
      this.reportProblem('root', 'warn', `Outbox folder ${this.root} is missing or not a folder (${describeError(err)}). Create it or fix outboxes[].path in the config; watching resumes by itself when it is there.`);
      this.scheduleRestart();
      return;
    }
    if (this.stopped) return;
    this.rootId = { dev: st.dev, ino: st.ino, birthtimeMs: st.birthtimeMs };
    this.lastRootCheck = performance.now();
    const seen = new Set<string>();
    let scanning = true;
    // OS events on Linux: our own per-folder watch (dirwatch.ts, issue #12: chokidar re-reads the
    // whole folder per change). Windows and macOS keep chokidar until dirwatch is verified there
    // (the Windows lane runs chokidar); polling (shares, watch limits) is chokidar everywhere.
    // Both re-read every folder at least every 30 s as a backstop (backstop.ts).
    const native = !this.usePolling && process.platform === 'linux';
    const fw: FolderWatch = (native ? watchNative : watchFolder)(
      this.root,
      // Never follow links out of the outbox unless the operator asked for it (issue #10).
      { followSymlinks: this.opts.followSymlinks, usePolling: this.usePolling, ignored: (p, s) => this.on.ignored(p, s), movedAway: (p) => this.on.movedAway?.(p) === true },
      {
        file: (p, s) => {
          const rel = this.on.file(p, s);
          if (rel !== null && scanning) seen.add(rel);
        },
        unlink: (p) => this.on.unlink(p),
        unlinkDir: (p) => {
          if (path.resolve(p) === this.root) {
            this.lastRootCheck = -Infinity; // check the root on the next poll
            this.on.kick();
          } else this.on.unlinkDir(p);
        },
        // Only chokidar reads a new folder before watching it (rescanLater); the native watch
        // watches first, so re-reading would only find again what it reported (issue #12:
        // two more listings and name checks of every file of a dropped folder).
        addDir: (p) => {
          if (!scanning && !native) this.rescanLater(fw, p);
        },
        error: (err) => this.onError(fw, err),
        missed: (dir, count) => {
          // The native watch watches that folder anew; chokidar's backstop reports what it found (chokidar.ts).
          this.log.info(`Found ${count} entr${count === 1 ? 'y' : 'ies'} in ${dir} that no watch event had reported; ${native ? 'watching that folder anew' : 'picked up now'}`, { dir, count });
          this.on.kick();
        },
      },
    );
    this.fw = fw;
    await fw.ready;
    scanning = false;
    if (this.stopped || this.fw !== fw) return;
    // Files that disappeared while we were not watching (after a restart).
    this.on.scanned(seen);
    if (this.problem !== null) this.log.info(`Watching outbox ${this.root} again`, { files: seen.size });
    this.problem = null;
    this.restarts = 0;
    this.log.debug('outbox scan done', { files: seen.size, polling: this.usePolling });
  }

  /**
   * chokidar 5 reads a new folder *before* it starts watching it (handler.js `_handleDir`:
   * `_handleRead`, then `_watchWithNodeFs`), so a file that lands in between is never
   * reported. A file renamed into a just-created folder hits that window often (about one
   * in ten here). The new folder (and any folder below it) is read again once its watch is up.
   */
  private rescanLater(fw: FolderWatch, dir: string): void {
    for (const ms of RESCAN_AFTER_MS) {
      const t = setTimeout(() => {
        this.rescanTimers.delete(t);
        if (this.stopped || this.fw !== fw) return;
        this.rescan(fw, dir).catch((err: unknown) => this.log.debug('rescan of a new folder failed', { dir, error: describeError(err) }));
      }, ms);
      this.rescanTimers.add(t);
    }
  }

  private async rescan(fw: FolderWatch, dir: string): Promise<void> {
    let entries;
    try {
      entries = await retryTransient(() => readdir(dir, { withFileTypes: true }), { tries: 5 });
    } catch {
      return; // gone again: nothing to find
    }
    let found = false;
    for (const e of entries) {
      if (this.stopped || this.fw !== fw) return;
      const abs = path.join(dir, e.name);
      if (this.on.ignored(abs)) continue;
      if (e.isDirectory()) await this.rescan(fw, abs);
      else if (e.isFile() && this.on.found(abs)) found = true;
    }
    if (found) this.on.kick();
  }

  private async close(): Promise<void> {
    const fw = this.fw;
    this.fw = null;
    if (!fw) return;
    try {
      await fw.close();
    } catch (err) {
      this.log.debug('closing chokidar failed', { error: describeError(err) });
    }
  }

  private onError(fw: FolderWatch, err: unknown): void {
    if (this.stopped || this.fw !== fw) return;
    const where = (err as { path?: unknown }).path;
    const d = classifyWatchError(errCode(err), typeof where === 'string' ? where : undefined, this.root, describeError(err));
    this.reportProblem(d.key, d.level, d.msg);
    if (d.action === 'skip') return;
    if (d.action === 'poll') this.usePolling = true;
    this.restart();
  }

  /** Closes the current watch and opens a new one after a backoff. */
  private restart(): void {
    if (this.stopped || this.restartTimer) return;
    void this.close().then(() => this.scheduleRestart());
  }

  private scheduleRestart(): void {
    if (this.stopped || this.restartTimer) return;
    this.restarts++;
    const delay = backoffDelay(this.restarts, BACKOFF);
    this.restartTimer = setTimeout(() => {
      this.restartTimer = null;
      this.open().catch((err: unknown) => {
        this.reportProblem(`open:${errCode(err)}`, 'error', `Could not start watching outbox ${this.root}: ${describeError(err)}. Retrying.`);
        this.scheduleRestart();
      });
    }, delay);
  }

  private reportProblem(key: string, level: 'warn' | 'error', msg: string): void {
    if (this.problem === key) {
      this.log.debug(msg);
      return;
    }
    this.problem = key;
    this.log[level](msg);
  }

  /**
   * Detects a deleted or replaced outbox folder, which chokidar does not (see file
   * header), and starts recovery. False when the outbox is not being watched properly.
   */
  async checkRoot(): Promise<boolean> {
    this.lastRootCheck = performance.now();
    if (!this.fw || !this.rootId) return false; // not watching: the restart timer is in charge
    let ok = false;
    try {
      const st = await stat(this.root);
      ok = st.isDirectory() && sameFolder(this.rootId, st);
    } catch {
      ok = false;
    }
    if (ok || this.stopped) return ok;
    this.reportProblem('root', 'warn', `Outbox folder ${this.root} was deleted or replaced. Watching resumes by itself when it exists again; files already sent are not sent again.`);
    this.rootId = null;
    this.restarts = 0;
    this.restart();
    return false;
  }
}
