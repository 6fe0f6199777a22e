/**
 * PURE: one file's chunks, read once, shared by every destination sending it (fan-out,
 * issue #19). No files, sockets or timers: shared-read.ts feeds it and executes what it
 * answers.
 *
 * The file is cut in chunks of `chunkBytes` aligned at 0 (chunk i = [i·C, min((i+1)·C, size))).
 * The window holds the chunks [base, head): the producer pushes chunk `head` while fewer
 * than `capacity` are held; a chunk leaves the window once every attached reader's cursor
 * is past it. A reader takes the bytes from its cursor to the end of that chunk, so each
 * reader goes at its own pace, and the window moves at the pace of the slowest one.
 *
 * Invariants:
 * - an attached reader's cursor is never below the window (base·C ≤ cursor): what a
 *   reader still needs is held;
 * - the window never holds more than `capacity` chunks, so memory is bounded per file;
 * - a chunk's buffer is given back (freed()) only when it left the window AND every take
 *   of it was done() (the socket wrote it): a buffer is never reused while a socket holds it;
 * - the shared hash of an algorithm covers chunks [0, hashPos) in order, each exactly
 *   once: the first reader of that algorithm to take chunk hashPos hashes it. Only readers
 *   attached at byte 0 while chunk 0 was still held share it; the others hash themselves.
 *
 * Laggards are judged by distance first: a reader may fall up to `capacity` chunks
 * behind the fastest one (the window holds them; the agent's read buffers bound it),
 * whatever the time, so a machine too loaded to keep every destination in step does not
 * multiply the reads. When the window is full (that distance reached) or the adapter has
 * no buffer for the next chunk (`room` false: memory is short), the producer waits, and
 * a reader waits at the head (it wants a chunk not read yet), the window is *stalled* by
 * its laggards (the readers holding the base). Only then does time count: the adapter
 * gives them a grace period, then detach()es them: they leave the shared read and go on
 * with their own read from their cursor (take() says 'detached' once), and the others go on.
 */

/** A chunk handed to a reader: give it back with done(token) once its bytes are written. */
export interface ChunkToken {
  readonly index: number;
}

export type Take<B> =
  | { kind: 'chunk'; view: B; start: number; token: ChunkToken; hashAlg: string | null }
  | { kind: 'wait' }
  | { kind: 'end' }
  | { kind: 'detached'; cursor: number }
  | { kind: 'failed'; error: unknown };

interface Entry<B> extends ChunkToken {
  readonly index: number;
  readonly data: B;
  readonly length: number;
  refs: number;
  inWindow: boolean;
}

interface Reader {
  cursor: number;
  /** The shared hash this reader may use (attached at 0 while chunk 0 was held), or null. */
  alg: string | null;
}

export interface Attached {
  id: number;
  /** The reader's end-to-end hash is the window's shared one of its algorithm. */
  sharedHash: boolean;
}

export class ReadWindow<B extends Uint8Array> {
  readonly count: number;
  #ring: Array<Entry<B>> = [];
  #base = 0;
  readonly #readers = new Map<number, Reader>();
  /** Readers detached by the window, told once by take(). */
  readonly #detached = new Map<number, number>();
  readonly #hashPos = new Map<string, number>();
  #freed: B[] = [];
  #nextId = 1;
  #finished = false;
  #error: { error: unknown } | null = null;
  #closed = false;

  /**
   * `capacity`: chunks held at most (how far the slowest reader may lag the fastest);
   * `readAhead`: chunks read ahead of the fastest reader at most (1: the next one only,
   * so what a reader takes was read just before, still in the CPU's cache).
   */
  constructor(
    readonly size: number,
    readonly chunkBytes: number,
    readonly capacity: number,
    readonly readAhead = capacity,
  ) {
    if (!(chunkBytes > 0) || !(capacity > 0) || !(readAhead > 0)) throw new RangeError('chunkBytes, capacity and readAhead must be positive');
    this.count = Math.ceil(size / chunkBytes);
  }

  get base(): number {
    return this.#base;
  }

  /** Index of the next chunk to push. */
  get head(): number {
    return this.#base + this.#ring.length;
  }

  get readers(): number {
    return this.#readers.size;
  }

  get finished(): boolean {
    return this.#finished;
  }

  /** Bytes of chunk `i`. */
  chunkLength(i: number): number {
    return Math.max(0, Math.min(this.chunkBytes, this.size - i * this.chunkBytes));
  }

