/**
 * A streamed file's writes (issue #12): the received chunks (16 KiB TLS records, 64 KiB
 * socket reads) are copied into a few reused 1 MiB buffers, and each full buffer is hashed
 * and written with one positional write while the next one fills (write-behind).
 *
 * Why not a WriteStream of the chunks as they come: each chunk then lived until its write
 * called back (up to 2 MiB of them per file, plus the channel's queue), i.e. tens of
 * thousands of short-lived external buffers per GiB kept past young-generation GCs,
 * which drove V8's major GCs and the receiver's peak RSS; and the writev calls carried
 * 128 small pieces each. Copying 1 GiB once costs ~0.05–0.1 s of CPU; the chunks now die
 * right after their copy.
 *
 * Invariants:
 * - bytes reach the file in order, each buffer at its own position (`start` + bytes before
 *   it); `onFull` sees each buffer's bytes in file order, before its write starts;
 * - at most BUFFERS_PER_FILE buffers per file (one filling, the rest being written);
 *   write() returns nothing when its bytes were taken without waiting, else a promise that
 *   settles once they were (a buffer came free), so the caller's backpressure holds;
 * - after a write error every later call rejects with it (`failed` says so at once);
 * - drain() resolves once every byte given is in the file; settled() once no write runs;
 *   bytes never wait more than FLUSH_AFTER_MS in a buffer that is not full;
 * - durability overlapped with the transfer: every SYNC_EVERY_BYTES written, a datasync
 *   starts on the thread pool (at most one at a time, not awaited by write()), so the disk
 *   writes back while the rest arrives and the final fsync (IncomingFile.commit) finds
 *   little dirty. It adds no guarantee and removes none: the final fsync still runs; a
 *   failed datasync fails the writer like a failed write (Linux may report a writeback
 *   error once only, so it must not be dropped); drain() and settled() wait for it (the
 *   descriptor stays open under it). A file smaller than SYNC_EVERY_BYTES gets none.
 */
import { fdatasync as fsFdatasync } from 'node:fs';
import { writeAll } from '../fsutil.js';

/** Size of each buffer, i.e. of most writes. */
export const GATHER_BYTES = 1 << 20;
/** Buffers per file: one filling while the others are written (up to 2 MiB write-behind). */
const BUFFERS_PER_FILE = 3;
/**
 * Bytes wait at most this long in a partly filled buffer before they are written anyway
 * (a slow or stalled sender): what arrived reaches the file about as soon as it did with
 * a plain write-behind, so a crash loses no more progress than it did then.
 */
const FLUSH_AFTER_MS = 100;
/**
 * Bytes written between two periodic datasyncs. Measured on the bench (1 GiB over
 * loopback, issue #12): see the README "Performance". 32 MiB is ~0.1 s of a fast
 * transfer: the disk always has work, and each call has little to do.
 */
export const SYNC_EVERY_BYTES = 32 << 20;
/** Free buffers kept between files (module-wide), so a stream of files does not allocate per file. */
const SPARE_MAX = 6;
const spare: Buffer[] = [];

/** What failed: a write, or a periodic datasync. */
export type GatherFailure = 'writing' | 'syncing';

export interface GatherOptions {
  /** The datasync to run every SYNC_EVERY_BYTES (default fs.fdatasync; tests wrap it to inject a failure). */
  datasync?: (fd: number, done: (err: Error | null) => void) => void;
  /** Bytes between periodic datasyncs (default SYNC_EVERY_BYTES; 0: none). */
  syncEvery?: number;
}

