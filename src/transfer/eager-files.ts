/**
 * Small files sent eager (PROTOCOL.md 6.4), held whole in memory: read once and hashed
 * once per algorithm for every destination (fan-out, issue #19), within one agent-wide
 * byte budget instead of one per connection.
 *
 * A connection prefetches the files it will send (before waiting for its turn on the
 * wire, so reads overlap with sending) when the budget has room, and holds a file only
 * while it writes it. So a dead or slow destination holds at most the file it is writing;
 * a file no destination holds stays cached (others are likely to send it next) until
 * its room is needed (least recently used first, files already sent before files only
 * prefetched) or it was unused for IDLE_MS (UNSENT_MS if never sent), unless the last
 * destination expected has sent it (#dropIfDone). A destination that comes after the file
 * left reads it again: it catches up on its own.
 */
import { createFileHash, type HashAlg } from '../hash.js';
import { readWhole, type SendStats, type SourceFile } from './source-file.js';
import type { QuickFs } from '../quickfs.js';

/** A file sent and not used since for this long leaves the cache. */
const IDLE_MS = 3000;
/** A file prefetched and never sent (its job waits behind others, or was cancelled): longer. */
const UNSENT_MS = 60_000;

interface Entry {
  key: string;
  /** Bytes charged to the budget: the buffer's (a size class). */
  size: number;
  buf: Buffer;
  /** Digests being computed: the buffer is not reused before they are done. */
  hashing: number;
  data: Promise<Buffer>;
  /** Each algorithm computed once, for every holder. */
  digests: Map<HashAlg, Promise<string>>;
  refs: number;
  /** Held (sent) at least once: evicted before files only prefetched. */
  used: boolean;
  settled: boolean;
  lastUse: number;
  /** prefetch() calls that found or made it, and hold() calls: destinations announced, and those that came. */
  wanted: number;
  holds: number;
  /** The last destination expected held it: dropped once every one announced has held and released it. */
  last: boolean;
}

/** A file held for sending: its bytes and digests; release() once the socket wrote them (its buffer is reused). */
export interface EagerHold {
  data: Buffer;
  digest(alg: HashAlg): Promise<string>;
  release(): void;
}

export class EagerFiles {
  readonly #entries = new Map<string, Entry>();
  #used = 0;
  #waiters: Array<() => void> = [];
  #sweep: NodeJS.Timeout | null = null;
  /** Free buffers by size class, for the next files. */
  readonly #spare = new Map<number, Buffer[]>();
  #spareBytes = 0;

  constructor(
    /** Bytes of small files held at once, agent-wide. A file larger than the whole budget still goes, alone. */
    readonly budget: number,
    private readonly stats: SendStats,
    /** Quick (synchronous) reads of files below a local outbox (quickfs.ts). */
    private readonly quick?: QuickFs,
  ) {}

  /** Bytes held now. */
  get used(): number {
    return this.#used;
  }

