/**
 * OutboxWatcher: turns an outbox folder into a stream of "this file is complete"
 * (`ready`) and "this file went away" (`gone`) events.
 *
 * chokidar 5 only tells us *that* something may have changed; whether a file is complete
 * is decided by our own re-stat polling (src/outbox/settle.ts). We never use chokidar's
 * `awaitWriteFinish`: it compares size only, misfires on large files and on Windows,
 * and buffered writers on Windows raise no events while writing.
 *
 * Invariants:
 * - One poll loop (one timer) per watcher, looking only at files not yet settled.
 * - Each version (size, mtimeMs) of a rel is emitted once; a different version later is
 *   emitted again. Versions emitted before a watcher restart are not emitted again.
 * - Nothing here throws into the agent: chokidar errors, a deleted outbox, listener
 *   exceptions are logged and the watcher recovers by itself.
 * - After `stop()` resolves there is no timer, no chokidar handle and no event.
 *
 * Known chokidar problems worked around:
 * - A watched root that is deleted and re-created is not watched again
 *   (https://github.com/paulmillr/chokidar/issues/1278, #1207): we stat the root
 *   every ROOT_CHECK_MS (and whenever files vanish) and re-create the chokidar watcher
 *   when it vanished or its identity (dev, ino, birth time) changed.
 */
import { EventEmitter } from 'node:events';
import { constants as fsc, type Stats } from 'node:fs';
import os from 'node:os';
import { lstat, open, readdir, readlink, stat } from 'node:fs/promises';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { watch, type FSWatcher } from 'chokidar';
import type { OutboxConfig } from '../config/types.js';
import { describeError } from '../errors.js';
import { isIgnoredRel, makeOutboxFilter } from '../filters.js';
import type { Logger } from '../log.js';
import { SettleTracker, type FileVersion } from './settle.js';
import { errCode as codeOf } from '../fsutil.js';

export interface ReadyFile {
  outbox: OutboxConfig;
  /** '/'-separated, relative to outbox.path. */
  rel: string;
  abs: string;
  size: number;
  mtimeMs: number;
}

export interface OutboxWatcherEvents {
  ready: [ReadyFile];
  gone: [{ outbox: OutboxConfig; rel: string }];
}

export interface OutboxWatcherOptions {
  log: Logger;
  /** Absolute folders never to look into (the agent's staging/data folders). */
  ignore?: string[];
  /** Settle re-check interval; default min(250, settleMs), at least 10. */
  pollMs?: number;
  /** Make chokidar poll instead of using OS events (network shares). */
  usePolling?: boolean;
}

/** How often the outbox root itself is checked for deletion/replacement. */
const ROOT_CHECK_MS = 1000;
/** Volumes where `A` and `a` are one name (NTFS, APFS by default): path prefixes need the careful check. */
const CASE_INSENSITIVE_FS = process.platform === 'win32' || process.platform === 'darwin';

/** Delay that batches a burst of chokidar events into one poll. */
const KICK_MS = 15;
/** Shortest gap between two poll-loop turns. */
const MIN_TICK_MS = 10;
const BACKOFF_START_MS = 500;
const BACKOFF_MAX_MS = 30_000;
const STAT_CONCURRENCY = 64;
const OPEN_CONCURRENCY = 32;
/** When a new folder is read again after chokidar reported it (see rescanLater). */
const RESCAN_AFTER_MS = [100, 1000];

type OpenCheck = 'ok' | 'busy' | 'gone';

/** libuv's UV_FS_O_EXLOCK: on Windows, open without sharing (fails with EBUSY while anyone has the file open). */
export const UV_FS_O_EXLOCK = 0x10000000;
const EXCLUSIVE_READ = fsc.O_RDONLY | UV_FS_O_EXLOCK;

export class OutboxWatcher extends EventEmitter<OutboxWatcherEvents> {
  readonly outbox: OutboxConfig;
  readonly root: string;
  /** `root` + separator: the prefix of every path below it. */
  private readonly rootPrefix: string;
  private readonly log: Logger;
  private readonly ignore: string[];
  private readonly pollMs: number;
  private usePolling: boolean;
  private readonly tracker: SettleTracker;
  private readonly accepts: (rel: string) => boolean;

