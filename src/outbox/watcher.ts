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
 * Layout: this file is the poll/settle loop. chokidar sits behind chokidar.ts; keeping
 * it alive (restarts, a deleted or replaced root, errors) is supervisor.ts; the pure
 * rules (paths, root identity, what an error means) are watch-rules.ts, settling is
 * settle.ts, include/exclude is filters.ts.
 */
import { EventEmitter } from 'node:events';
import type { Stats } from 'node:fs';
import { lstat, stat } from 'node:fs/promises';
import { performance } from 'node:perf_hooks';
import type { OutboxConfig } from '../config/types.js';
import { describeError } from '../errors.js';
import { isIgnoredRel, makeOutboxFilter } from '../filters.js';
import type { Logger } from '../log.js';
import { FileAccess } from './access.js';
import { SettleTracker } from './settle.js';
import { ROOT_CHECK_MS, WatchSupervisor } from './supervisor.js';
import { OutboxPaths, isGoneError } from './watch-rules.js';
import { forEachLimit } from '../concurrency.js';
import type { QuickFs } from '../quickfs.js';
import { MovingFiles } from './moving.js';

export { sameFolder } from './watch-rules.js';
export { UV_FS_O_EXLOCK } from './access.js';

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
  /** Quick (synchronous) stats and open checks while the outbox's volume is local and fast (quickfs.ts). */
  quick?: QuickFs;
}

/** Delay that batches a burst of chokidar events into one poll. */
const KICK_MS = 15;
/** Shortest gap between two poll-loop turns. */
const MIN_TICK_MS = 10;
const STAT_CONCURRENCY = 64;
const OPEN_CONCURRENCY = 32;

export class OutboxWatcher extends EventEmitter<OutboxWatcherEvents> {
  readonly outbox: OutboxConfig;
  readonly root: string;
  private readonly paths: OutboxPaths;
  private readonly log: Logger;
  private readonly pollMs: number;
  private readonly supervisor: WatchSupervisor;
  private readonly tracker: SettleTracker;
  private readonly accepts: (rel: string) => boolean;
  private readonly quick: QuickFs | undefined;
  private readonly usePolling: boolean;

  private stopped = true;
  private timer: NodeJS.Timeout | null = null;
  private timerAt = Infinity;
  private ticking: Promise<void> | null = null;
  private tickAgain = false;
  /** Open checks, unreadable files and skipped links (access.ts). */
  private readonly access: FileAccess;
  /** Files left out by include/exclude (seen by chokidar's filter), bounded; pruned on root checks. */
  private readonly excluded = new Set<string>();
  /** Due files whose open failed (Windows: still held by the writer): not retried before this time. */
  private readonly busyUntil = new Map<string, number>();
  /** rels chokidar reported unlinked: checked on the next poll. */
  private readonly suspects = new Set<string>();
  /** Files the after-actions are moving now (moving.ts). */
  private readonly movingFiles = new MovingFiles();

