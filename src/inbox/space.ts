/**
 * Free space on the staging volume for admitting incoming files. One statfs serves a
 * burst of files: a reading is reused for up to `ttlMs`, minus what was admitted since,
 * and read afresh when that estimate comes within `marginBytes` of what is needed (or is
 * stale), so a refusal is always based on a fresh reading. Other programs filling the
 * disk meanwhile are caught by the write itself (ENOSPC -> NO_SPACE). The reader and the
 * clock are injected (default: fsutil freeBytes and performance.now), so the rule is
 * unit-tested without a disk.
 */
import { freeBytes } from '../fsutil.js';

export const FREE_SPACE_TTL_MS = 1000;
export const FREE_SPACE_MARGIN = 256 * 1024 * 1024;

export interface FreeSpaceOptions {
  /** Free bytes of the volume holding `dir`, or null when unknown. */
  read?: (dir: string) => Promise<number | null>;
  /** A monotonic clock, ms. */
  now?: () => number;
  ttlMs?: number;
  marginBytes?: number;
}

export class FreeSpace {
  readonly #read: (dir: string) => Promise<number | null>;
  readonly #now: () => number;
  readonly #ttlMs: number;
  readonly #margin: number;
  /** Last reading, and #admitted at that moment. */
  #reading: { at: number; bytes: number | null; admitted: number } | null = null;
  /** Bytes admitted so far. */
  #admitted = 0;

  constructor(o: FreeSpaceOptions = {}) {
    this.#read = o.read ?? freeBytes;
    this.#now = o.now ?? (() => performance.now());
    this.#ttlMs = o.ttlMs ?? FREE_SPACE_TTL_MS;
    this.#margin = o.marginBytes ?? FREE_SPACE_MARGIN;
  }

  /** Free bytes in `dir`'s volume, as far as they matter for `needed` more (null: unknown). */
  async free(dir: string, needed: number): Promise<number | null> {
    const r = this.#reading;
    if (r && r.bytes !== null && this.#now() - r.at < this.#ttlMs) {
      const estimate = r.bytes - (this.#admitted - r.admitted);
      if (estimate > needed + this.#margin) return estimate;
    }
    const admitted = this.#admitted;
    const bytes = await this.#read(dir);
    this.#reading = { at: this.#now(), bytes, admitted };
    return bytes;
  }

  /** A file was admitted that will write `bytes` more. */
  admit(bytes: number): void {
    this.#admitted += bytes;
  }
}
