/**
 * PURE: the bounded admission window between the outbox watchers and the job queues
 * (issue #12). A settled outbox file becomes a record with jobs (dispatch.ts) only while
 * fewer than `window` records are in flight; the others wait here, oldest first, as the
 * ReadyFile the watcher emitted and nothing more. A backlog of 100,000 files waiting at
 * start then costs one small entry per file instead of a record, jobs, promises and
 * queue slots per file (a heap snapshot of the 20,000-file backlog: ~3.6 KiB per file).
 *
 * Invariants:
 * - Nothing is dropped: a file leaves only by `take` (admitted), `remove` (it went away
 *   from its outbox) or a newer version replacing it (`offer` of the same key).
 * - FIFO over all outboxes, in the order files were first offered; a newer version of a
 *   waiting file keeps its place.
 * - `count(outbox)` is exact at all times (the status API adds it to what is queued).
 */
import type { OutboxConfig } from '../config/types.js';
import type { ReadyFile } from '../outbox/index.js';
import type { PeerInfo } from '../types.js';
import { resolveRoutes } from '../routing.js';
import { waitingDestination, type DispatchContext } from './dispatch.js';

/** Records in flight at most (each holds its jobs); the rest of a backlog waits as names. */
export const ADMIT_WINDOW = 1000;

export class AdmissionQueue {
  /** Waiting files by record key, in arrival order (Map keeps insertion order). */
  private readonly waiting = new Map<string, ReadyFile>();
  private readonly perOutbox = new Map<OutboxConfig, number>();

  get size(): number {
    return this.waiting.size;
  }

  has(key: string): boolean {
    return this.waiting.has(key);
  }

  /** The waiting version of `key`, if any. */
  get(key: string): ReadyFile | undefined {
    return this.waiting.get(key);
  }

  /** Files of `outbox` waiting for admission. */
  count(outbox: OutboxConfig): number {
    return this.perOutbox.get(outbox) ?? 0;
  }

  /** Outboxes with waiting files and how many each. */
  counts(): IterableIterator<[OutboxConfig, number]> {
    return this.perOutbox.entries();
  }

  /** Adds a file (or replaces the waiting version of the same key, keeping its place). */
  offer(key: string, file: ReadyFile): void {
    const old = this.waiting.get(key);
    if (old) this.bump(old.outbox, -1);
    this.waiting.set(key, file);
    this.bump(file.outbox, 1);
  }

  /** Drops the waiting file of `key`; returns it, or undefined when none waited. */
  remove(key: string): ReadyFile | undefined {
    const f = this.waiting.get(key);
    if (!f) return undefined;
    this.waiting.delete(key);
    this.bump(f.outbox, -1);
    return f;
  }

  /** The oldest waiting file, removed from the queue; undefined when empty. */
  take(): ReadyFile | undefined {
    for (const [key, f] of this.waiting) {
      this.waiting.delete(key);
      this.bump(f.outbox, -1);
      return f;
    }
    return undefined;
  }

  /** Forgets everything (stop). */
  clear(): void {
    this.waiting.clear();
    this.perOutbox.clear();
  }

  private bump(ob: OutboxConfig, by: number): void {
    const n = (this.perOutbox.get(ob) ?? 0) + by;
    if (n > 0) this.perOutbox.set(ob, n);
    else this.perOutbox.delete(ob);
  }
}

export interface WaitingCount {
  peer: string;
  inbox: string | null;
  files: number;
}

/**
 * Files waiting for admission, counted per destination key as their jobs will be (the
 * routes each outbox resolves to now, named peers not known yet included), so that the
 * status API's `queues[].queued` counts a whole backlog, not only the admitted part.
 */
export function waitingByDestination(counts: Iterable<[OutboxConfig, number]>, peers: readonly PeerInfo[], ctx: DispatchContext): Map<string, WaitingCount> {
  const out = new Map<string, WaitingCount>();
  for (const [ob, n] of counts) {
    const { destinations, waiting } = resolveRoutes(ob.to, peers, ctx);
    for (const wr of waiting) {
      if (wr.route.peer !== '*') destinations.push(waitingDestination(wr.route.peer, wr.route.inbox ?? null, wr.route.flatten ?? false));
    }
    for (const d of destinations) {
      const c = out.get(d.key);
      if (c) c.files += n;
      else out.set(d.key, { peer: d.peer, inbox: d.inbox, files: n });
    }
  }
  return out;
}