export class GatherWriter {
  readonly #fd: number;
  readonly #onFull: (bytes: Buffer) => void;
  readonly #onError: (err: Error, doing: GatherFailure) => void;
  readonly #datasync: (fd: number, done: (err: Error | null) => void) => void;
  readonly #syncEvery: number;
  #position: number;
  /** Bytes written since the last periodic datasync started. */
  #unsynced = 0;
  #syncing = false;
  /** Periodic datasyncs started (for tests and debug logs). */
  #syncs = 0;
  #fill: Buffer | null = null;
  #fillLen = 0;
  #free: Buffer[] = [];
  #allocated = 0;
  #inflight = 0;
  #error: Error | null = null;
  #waiters: Array<() => void> = [];
  /** A write() that had to wait: later ones queue behind it so bytes stay in order. */
  #slow: Promise<void> | null = null;
  #timer: NodeJS.Timeout | null = null;
  readonly #onTimer = (): void => {
    this.#timer = null;
    this.flush();
  };

  /**
   * `onFull`: each buffer's bytes, in file order, before they are written (the hash).
   * `onError`: the first write or datasync error (once); the writer is failed from then on.
   */
  constructor(fd: number, start: number, onFull: (bytes: Buffer) => void, onError: (err: Error, doing: GatherFailure) => void, opts: GatherOptions = {}) {
    this.#fd = fd;
    this.#position = start;
    this.#onFull = onFull;
    this.#onError = onError;
    this.#datasync = opts.datasync ?? fsFdatasync;
    this.#syncEvery = opts.syncEvery ?? SYNC_EVERY_BYTES;
  }

  get failed(): Error | null {
    return this.#error;
  }

  /** Periodic datasyncs started so far. */
  get syncs(): number {
    return this.#syncs;
  }

  /** Nothing was given to write() yet (and nothing allocated). */
  get untouched(): boolean {
    return this.#allocated === 0;
  }

  write(chunk: Buffer): void | Promise<void> {
    if (this.#error) return Promise.reject(this.#error);
    const fill = this.#fill;
    if (this.#slow === null && fill !== null && chunk.length < fill.length - this.#fillLen) {
      chunk.copy(fill, this.#fillLen);
      this.#fillLen += chunk.length;
      if (this.#timer === null) this.#arm();
      return;
    }
    const prev = this.#slow;
    const p = (prev ? prev.then(() => this.#writeSlow(chunk)) : this.#writeSlow(chunk)).finally(() => {
      if (this.#slow === p) this.#slow = null;
    });
    this.#slow = p;
    return p;
  }

  async #writeSlow(chunk: Buffer): Promise<void> {
    let pos = 0;
    while (pos < chunk.length) {
      this.#fill ??= await this.#buffer();
      const n = chunk.copy(this.#fill, this.#fillLen, pos);
      pos += n;
      this.#fillLen += n;
      if (this.#fillLen === this.#fill.length) this.#startWrite();
    }
    if (this.#fillLen > 0 && this.#timer === null) this.#arm();
  }

  #arm(): void {
    this.#timer = setTimeout(this.#onTimer, FLUSH_AFTER_MS);
    this.#timer.unref();
  }

  /** Starts writing the bytes gathered so far. */
  flush(): void {
    if (this.#error || this.#fillLen === 0) return;
    this.#startWrite();
  }

  /**
   * Every byte given to write() is in the file (a write() still waiting for a buffer
   * included), or this rejects with the write error. At the end of a file, or before an
   * abort keeps the partial for resume.
   */
  async drain(): Promise<void> {
    while (this.#slow) await this.#slow.catch(() => undefined); // its error is the writer's error, checked below
    this.flush();
    while (this.#inflight > 0) await new Promise<void>((resolve) => this.#waiters.push(resolve));
    if (this.#error) throw this.#error;
  }

  /** Waits for the writes already started (after a failure: before the descriptor is closed). */
  async settled(): Promise<void> {
    while (this.#slow) await this.#slow.catch(() => undefined); // failing anyway
    while (this.#inflight > 0) await new Promise<void>((resolve) => this.#waiters.push(resolve));
  }

  /** Gives the buffers back for other files; call once drain() or settled() resolved. */
  release(): void {
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = null;
    const bufs = [...this.#free, ...(this.#fill ? [this.#fill] : [])];
    this.#free = [];
    this.#fill = null;
    this.#fillLen = 0;
    for (const b of bufs) if (spare.length < SPARE_MAX) spare.push(b);
  }

  async #buffer(): Promise<Buffer> {
    for (;;) {
      if (this.#error) throw this.#error;
      const b = this.#free.pop();
      if (b) return b;
      if (this.#allocated < BUFFERS_PER_FILE) {
        this.#allocated++;
        return spare.pop() ?? Buffer.allocUnsafeSlow(GATHER_BYTES);
      }
      await new Promise<void>((resolve) => this.#waiters.push(resolve));
    }
  }

  #startWrite(): void {
    const buf = this.#fill!;
    const len = this.#fillLen;
    const position = this.#position;
    this.#fill = null;
    this.#fillLen = 0;
    this.#position += len;
    this.#onFull(len === buf.length ? buf : buf.subarray(0, len));
    this.#inflight++;
    writeAll(this.#fd, buf, len, position, (err) => {
      this.#inflight--;
      this.#free.push(buf);
      if (err) this.#failWith(err, 'writing');
      else {
        this.#unsynced += len;
        this.#maybeSync();
      }
      this.#wake();
    });
  }

  /** Starts a datasync when SYNC_EVERY_BYTES were written since the last one and none runs. */
  #maybeSync(): void {
    if (this.#syncing || this.#error || this.#syncEvery <= 0 || this.#unsynced < this.#syncEvery) return;
    this.#unsynced = 0;
    this.#syncing = true;
    this.#syncs++;
    this.#inflight++; // drain() and settled() wait for it: the descriptor is not closed under it
    this.#datasync(this.#fd, (err) => {
      this.#inflight--;
      this.#syncing = false;
      if (err) this.#failWith(err, 'syncing');
      else this.#maybeSync();
      this.#wake();
    });
  }

  #failWith(err: Error, doing: GatherFailure): void {
    if (this.#error) return;
    this.#error = err;
    this.#onError(err, doing);
  }

  #wake(): void {
    const w = this.#waiters;
    this.#waiters = [];
    for (const f of w) f();
  }
}