  constructor(outbox: OutboxConfig, opts: OutboxWatcherOptions) {
    super();
    this.outbox = outbox;
    this.paths = new OutboxPaths(outbox.path, opts.ignore);
    this.root = this.paths.root;
    this.log = opts.log.child({ component: 'outbox', outbox: this.root });
    this.pollMs = Math.max(10, opts.pollMs ?? Math.min(250, outbox.settleMs));
    this.tracker = new SettleTracker(outbox.settleMs, this.pollMs);
    this.accepts = makeOutboxFilter(outbox);
    this.quick = opts.quick;
    this.usePolling = opts.usePolling ?? false;
    this.access = new FileAccess(this.root, this.log, outbox.followSymlinks === true, opts.quick);
    this.supervisor = new WatchSupervisor(
      { root: this.root, log: this.log, followSymlinks: outbox.followSymlinks === true, usePolling: opts.usePolling ?? false },
      {
        ignored: (p, st) => this.isIgnoredPath(p, st),
        file: (p, st) => this.onFile(p, st),
        unlink: (p) => this.onUnlink(p),
        unlinkDir: (p) => this.onUnlinkDir(p),
        found: (abs) => this.onFound(abs),
        scanned: (seen) => {
          for (const rel of [...this.tracker.known()]) if (!seen.has(rel)) this.forget(rel);
        },
        kick: () => this.schedule(KICK_MS),
        movedAway: (abs) => this.movingFiles.movedAway(abs),
      },
    );
  }

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
    // A watch that polls is for network shares: their calls stay on the thread pool.
    await this.quick?.addRoot(this.root, { never: this.usePolling || this.outbox.networkDrive === true });
    this.schedule(0);
    await this.supervisor.start();
  }

  /** Closes chokidar and all timers; no event after it resolves. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.quick?.removeRoot(this.root);
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    this.timerAt = Infinity;
    await this.supervisor.stop();
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

  /**
   * The after-action moved or deleted the released version of `rel` (see release): it is
   * forgotten now, unless a newer version was seen meanwhile, so the unlink event of that
   * move costs no stat (issue #12: one file call less per sent file).
   */
  afterActionDone(rel: string): void {
    this.movingFiles.end(rel);
    if (this.tracker.forgetReleased(rel)) {
      this.access.forget(rel);
      this.busyUntil.delete(rel);
    }
  }

  /**
   * The after-action is about to move or delete the released `rel`: the watch's event about
   * that takes it as gone without a stat (issue #12: one file call and one error less per
   * sent file). Nothing is lost when the move does not happen: the event still reaches the
   * poll loop, which stats what it tracks, and the folder's re-read finds the name again.
   */
  moving(rel: string): void {
    this.movingFiles.start(rel, this.absOf(rel));
  }

  /**
   * The after-action that moving() announced ended without moving or deleting `rel` (kept,
   * changed, missing, failed): an unlink reported meanwhile is checked now, as it would have been.
   */
  movingEnded(rel: string): void {
    if (this.movingFiles.end(rel) && this.tracker.has(rel)) {
      this.suspects.add(rel);
      this.schedule(KICK_MS);
    }
  }

  // ---- events from the supervised chokidar watch --------------------------------

  private onFile(p: string, st: Stats | undefined): string | null {
    const rel = this.paths.relOf(p);
    if (rel === null) return null;
    if (!this.accepts(rel)) {
      this.noteExcluded(rel);
      return null;
    }
    // chokidar's own stat (taken just before the event) serves as the first
    // observation: it can only be older than now, which only delays settling.
    if (st?.isFile()) this.tracker.observe(rel, { size: st.size, mtimeMs: st.mtimeMs }, performance.now());
    else this.tracker.touch(rel);
    this.schedule(KICK_MS);
    return rel;
  }

  // Unlinks are verified by the poll loop before anyone hears `gone`: when the whole
  // outbox vanished (share dropped, folder moved away) the files are not gone, the
  // watcher restarts, and what is still there after the rescan is not emitted again.
  private onUnlink(p: string): void {
    const rel = this.paths.relOf(p);
    if (rel !== null) this.access.unlinked(rel);
    if (rel === null || !this.tracker.has(rel)) return;
    // Most likely the after-action's own move: afterActionDone() forgets the file, movingEnded() checks it.
    if (this.movingFiles.holdUnlink(rel)) return;
    this.suspects.add(rel);
    this.schedule(KICK_MS);
  }

  private onUnlinkDir(p: string): void {
    const rel = this.paths.relOf(p);
    if (rel === null) return;
    const prefix = rel + '/';
    for (const r of this.tracker.known()) if (r.startsWith(prefix)) this.suspects.add(r);
    this.schedule(KICK_MS);
  }

  /** A file found by re-reading a new folder (supervisor.ts rescan). */
  private onFound(abs: string): boolean {
    const rel = this.paths.relOf(abs);
    if (rel === null || !this.accepts(rel) || this.tracker.has(rel)) return false;
    this.tracker.touch(rel);
    return true;
  }

  // ---- paths ---------------------------------------------------------------------

  private isIgnoredPath(p: string, stats?: Stats): boolean {
    if (this.paths.inIgnoredFolder(p)) return true;
    const rel = this.paths.relOf(p);
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
    return this.access.unreadableFiles((rel) => this.absOf(rel));
  }


  /** Drops excluded names that no longer exist (they are never reported unlinked: chokidar ignores them). */
  private async pruneExcluded(): Promise<void> {
    if (this.excluded.size === 0) return;
    await forEachLimit([...this.excluded], STAT_CONCURRENCY, async (rel) => {
      try {
        const st = await lstat(this.absOf(rel));
        if (!st.isFile()) this.excluded.delete(rel);
      } catch {
        this.excluded.delete(rel);
      }
    });
  }

  /** The absolute path of `rel` in this outbox. */
  absOf(rel: string): string {
    return this.paths.absOf(rel);
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
          const wake = Math.min(this.tracker.nextWake(), this.nextBusyRetry(), this.supervisor.nextRootCheck);
          this.schedule(Math.min(ROOT_CHECK_MS, Math.max(MIN_TICK_MS, wake - now)));
        }
      });
  }

  private async tick(): Promise<void> {
    if (performance.now() >= this.supervisor.nextRootCheck) {
      if (!(await this.supervisor.checkRoot())) return;
      await this.pruneExcluded();
    }
    if (this.stopped) return;

    const suspects = [...this.suspects];
    this.suspects.clear();
    const toStat = new Set([...this.tracker.toStat(performance.now()), ...suspects]);
    const missing: string[] = [];
    await forEachLimit([...toStat], STAT_CONCURRENCY, async (rel) => {
      try {
        const abs = this.absOf(rel);
        const st = this.quick
          ? await (this.outbox.followSymlinks === true ? this.quick.stat(abs) : this.quick.lstat(abs))
          : this.outbox.followSymlinks === true ? await stat(abs) : await lstat(abs);
        if (this.stopped) return;
        if (st.isSymbolicLink()) {
          await this.access.skipLink(rel, abs);
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
      if (!(await this.supervisor.checkRoot())) return; // the outbox itself vanished: recovery reconciles
      for (const rel of missing) this.forget(rel);
    }

    const now = performance.now();
    const due = this.tracker.due().filter((d) => (this.busyUntil.get(d.rel) ?? 0) <= now);
    await forEachLimit(due, OPEN_CONCURRENCY, async ({ rel, version }) => {
      const abs = this.absOf(rel);
      const check = await this.access.canOpen(rel, abs, version);
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
      this.access.settled(rel, abs, check);
      if (check === 'gone') this.forget(rel);
      else if (this.tracker.markEmitted(rel, version)) {
        this.safeEmit('ready', { outbox: this.outbox, rel, abs, size: version.size, mtimeMs: version.mtimeMs });
      }
    });
  }

  /** Symlinks in this outbox that are not sent (followSymlinks off), with their targets. */
  skippedLinks(): Array<{ rel: string; target: string }> {
    return this.access.skippedLinks();
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
    this.access.forget(rel);
    this.busyUntil.delete(rel);
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

/** Runs `fn` over `items` with at most `limit` in flight (bounded fs concurrency, no EMFILE). */