  private fsw: FSWatcher | null = null;
  /** Identity of the watched root folder; inode numbers are reused at once on ext4, birth times are not. */
  private rootId: { dev: number; ino: number; birthtimeMs: number } | null = null;
  private stopped = true;
  private timer: NodeJS.Timeout | null = null;
  private timerAt = Infinity;
  private ticking: Promise<void> | null = null;
  private tickAgain = false;
  private lastRootCheck = 0;
  private restartTimer: NodeJS.Timeout | null = null;
  private backoffMs = BACKOFF_START_MS;
  /** Key of the problem last logged at warn level; the same problem is not repeated. */
  private problem: string | null = null;
  /** rel -> version key whose unreadability was already logged at warn level. */
  private readonly busyWarned = new Map<string, string>();
  /** Symlinks skipped (outboxes[].followSymlinks is off): rel → target, warned once each. */
  private readonly links = new Map<string, string>();
  /** Settled files the agent may not read (EACCES/EPERM): rel → error code. Warned once each; retried until readable. */
  private readonly unreadable = new Map<string, string>();
  /** Files left out by include/exclude (seen by chokidar's filter), bounded; pruned on root checks. */
  private readonly excluded = new Set<string>();
  /** Due files whose open failed (Windows: still held by the writer): not retried before this time. */
  private readonly busyUntil = new Map<string, number>();
  /** rels chokidar reported unlinked: checked on the next poll. */
  private readonly suspects = new Set<string>();
  private finishReady: (() => void) | null = null;
  private readonly rescanTimers = new Set<NodeJS.Timeout>();

  constructor(outbox: OutboxConfig, opts: OutboxWatcherOptions) {
    super();
    this.outbox = outbox;
    this.root = path.resolve(outbox.path);
    this.rootPrefix = this.root.endsWith(path.sep) ? this.root : this.root + path.sep;
    this.log = opts.log.child({ component: 'outbox', outbox: this.root });
    this.ignore = (opts.ignore ?? []).map((p) => path.resolve(p));
    this.pollMs = Math.max(10, opts.pollMs ?? Math.min(250, outbox.settleMs));
    this.usePolling = opts.usePolling ?? false;
    this.tracker = new SettleTracker(outbox.settleMs, this.pollMs);
    this.accepts = makeOutboxFilter(outbox);
  }

  /** Windows: "cannot open exclusively" means another program is still writing the file. */
  private readonly exclusive = process.platform === 'win32';

  /** Files seen but not yet settled. */
  get pendingCount(): number {
    return this.tracker.pendingCount;
  }

  /**
   * Starts watching; resolves after chokidar's initial scan (or at once, with a warning,
   * when the outbox folder does not exist yet: it is picked up when it appears). Files
   * already waiting are emitted as soon as they have settled.
   */
  async start(): Promise<void> {
    if (!this.stopped) return;
    this.stopped = false;
    this.schedule(0);
    await this.openWatcher();
  }

  /** Closes chokidar and all timers; no event after it resolves. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    this.timerAt = Infinity;
    if (this.restartTimer) clearTimeout(this.restartTimer);
    this.restartTimer = null;
    for (const t of this.rescanTimers) clearTimeout(t);
    this.rescanTimers.clear();
    await this.closeWatcher();
    await this.ticking;
  }

  /**
   * The agent has finished with the emitted version of `rel` (sent and after-action
   * done, or given up). Its later disappearance is not reported as `gone`; a later
   * different version is emitted again. Call it before the after-action moves or
   * deletes the file, or ignore the `gone` that may follow.
   */
  release(rel: string): void {
    this.tracker.release(rel);
  }

  // ---- chokidar ------------------------------------------------------------------

