/**
 * PURE: decides when a file in an outbox has finished being written ("settled").
 *
 * The watcher feeds it what it sees — "something happened to rel" (`touch`) and
 * re-stat results (`observe(rel, {size, mtimeMs}, now)`) — and asks which files are
 * `due`. No timers, no I/O: the clock is the `now` argument.
 *
 * Invariants:
 * - A version (size, mtimeMs) is due only after it was observed unchanged for at least
 *   `settleMs`: first seen at `since`, seen again (same version) at `seen` with
 *   `seen - since >= settleMs` (one observation when `settleMs` is 0). Any change of
 *   size or mtime restarts the wait, so a file written in bursts with pauses shorter
 *   than `settleMs` is due once, complete. The file's own mtime is never trusted as
 *   "old enough": copies keep the source mtime while they are still being written.
 * - A pending file is re-stat'ed every `pollMs` and exactly at `since + settleMs`, not
 *   on every poll: a burst of events for thousands of files costs each file a stat per
 *   `pollMs`, not one per loop turn.
 * - With more than CROWD_FILES pending (a backlog found at start), the re-stats every
 *   `pollMs` in between are skipped: each file is stat'ed when first seen, on events
 *   (`touch`), and at `since + settleMs`; the rule above is unchanged (a change in between
 *   is seen then and restarts the wait), only noticed later. 20,000 waiting files cost 2
 *   stats each instead of ~5 (issue #12).
 * - Empty files follow the same rule (stable-empty for `settleMs`).
 * - Each version is reported once (`markEmitted`); the same rel with a different
 *   version becomes pending again, whether or not the old one was released.
 * - Work per poll is proportional to the active (pending or touched) files, not to every
 *   file ever seen.
 */

export interface FileVersion {
  size: number;
  mtimeMs: number;
}

export function sameVersion(a: FileVersion, b: FileVersion): boolean {
  return a.size === b.size && a.mtimeMs === b.mtimeMs;
}

interface Entry {
  /** Last observed version not yet emitted, since when it has been unchanged, and when it was last observed. */
  pending: (FileVersion & { since: number; seen: number }) | null;
  /** An event arrived since the last observation: stat it on the next poll. */
  touched: boolean;
  emitted: FileVersion | null;
  /** The agent has finished with `emitted` (see OutboxWatcher.release). */
  released: boolean;
}

/** Above this many pending files, pending files are re-stat'ed only when they would be due. */
export const CROWD_FILES = 2000;

export interface DueFile {
  rel: string;
  version: FileVersion;
}

export class SettleTracker {
  readonly settleMs: number;
  readonly pollMs: number;
  private readonly entries = new Map<string, Entry>();
  /** rels whose entry is pending or touched: the only ones a poll looks at. */
  private readonly active = new Set<string>();

  /** `pollMs`: re-stat interval for pending files; default min(250, settleMs), at least 1. */
  constructor(settleMs: number, pollMs?: number) {
    if (!Number.isFinite(settleMs) || settleMs < 0) throw new RangeError(`settleMs must be a number >= 0, got ${String(settleMs)}`);
    if (pollMs !== undefined && !(pollMs > 0)) throw new RangeError(`pollMs must be a number > 0, got ${String(pollMs)}`);
    this.settleMs = settleMs;
    this.pollMs = pollMs ?? Math.max(1, Math.min(250, settleMs));
  }

  /** Files seen but not yet settled (or not yet stat'ed). */
  get pendingCount(): number {
    return this.active.size;
  }

  /** Every rel the tracker knows (pending, touched or emitted). */
  known(): IterableIterator<string> {
    return this.entries.keys();
  }

  has(rel: string): boolean {
    return this.entries.has(rel);
  }

  /** A watcher event (add/change) for `rel`: it will be in the next `toStat()`. */
  touch(rel: string): void {
    const e = this.entries.get(rel);
    if (e) e.touched = true;
    else this.entries.set(rel, { pending: null, touched: true, emitted: null, released: false });
    this.active.add(rel);
  }