  /** Starts reading (and hashing in `alg`) `file` if the budget has room now (never waits, never evicts). */
  prefetch(file: SourceFile, alg: HashAlg): void {
    const key = keyOf(file);
    let e = this.#entries.get(key);
    if (e) e.lastUse = Date.now();
    else if (this.#used + file.size <= this.budget) e = this.#add(key, file);
    else return;
    const entry = e;
    entry.wanted++;
    if (!entry.digests.has(alg)) entry.data.then((d) => this.#digest(entry, d, alg)).catch(() => undefined); // a failed read is reported by hold()
  }

  /**
   * The file's bytes, held until release(): read now unless cached; waits for room in the
   * budget. `last`: no other destination is expected for this version (SendSources.arrived()):
   * once every destination that prefetched it has held and released it, it leaves the cache
   * at once instead of after IDLE_MS.
   */
  async hold(file: SourceFile, last = false): Promise<EagerHold> {
    const key = keyOf(file);
    let e = this.#entries.get(key);
    while (!e) {
      if (this.#makeRoom(file.size)) e = this.#add(key, file);
      else {
        await new Promise<void>((r) => this.#waiters.push(r));
        e = this.#entries.get(key);
      }
    }
    e.refs++;
    e.holds++;
    if (last) e.last = true;
    e.used = true;
    e.lastUse = Date.now();
    this.#entries.delete(key); // to the end: the map's order is the eviction order
    this.#entries.set(key, e);
    const entry = e;
    let released = false;
    const release = (): void => {
      if (released) return;
      released = true;
      entry.refs--;
      entry.lastUse = Date.now();
      this.#dropIfDone(entry);
      this.#wake();
    };
    let data: Buffer;
    try {
      data = await entry.data;
    } catch (err) {
      release();
      throw err;
    }
    return {
      data,
      release,
      digest: (alg) => this.#digest(entry, data, alg),
    };
  }

  /** The file's digest in `alg`, computed once for every holder. */
  #digest(entry: Entry, data: Buffer, alg: HashAlg): Promise<string> {
    let d = entry.digests.get(alg);
    if (d === undefined) {
      entry.hashing++;
      d = createFileHash(alg)
        .then((h) => {
          h.update(data);
          this.stats.hashed += data.length;
          return h.digest();
        })
        .finally(() => {
          entry.hashing--;
          this.#dropIfDone(entry);
          this.#wake();
        });
      entry.digests.set(alg, d);
    }
    return d;
  }

  /** Forgets every file no one holds (stop). */
  clear(): void {
    for (const e of [...this.#entries.values()]) if (e.refs === 0 && e.settled) this.#remove(e);
  }

  #add(key: string, file: SourceFile): Entry {
    const buf = this.#buffer(classOf(file.size));
    const e: Entry = { key, size: buf.length, buf, hashing: 0, data: readWhole(file, this.stats, buf, this.quick), digests: new Map(), refs: 0, used: false, settled: false, lastUse: Date.now(), wanted: 0, holds: 0, last: false };
    this.#entries.set(key, e);
    this.#used += e.size;
    e.data.then(
      () => {
        e.settled = true;
        this.#wake(); // evictable now: a hold waiting for room looks again
      },
      () => {
        // A failed read (changed, vanished, EIO) is not cached: the next hold reads again.
        e.settled = true;
        this.#remove(e);
      },
    );
    this.#sweep ??= setInterval(() => this.#sweepIdle(), IDLE_MS).unref();
    return e;
  }

  /**
   * A file sent to its last destination leaves the cache as soon as no one holds or hashes
   * it (issue #12: with one destination, sent files used to stay IDLE_MS and fill the whole
   * budget in a backlog: 2,048 files of 1 KiB in 4 KiB buffers, 8 MiB of a sender's peak
   * RSS plus their entries in the heap; the budget is for files on their way, and for the
   * other destinations of a fan-out, which keep it until they have held it).
   */
  #dropIfDone(e: Entry): void {
    if (e.last && e.refs === 0 && e.hashing === 0 && e.settled && e.holds >= e.wanted) this.#remove(e);
  }

  #remove(e: Entry): void {
    if (this.#entries.get(e.key) !== e) return;
    this.#entries.delete(e.key);
    this.#used -= e.size;
    // Nobody holds it (a holder releases once its socket wrote the last byte) and no hash reads it: reuse.
    if (e.refs === 0 && e.hashing === 0 && e.settled) this.#keepSpare(e.buf);
    if (this.#entries.size === 0 && this.#sweep) {
      clearInterval(this.#sweep);
      this.#sweep = null;
    }
    this.#wake();
  }

  /**
   * Evicts unheld files until `size` fits (sent ones first, then prefetched ones; least
   * recently held first: hold() moves a file to the end of the map); false if it cannot.
   */
  #makeRoom(fileSize: number): boolean {
    const size = classOf(fileSize);
    const fits = (): boolean => this.#used + size <= this.budget || this.#used === 0;
    for (const sentOnly of [true, false]) {
      for (const e of this.#entries.values()) {
        if (fits()) return true;
        if (e.refs === 0 && e.settled && e.hashing === 0 && (e.used || !sentOnly)) this.#remove(e);
      }
    }
    return fits();
  }

  #sweepIdle(): void {
    const now = Date.now();
    for (const e of [...this.#entries.values()]) if (e.refs === 0 && e.settled && e.hashing === 0 && e.lastUse < now - (e.used ? IDLE_MS : UNSENT_MS)) this.#remove(e);
    if (this.#entries.size === 0) this.#spare.clear(); // idle: give the memory back
  }

  /**
   * A buffer of `size` (a size class): a spare one when there is, else a new one. Reusing
   * buffers keeps memory at the budget: new ones for every file would pile up as garbage
   * (external memory) until V8 collects, tens of MiB at fan-out rates.
   */
  #buffer(size: number): Buffer {
    const list = this.#spare.get(size);
    const b = list?.pop();
    if (b) {
      this.#spareBytes -= size;
      return b;
    }
    // Spares of other sizes go first when a new buffer would pass the budget.
    for (const [k, l] of this.#spare) {
      while (l.length > 0 && this.#used + this.#spareBytes + size > this.budget) {
        l.pop();
        this.#spareBytes -= k;
      }
    }
    return Buffer.allocUnsafeSlow(size);
  }

  /** Keeps a free buffer for reuse while used + spare stay within the budget. */
  #keepSpare(b: Buffer): void {
    if (this.#used + this.#spareBytes + b.length > this.budget) return;
    const list = this.#spare.get(b.length) ?? [];
    list.push(b);
    this.#spare.set(b.length, list);
    this.#spareBytes += b.length;
  }

  #wake(): void {
    const w = this.#waiters;
    this.#waiters = [];
    for (const f of w) f();
  }
}

/** Buffer sizes: powers of two from 4 KiB, so buffers of one size serve many files. */
function classOf(size: number): number {
  let c = 4096;
  while (c < size) c *= 2;
  return c;
}

function keyOf(f: SourceFile): string {
  return `${f.size}:${f.mtimeMs}:${f.abs}`;
}