  private async openWatcher(): Promise<void> {
    if (this.stopped) return;
    let st: Stats;
    try {
      st = await stat(this.root);
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
    const fsw = watch(this.root, {
      persistent: true,
      ignoreInitial: false,
      // Never follow links out of the outbox unless the operator asked for it (issue #10).
      followSymlinks: this.outbox.followSymlinks === true,
      usePolling: this.usePolling,
      interval: 1000,
      binaryInterval: 1000,
      ignorePermissionErrors: false,
      ignored: (p: string, stats?: Stats) => this.isIgnoredPath(p, stats),
    });
    this.fsw = fsw;
    const onFile = (p: string, st?: Stats): void => {
      const rel = this.relOf(p);
      if (rel === null) return;
      if (!this.accepts(rel)) {
        this.noteExcluded(rel);
        return;
      }
      if (scanning) seen.add(rel);
      // chokidar's own stat (taken just before the event) serves as the first
      // observation: it can only be older than now, which only delays settling.
      if (st?.isFile()) this.tracker.observe(rel, { size: st.size, mtimeMs: st.mtimeMs }, performance.now());
      else this.tracker.touch(rel);
      this.schedule(KICK_MS);
    };
    fsw.on('add', onFile);
    fsw.on('change', onFile);
    // Unlinks are verified by the poll loop before anyone hears `gone`: when the whole
    // outbox vanished (share dropped, folder moved away) the files are not gone, the
    // watcher restarts, and what is still there after the rescan is not emitted again.
    fsw.on('unlink', (p) => {
      const rel = this.relOf(p);
      if (rel !== null) this.links.delete(rel);
      if (rel === null || !this.tracker.has(rel)) return;
      this.suspects.add(rel);
      this.schedule(KICK_MS);
    });
    fsw.on('unlinkDir', (p) => {
      const rel = this.relOf(p);
      if (rel === null) {
        if (path.resolve(p) === this.root) {
          this.lastRootCheck = -Infinity; // check the root on the next poll
          this.schedule(KICK_MS);
        }
        return;
      }
      const prefix = rel + '/';
      for (const r of this.tracker.known()) if (r.startsWith(prefix)) this.suspects.add(r);
      this.schedule(KICK_MS);
    });
    fsw.on('addDir', (p) => {
      if (!scanning) this.rescanLater(fsw, p);
    });
    fsw.on('error', (err) => this.onChokidarError(fsw, err));
    await new Promise<void>((resolve) => {
      this.finishReady = resolve;
      fsw.once('ready', () => resolve());
    });
    this.finishReady = null;
    scanning = false;
    if (this.stopped || this.fsw !== fsw) return;
    // Files that disappeared while we were not watching (after a restart).
    for (const rel of [...this.tracker.known()]) if (!seen.has(rel)) this.forget(rel);
    if (this.problem !== null) this.log.info(`Watching outbox ${this.root} again`, { files: seen.size });
    this.problem = null;
    this.backoffMs = BACKOFF_START_MS;
    this.log.debug('outbox scan done', { files: seen.size, polling: this.usePolling });
  }

  /**
   * chokidar 5 reads a new folder *before* it starts watching it (handler.js `_handleDir`:
   * `_handleRead`, then `_watchWithNodeFs`), so a file that lands in between is never
   * reported. A file renamed into a just-created folder hits that window often (about one
   * in ten here). The new folder (and any folder below it) is read again once its watch is up.
   */
  private rescanLater(fsw: FSWatcher, dir: string): void {
    for (const ms of RESCAN_AFTER_MS) {
      const t = setTimeout(() => {
        this.rescanTimers.delete(t);
        if (this.stopped || this.fsw !== fsw) return;
        this.rescan(fsw, dir).catch((err: unknown) => this.log.debug('rescan of a new folder failed', { dir, error: describeError(err) }));
      }, ms);
      this.rescanTimers.add(t);
    }
  }

  private async rescan(fsw: FSWatcher, dir: string): Promise<void> {
    let entries;
    try {
      entries = await readdir(dir, { withFileTypes: true });
    } catch {
      return; // gone again: nothing to find
    }
    let found = false;
    for (const e of entries) {
      if (this.stopped || this.fsw !== fsw) return;
      const abs = path.join(dir, e.name);
      if (this.isIgnoredPath(abs)) continue;
      if (e.isDirectory()) await this.rescan(fsw, abs);
      else if (e.isFile()) {
        const rel = this.relOf(abs);
        if (rel === null || !this.accepts(rel) || this.tracker.has(rel)) continue;
        this.tracker.touch(rel);
        found = true;
      }
    }
    if (found) this.schedule(KICK_MS);
  }

  private async closeWatcher(): Promise<void> {
    const fsw = this.fsw;
    this.fsw = null;
    this.finishReady?.();
    this.finishReady = null;
    if (!fsw) return;
    try {
      const closing = fsw.close();
      // close() removes every listener, yet chokidar can still emit 'error' from fs calls
      // in flight; with no listener that would crash the process.
      fsw.on('error', () => undefined);
      await closing;
    } catch (err) {
      this.log.debug('closing chokidar failed', { error: describeError(err) });
    }
  }

  private onChokidarError(fsw: FSWatcher, err: unknown): void {
    if (this.stopped || this.fsw !== fsw) return;
    const code = errCode(err);
    const where = (err as { path?: unknown }).path;
    const at = typeof where === 'string' ? where : this.root;
    if ((code === 'EACCES' || code === 'EPERM') && at !== this.root) {
      // A sub-folder we may not read: a restart would hit it again. Its files are skipped.
      this.reportProblem(`perm:${at}`, 'warn', `Permission denied watching ${at} (${code}): files below it are not sent. Give the agent's user read access, or move it out of outbox ${this.root}.`);
      return;
    }
    if (code === 'ENOSPC' || code === 'EMFILE' || code === 'ENFILE') {
      const how =
        code === 'ENOSPC'
          ? "the system limit of file watches is reached; raise it (Linux: sysctl fs.inotify.max_user_watches=524288, persist in /etc/sysctl.d/)"
          : 'too many open files; raise the limit (ulimit -n, or LimitNOFILE= in the systemd unit)';
      this.reportProblem(`limit:${code}`, 'error', `Cannot watch outbox ${this.root}: ${how}. Switching this outbox to polling (slower) meanwhile.`);
      this.usePolling = true;
    } else {
      this.reportProblem(`chokidar:${code}`, 'error', `Watching outbox ${this.root} failed: ${describeError(err)}. Restarting the watcher; check that the folder exists and is readable.`);
    }
    this.restart();
  }

  /** Closes the current chokidar watcher and opens a new one after a backoff. */
  private restart(): void {
    if (this.stopped || this.restartTimer) return;
    void this.closeWatcher().then(() => this.scheduleRestart());
  }

  private scheduleRestart(): void {
    if (this.stopped || this.restartTimer) return;
    const delay = this.backoffMs;
    this.backoffMs = Math.min(this.backoffMs * 2, BACKOFF_MAX_MS);
    this.restartTimer = setTimeout(() => {
      this.restartTimer = null;
      this.openWatcher().catch((err: unknown) => {
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

  // ---- paths ---------------------------------------------------------------------

  /**
   * '/'-separated path of `abs` relative to the root, or null when it is the root or
   * outside it. chokidar hands us normalised paths below the root, so a prefix check
   * answers almost every call; path.relative (slow, and called for every entry chokidar
   * reads) only for anything else.
   */
  private relOf(abs: string): string | null {
    let r: string;
    if (abs.length > this.rootPrefix.length && abs.startsWith(this.rootPrefix) && !abs.includes(`${path.sep}..`)) {
      r = abs.slice(this.rootPrefix.length);
    } else {
      r = path.relative(this.root, abs);
      if (r === '' || r.startsWith('..') || path.isAbsolute(r)) return null;
    }
    return path.sep === '/' ? r : r.split(path.sep).join('/');
  }

  private isIgnoredPath(p: string, stats?: Stats): boolean {
    for (const ig of this.ignore) {
      if (p === ig || p.startsWith(ig + path.sep)) return true;
      // Case-insensitive volumes (Windows, macOS) or odd spellings: the careful check.
      if (CASE_INSENSITIVE_FS || p.includes(`${path.sep}..`)) {
        const r = path.relative(ig, p);
        if (r === '' || (!r.startsWith('..') && !path.isAbsolute(r))) return true;
      }
    }
    const rel = this.relOf(p);
    if (rel === null) return false;
    if (isIgnoredRel(rel)) return true;
    // Globs only decide about files; folders must be entered to find matching files.
    if (stats?.isFile() !== true) return false;
    if (this.accepts(rel)) {
      // chokidar silently drops a file whose owner-read bit is off (mode 000, `_hasReadPermissions`):
      // track it ourselves, so it is reported unreadable and sent once it can be read (issue #10).
      // Number(): chokidar hands BigInt stats on Windows (it compares inodes there).
      if ((Number(stats.mode) & 0o400) === 0 && !this.tracker.has(rel)) {
        this.tracker.touch(rel);
        this.schedule(KICK_MS);
      }
      return false;
    }
    this.noteExcluded(rel);
    return true;
  }

  private noteExcluded(rel: string): void {
    if (this.excluded.size < MAX_EXCLUDED) this.excluded.add(rel);
  }

  /** Files left in this outbox by include/exclude: how many (at most MAX_EXCLUDED counted) and the first few names. */
  excludedFiles(): { count: number; names: string[] } {
    return { count: this.excluded.size, names: [...this.excluded].slice(0, 5) };
  }

  /** Settled files the agent's user may not read: they stay in the outbox until made readable. */
  unreadableFiles(): Array<{ rel: string; abs: string; code: string; fix: string }> {
    const user = agentUser();
    return [...this.unreadable].map(([rel, code]) => ({ rel, abs: this.absOf(rel), code, fix: `make it readable by user ${user} (the agent's user), e.g. chmod a+r` }));
  }

  /** Drops excluded names that no longer exist (they are never reported unlinked: chokidar ignores them). */
  private async pruneExcluded(): Promise<void> {
    if (this.excluded.size === 0) return;
    await mapLimit([...this.excluded], STAT_CONCURRENCY, async (rel) => {
      try {
        const st = await lstat(this.absOf(rel));
        if (!st.isFile()) this.excluded.delete(rel);
      } catch {
        this.excluded.delete(rel);
      }
    });
  }

  private absOf(rel: string): string {
    return path.join(this.root, ...rel.split('/'));
  }

  // ---- poll loop -----------------------------------------------------------------

  /** Runs the poll loop in `delayMs` unless it is already due sooner. */
  private schedule(delayMs: number): void {
    if (this.stopped) return;
    const at = performance.now() + delayMs;
    if (this.timer && this.timerAt <= at) return;
    if (this.timer) clearTimeout(this.timer);
    this.timerAt = at;
    this.timer = setTimeout(() => {
      this.timer = null;
      this.timerAt = Infinity;
      this.runTick();
    }, delayMs);
  }

  private runTick(): void {
    if (this.stopped) return;
    if (this.ticking) {
      this.tickAgain = true;
      return;
    }
    this.ticking = this.tick()
      .catch((err: unknown) => this.log.error(`Outbox poll failed for ${this.root}: ${describeError(err)}; continuing`))
      .finally(() => {
        this.ticking = null;
        if (this.stopped) return;
        if (this.tickAgain) {
          this.tickAgain = false;
          this.schedule(0);
        } else {
          const now = performance.now();
          const wake = Math.min(this.tracker.nextWake(), this.nextBusyRetry(), this.lastRootCheck + ROOT_CHECK_MS);
          this.schedule(Math.min(ROOT_CHECK_MS, Math.max(MIN_TICK_MS, wake - now)));
        }
      });
  }

  private async tick(): Promise<void> {
    if (performance.now() - this.lastRootCheck >= ROOT_CHECK_MS) {
      if (!(await this.checkRoot())) return;
      await this.pruneExcluded();
    }
    if (this.stopped) return;

    const suspects = [...this.suspects];
    this.suspects.clear();
    const toStat = new Set([...this.tracker.toStat(performance.now()), ...suspects]);
    const missing: string[] = [];
    await mapLimit([...toStat], STAT_CONCURRENCY, async (rel) => {
      try {
        const abs = this.absOf(rel);
        const st = this.outbox.followSymlinks === true ? await stat(abs) : await lstat(abs);
        if (this.stopped) return;
        if (st.isSymbolicLink()) {
          await this.skipLink(rel, abs);
          missing.push(rel);
        } else if (!st.isFile()) missing.push(rel);
        else this.tracker.observe(rel, { size: st.size, mtimeMs: st.mtimeMs }, performance.now());
      } catch (err) {
        if (this.stopped) return;
        if (isGoneError(err)) missing.push(rel);
        else this.log.debug('stat failed; retrying', { rel, error: describeError(err) });
      }
    });
    if (this.stopped) return;
    if (missing.length > 0) {
      if (!(await this.checkRoot())) return; // the outbox itself vanished: recovery reconciles
      for (const rel of missing) this.forget(rel);
    }

    const now = performance.now();
    const due = this.tracker.due().filter((d) => (this.busyUntil.get(d.rel) ?? 0) <= now);
    await mapLimit(due, OPEN_CONCURRENCY, async ({ rel, version }) => {
      const abs = this.absOf(rel);
      const check = await this.canOpen(rel, abs, version);
      if (this.stopped) return;
      if (check === 'busy') {
        this.busyUntil.set(rel, performance.now() + this.pollMs);
        return;
      }
      if (check === 'ok' && this.busyUntil.has(rel)) {
        // It was held open until now: its writer may have written more before closing.
        // Emit only the version on disk now, after it settles again.
        const st = await stat(abs).catch(() => null);
        if (this.stopped) return;
        if (st && st.isFile() && (st.size !== version.size || st.mtimeMs !== version.mtimeMs)) {
          this.busyUntil.delete(rel);
          this.tracker.observe(rel, { size: st.size, mtimeMs: st.mtimeMs }, performance.now());
          return;
        }
      }
      this.busyUntil.delete(rel);
      this.busyWarned.delete(rel);
      if (this.unreadable.delete(rel) && check === 'ok') this.log.info(`${abs} is readable now; sending it.`);
      if (check === 'gone') this.forget(rel);
      else if (this.tracker.markEmitted(rel, version)) {
        this.safeEmit('ready', { outbox: this.outbox, rel, abs, size: version.size, mtimeMs: version.mtimeMs });
      }
    });
  }

  /** Symlinks in this outbox that are not sent (followSymlinks off), with their targets. */
  skippedLinks(): Array<{ rel: string; target: string }> {
    return [...this.links].map(([rel, target]) => ({ rel, target }));
  }

  private async skipLink(rel: string, abs: string): Promise<void> {
    if (this.links.has(rel)) return;
    let target = '?';
    try {
      target = await readlink(abs);
    } catch {
      /* vanished meanwhile: the path is enough */
    }
    this.links.set(rel, target);
    this.log.warn(`Skipping symlink ${abs} -> ${target}: links in an outbox are not followed, so nothing outside ${this.root} is read, moved or deleted. Put the file itself in the outbox, or set outboxes[].followSymlinks: true for this outbox.`);
  }

  /**
   * Can the file be opened for reading, and on Windows exclusively? Windows programs
   * (TouchDesigner's Movie File Out TOP, most encoders, Explorer copies) keep a file open
   * while writing it; an open without sharing (UV_FS_O_EXLOCK) then fails with EBUSY, so
   * such a file is still being written and is not sent, however long it stayed the same
   * size (settleMs). POSIX has no such signal: there settling alone decides.
   */
  private async canOpen(rel: string, abs: string, v: FileVersion): Promise<OpenCheck> {
    try {
      // No-follow (unless followSymlinks): a file swapped for a link after it settled is not read either.
      const fh = await open(abs, (this.exclusive ? EXCLUSIVE_READ : fsc.O_RDONLY) | (this.outbox.followSymlinks === true ? 0 : (fsc.O_NOFOLLOW ?? 0)));
      await fh.close();
      return 'ok';
    } catch (err) {
      if (isGoneError(err)) return 'gone';
      const code = errCode(err);
      const key = `${rel}\0${v.size}\0${v.mtimeMs}`;
      if (code === 'EBUSY') {
        if (this.busyWarned.get(rel) !== key) {
          this.busyWarned.set(rel, key);
          this.log.info(`Waiting for ${abs}: another program has it open (still writing it); it is sent once that program closes it.`);
        }
        return 'busy';
      }
      if (code === 'EACCES' || code === 'EPERM') {
        // Warned once per file (not per version): it is listed in /status and /health until readable.
        if (!this.unreadable.has(rel)) {
          this.log.warn(`Cannot read ${abs} (${code}): the agent's user (${agentUser()}) lacks read permission, so it is not sent. Make it readable by user ${agentUser()}; it is sent as soon as it is.`);
        }
        this.unreadable.set(rel, code);
      } else {
        this.log.debug('file not readable yet; retrying', { rel, error: describeError(err) });
      }
      return 'busy';
    }
  }

  /**
   * Detects a deleted or replaced outbox folder, which chokidar does not (see file
   * header), and starts recovery. False when the outbox is not being watched properly.
   */
  private async checkRoot(): Promise<boolean> {
    this.lastRootCheck = performance.now();
    if (!this.fsw || !this.rootId) return false; // not watching: the restart timer is in charge
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
    this.backoffMs = BACKOFF_START_MS;
    this.restart();
    return false;
  }

  private nextBusyRetry(): number {
    let at = Infinity;
    for (const [rel, t] of this.busyUntil) {
      if (this.tracker.has(rel)) at = Math.min(at, t);
      else this.busyUntil.delete(rel);
    }
    return at;
  }

  private forget(rel: string): void {
    this.unreadable.delete(rel);
    this.busyUntil.delete(rel);
    this.busyWarned.delete(rel);
    if (this.tracker.remove(rel)) this.safeEmit('gone', { outbox: this.outbox, rel });
  }

  private safeEmit<K extends keyof OutboxWatcherEvents>(event: K, ...args: OutboxWatcherEvents[K]): void {
    if (this.stopped) return;
    try {
      (this.emit as (e: K, ...a: OutboxWatcherEvents[K]) => boolean)(event, ...args);
    } catch (err) {
      this.log.error(`An outbox '${event}' listener threw: ${describeError(err)}`);
    }
  }
}

/** At most this many excluded files are remembered per outbox (the count saturates there). */
const MAX_EXCLUDED = 1000;

let userName: string | null = null;
/** The user the agent runs as (for "make it readable by user X"). */
function agentUser(): string {
  if (userName === null) {
    try {
      userName = os.userInfo().username;
    } catch {
      userName = typeof process.getuid === 'function' ? `uid ${process.getuid()}` : 'the agent runs as';
    }
  }
  return userName;
}

function errCode(err: unknown): string {
  return codeOf(err) ?? 'UNKNOWN';
}

function isGoneError(err: unknown): boolean {
  const code = errCode(err);
  return code === 'ENOENT' || code === 'ENOTDIR';
}

/** Runs `fn` over `items` with at most `limit` in flight (bounded fs concurrency, no EMFILE). */
async function mapLimit<T>(items: readonly T[], limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const item = items[next++] as T;
      await fn(item);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
}

/**
 * Whether two stats of the outbox root are the same folder. dev + ino identify it; Linux
 * file systems reuse a deleted folder's inode number at once, so there the birth time
 * (statx, real on ext4/xfs/btrfs) tells a re-created folder apart. Not on Windows, where
 * NTFS file IDs carry a sequence number and are not reused, and wine reports birthtime as
 * ctime (it changes whenever a file is added), nor on macOS (APFS does not reuse IDs).
 */
export function sameFolder(
  a: { dev: number; ino: number; birthtimeMs: number },
  b: { dev: number; ino: number; birthtimeMs: number },
  platform: NodeJS.Platform = process.platform,
): boolean {
  if (a.dev !== b.dev || a.ino !== b.ino) return false;
  return platform !== 'linux' || a.birthtimeMs === b.birthtimeMs;
}