  /**
   * A new reader from byte `start`; null when those bytes already left the window (or
   * the window failed or closed): the caller reads on its own. `hashAlg`: the algorithm
   * it needs the whole-file hash in, when it starts at 0.
   */
  attach(start: number, hashAlg?: string): Attached | null {
    if (this.#closed || this.#error || start < this.#base * this.chunkBytes || start > this.size || start < 0) return null;
    const shared = hashAlg !== undefined && start === 0 && this.#base === 0;
    if (shared && !this.#hashPos.has(hashAlg)) this.#hashPos.set(hashAlg, 0);
    const id = this.#nextId++;
    this.#readers.set(id, { cursor: start, alg: shared ? hashAlg : null });
    return { id, sharedHash: shared };
  }

  /**
   * Moves an attached reader forward to `offset` (a resumed destination, known once its
   * ACCEPT came); it then hashes on its own. False when not attached or `offset` is
   * behind its cursor or past the end.
   */
  seek(id: number, offset: number): boolean {
    const r = this.#readers.get(id);
    if (!r || offset < r.cursor || offset > this.size) return false;
    if (offset !== r.cursor) r.alg = null;
    r.cursor = offset;
    this.#trim();
    return true;
  }

  /** Where a reader is (attached or detached and not yet told); null otherwise. */
  cursorOf(id: number): number | null {
    return this.#readers.get(id)?.cursor ?? this.#detached.get(id) ?? null;
  }

  /** The next bytes for a reader (see Take). */
  take(id: number): Take<B> {
    const gone = this.#detached.get(id);
    if (gone !== undefined) {
      this.#detached.delete(id);
      return { kind: 'detached', cursor: gone };
    }
    const r = this.#readers.get(id);
    if (!r) throw new Error(`reader ${id} is not attached`);
    if (this.#error) return { kind: 'failed', error: this.#error.error };
    if (r.cursor >= this.size) return this.#finished ? { kind: 'end' } : { kind: 'wait' };
    const i = Math.floor(r.cursor / this.chunkBytes);
    if (i >= this.head) return { kind: 'wait' };
    const e = this.#ring[i - this.#base]!;
    const from = r.cursor - i * this.chunkBytes;
    const view = e.data.subarray(from, e.length) as B;
    const start = r.cursor;
    r.cursor = i * this.chunkBytes + e.length;
    e.refs++;
    let hashAlg: string | null = null;
    if (r.alg !== null && this.#hashPos.get(r.alg) === i) {
      this.#hashPos.set(r.alg, i + 1);
      hashAlg = r.alg;
    }
    this.#trim();
    return { kind: 'chunk', view, start, token: e, hashAlg };
  }

  /** A taken chunk's bytes were written (or dropped): its buffer may go back once out of the window. */
  done(token: ChunkToken): void {
    const e = token as Entry<B>;
    if (e.refs <= 0) throw new Error(`chunk ${e.index} done more often than taken`);
    e.refs--;
    if (!e.inWindow && e.refs === 0) this.#freed.push(e.data);
  }

  /** The producer may push the next chunk (not failed, not at the end, room in the window, not too far ahead). */
  canPush(): boolean {
    if (this.#closed || this.#error || this.head >= this.count || this.#ring.length >= this.capacity) return false;
    let lead = -1;
    for (const r of this.#readers.values()) lead = Math.max(lead, Math.floor(r.cursor / this.chunkBytes));
    return this.head < lead + this.readAhead;
  }

  /** Chunk `head`, read: `length` bytes of `data` (must be chunkLength(head)). */
  push(data: B, length: number): void {
    if (!this.canPush()) throw new Error('push on a full, failed or complete window');
    const index = this.head;
    if (length !== this.chunkLength(index)) throw new Error(`chunk ${index} must hold ${this.chunkLength(index)} bytes, got ${length}`);
    this.#ring.push({ index, data, length, refs: 0, inWindow: true });
    this.#trim();
  }

  /** The producer read every chunk and the source is still the version announced. */
  finish(): void {
    if (this.head !== this.count) throw new Error('finish before every chunk was pushed');
    this.#finished = true;
  }

  /** The read failed (or the source changed): every reader's next take says so. */
  fail(error: unknown): void {
    this.#error ??= { error };
  }

  /**
   * Full (or, `room` false, no buffer for the next chunk while it holds some), and some
   * attached reader waits for a chunk not read yet: the laggards hold everyone.
   */
  stalled(room = true): boolean {
    if (this.#ring.length === 0 || (room && this.#ring.length < this.capacity) || this.head >= this.count || this.#error) return false;
    const headStart = this.head * this.chunkBytes;
    for (const r of this.#readers.values()) if (r.cursor >= headStart) return true;
    return false;
  }

  /** Attached readers holding the base chunk (the slowest ones). */
  laggards(): number[] {
    const end = (this.#base + 1) * this.chunkBytes;
    return [...this.#readers].filter(([, r]) => r.cursor < end && r.cursor < this.size).map(([id]) => id);
  }

  /** The window drops a reader (a laggard): its next take says 'detached' with its cursor. */
  detach(id: number): void {
    const r = this.#readers.get(id);
    if (!r) return;
    this.#readers.delete(id);
    this.#detached.set(id, r.cursor);
    this.#trim();
  }

  /** A reader leaves on its own (done, aborted, connection gone). Chunks it took stay lent until done(). */
  leave(id: number): void {
    this.#readers.delete(id);
    this.#detached.delete(id);
    this.#trim();
  }

  /** No more readers will come: every chunk leaves the window. */
  close(): void {
    this.#closed = true;
    for (const e of this.#ring) this.#drop(e);
    this.#base = this.head;
    this.#ring = [];
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** Buffers no longer used by the window or any reader, since the last call. */
  freed(): B[] {
    const f = this.#freed;
    this.#freed = [];
    return f;
  }

  /**
   * Drops chunks every attached reader is past, and skips chunks not read yet that
   * nobody needs. With no reader attached, every chunk goes.
   */
  #trim(): void {
    let min = Infinity;
    for (const r of this.#readers.values()) min = Math.min(min, r.cursor);
    const firstNeeded = min >= this.size ? this.count : Math.floor(min / this.chunkBytes);
    while (this.#ring.length > 0 && this.#base < firstNeeded) {
      this.#drop(this.#ring.shift()!);
      this.#base++;
    }
    // Nobody needs the chunks before firstNeeded (readers resumed past them): never read them.
    if (this.#ring.length === 0 && this.#base < firstNeeded) this.#base = firstNeeded;
  }

  #drop(e: Entry<B>): void {
    e.inWindow = false;
    if (e.refs === 0) this.#freed.push(e.data);
  }
}
