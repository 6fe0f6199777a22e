/**
 * PURE: the bounded admission window between the outbox watchers and the job queues
 * (issue #12). A settled outbox file becomes a record with jobs (dispatch.ts) only while
 * fewer than `window` records are in flight; the others wait here as their name and
 * version (size, mtime) under their outbox, nothing more (the absolute path is made again
 * on admission). A backlog of 100,000 files waiting at start then costs one small entry per
 * file instead of a record, jobs, promises and queue slots per file (a heap snapshot of the
 * 20,000-file backlog: ~3.6 KiB per file before, live heap 73 → 36 MB).
 *
 * Invariants:
 * - Nothing is dropped: a file leaves only by `take` (admitted), `remove` (it went away
 *   from its outbox) or a newer version replacing it (`offer` of the same rel).
 * - Oldest first within an outbox; outboxes with waiting files take turns. A newer version
 *   of a waiting file keeps its place.
 * - `count(outbox)` is exact at all times (the status API adds it to what is queued).
 */
import type { OutboxConfig } from '../config/types.js';
import type { PeerInfo } from '../types.js';
import { resolveRoutes } from '../routing.js';
import { waitingDestination, type DispatchContext } from './dispatch.js';

/** Records in flight at most (each holds its jobs); the rest of a backlog waits as names. */
export const ADMIT_WINDOW = 1000;

/** A waiting file: what the watcher emitted, without its absolute path. */
export interface WaitingFile {
  outbox: OutboxConfig;
  rel: string;
  size: number;
  mtimeMs: number;
}

interface Version {
  size: number;
  mtimeMs: number;
}

export class AdmissionQueue {
  /** Waiting files per outbox, by rel, in arrival order (Map keeps insertion order). */
  private readonly waiting = new Map<OutboxConfig, Map<string, Version>>();
  private total = 0;

  get size(): number {
    return this.total;
  }

  has(outbox: OutboxConfig, rel: string): boolean {
    return this.waiting.get(outbox)?.has(rel) ?? false;
  }

  /** Files of `outbox` waiting for admission. */
  count(outbox: OutboxConfig): number {
    return this.waiting.get(outbox)?.size ?? 0;
  }

  /** Outboxes with waiting files and how many each. */
  *counts(): IterableIterator<[OutboxConfig, number]> {
    for (const [ob, m] of this.waiting) yield [ob, m.size];
  }

  /** Adds a file (or replaces the waiting version of the same rel, keeping its place). */
  offer(f: WaitingFile): void {
    let m = this.waiting.get(f.outbox);
    if (!m) {
      m = new Map();
      this.waiting.set(f.outbox, m);
    }
    const old = m.get(f.rel);
    if (old) {
      old.size = f.size;
      old.mtimeMs = f.mtimeMs;
      return;
    }
    m.set(f.rel, { size: f.size, mtimeMs: f.mtimeMs });
    this.total++;
  }

  /** Drops the waiting file `rel` of `outbox`; true when it waited. */
  remove(outbox: OutboxConfig, rel: string): boolean {
    const m = this.waiting.get(outbox);
    if (!m?.delete(rel)) return false;
    this.total--;
    if (m.size === 0) this.waiting.delete(outbox);
    return true;
  }

  /** The oldest waiting file of the next outbox in turn, removed from the queue; undefined when empty. */
  take(): WaitingFile | undefined {
    for (const [outbox, m] of this.waiting) {
      this.waiting.delete(outbox);
      for (const [rel, v] of m) {
        m.delete(rel);
        this.total--;
        if (m.size > 0) this.waiting.set(outbox, m); // to the end: the next outbox's turn
        return { outbox, rel, size: v.size, mtimeMs: v.mtimeMs };
      }
    }
    return undefined;
  }

  /** Forgets everything (stop). */
  clear(): void {
    this.waiting.clear();
    this.total = 0;
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