  /** When a pending entry next needs a stat: at the next poll, or when it would be due if unchanged. */
  private nextStatAt(p: { since: number; seen: number }): number {
    if (this.active.size > CROWD_FILES) return p.since + this.settleMs;
    return Math.min(p.seen + this.pollMs, p.since + this.settleMs);
  }

  /** rels the watcher should stat at `now`: touched ones, and pending ones whose next check has come. */
  toStat(now: number): string[] {
    const out: string[] = [];
    for (const rel of this.active) {
      const e = this.entries.get(rel);
      if (!e) continue;
      if (e.touched || !e.pending || this.nextStatAt(e.pending) <= now) out.push(rel);
    }
    return out;
  }

  /** Earliest time a pending entry needs a stat (Infinity when none; `now`-ish when some are touched). */
  nextWake(): number {
    let at = Infinity;
    for (const rel of this.active) {
      const e = this.entries.get(rel);
      if (!e) continue;
      if (e.touched || !e.pending) return -Infinity;
      at = Math.min(at, this.nextStatAt(e.pending));
    }
    return at;
  }

  /** A stat result for `rel` at time `now`. */
  observe(rel: string, v: FileVersion, now: number): void {
    let e = this.entries.get(rel);
    if (!e) {
      e = { pending: null, touched: false, emitted: null, released: false };
      this.entries.set(rel, e);
    }
    e.touched = false;
    if (e.pending && sameVersion(e.pending, v)) {
      e.pending.seen = Math.max(e.pending.seen, now); // unchanged: keep `since`
    } else if (e.emitted && sameVersion(e.emitted, v)) {
      e.pending = null; // an event without a content change (touch, chmod, atomic save of same bytes+mtime)
    } else {
      e.pending = { size: v.size, mtimeMs: v.mtimeMs, since: now, seen: now };
    }
    if (e.pending) this.active.add(rel);
    else this.active.delete(rel);
  }

  /** Pending versions observed unchanged over at least `settleMs`. A touched file needs a fresh stat first. */
  due(): DueFile[] {
    const out: DueFile[] = [];
    for (const rel of this.active) {
      const e = this.entries.get(rel);
      if (!e || e.touched || !e.pending) continue;
      if (e.pending.seen - e.pending.since >= this.settleMs) out.push({ rel, version: { size: e.pending.size, mtimeMs: e.pending.mtimeMs } });
    }
    return out;
  }

  /** `version` of `rel` was handed to the agent. False (and nothing changes) when it is no longer the pending version. */
  markEmitted(rel: string, version: FileVersion): boolean {
    const e = this.entries.get(rel);
    if (!e || !e.pending || !sameVersion(e.pending, version)) return false;
    e.pending = null;
    e.emitted = { size: version.size, mtimeMs: version.mtimeMs };
    e.released = false;
    if (!e.touched) this.active.delete(rel);
    return true;
  }

  /** The agent is done with the emitted version of `rel`: its disappearance is no longer news. */
  release(rel: string): void {
    const e = this.entries.get(rel);
    if (!e) return;
    // The entry stays while the file exists, so the same version is not emitted again.
    e.released = true;
  }

  /**
   * The agent moved or deleted the released version of `rel` itself (after-action): the
   * entry is dropped unless something newer was seen meanwhile (pending or touched, kept).
   * Its own unlink event then needs no stat to be told apart. True when dropped.
   */
  forgetReleased(rel: string): boolean {
    const e = this.entries.get(rel);
    if (!e || !e.released || e.pending !== null || e.touched) return false;
    this.entries.delete(rel);
    this.active.delete(rel);
    return true;
  }

  /**
   * `rel` no longer exists (unlink, or stat said ENOENT/not a file). Returns true when
   * the agent should hear about it: it was pending, touched, or emitted and not released.
   */
  remove(rel: string): boolean {
    const e = this.entries.get(rel);
    if (!e) return false;
    this.entries.delete(rel);
    this.active.delete(rel);
    return e.pending !== null || e.touched || (e.emitted !== null && !e.released);
  }
}
