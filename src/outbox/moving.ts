/**
 * The files an outbox's after-actions are moving or deleting right now (issue #12): the
 * watch's event about such a move is taken as the file gone without a stat (one file call
 * and one error less per sent file), and an unlink the poll loop hears meanwhile is held
 * back until the after-action says whether it moved the file.
 *
 * Nothing is lost when a move does not happen or a new file appears under the same name:
 * the event's folder is re-read (names only) by the watch anyway, and an unlink held back
 * is checked (stat) when the after-action ends without moving the file.
 */
import { performance } from 'node:perf_hooks';

/** How long an after-action's move counts as just done for the watch's event about it. */
const MOVED_MS = 2000;

export class MovingFiles {
  /** abs → when its move was announced; oldest first. */
  readonly #moved = new Map<string, number>();
  /** rel → whether an unlink was reported while its after-action ran. */
  readonly #running = new Map<string, boolean>();

  /** The after-action is about to move or delete `rel` (at `abs`). */
  start(rel: string, abs: string): void {
    this.#running.set(rel, false);
    const now = performance.now();
    this.#moved.delete(abs); // to the end: the map's order is the order of expiry
    this.#moved.set(abs, now);
    // Marks no event consumed (the move failed, events were lost) expire, oldest first.
    for (const [a, at] of this.#moved) {
      if (at >= now - MOVED_MS) break;
      this.#moved.delete(a);
    }
  }

  /** The after-action of `rel` ended; true when an unlink was held back meanwhile (check it now, unless it moved the file). */
  end(rel: string): boolean {
    const unlinked = this.#running.get(rel) === true;
    this.#running.delete(rel);
    return unlinked;
  }

  /** An unlink of `rel` was reported: true when it is held back (its after-action runs). */
  holdUnlink(rel: string): boolean {
    if (!this.#running.has(rel)) return false;
    this.#running.set(rel, true);
    return true;
  }

  /** The watch's question: did an after-action just move `abs` away? Answered once. */
  movedAway(abs: string): boolean {
    const at = this.#moved.get(abs);
    if (at === undefined) return false;
    this.#moved.delete(abs);
    return at >= performance.now() - MOVED_MS;
  }
}
