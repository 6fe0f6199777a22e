/**
 * The sender's file reads: a byte range read in chunks into a few reused buffers, one
 * read ahead of the socket.
 *
 * Why not `fs.createReadStream`: it allocates a fresh chunk-sized buffer for every read,
 * so each MiB sent costs new pages (page faults, zeroing by the kernel) and external
 * memory that drives V8's garbage collector. Here the same few buffers go round, shared
 * by all files of a connection (they stream one at a time).
 */
import fs from 'node:fs/promises';

/**
 * Up to `max` buffers of `size` bytes, allocated on first use. A buffer is lent by
 * acquire() and comes back with release(), given any view of it (e.g. the subarray that
 * went to the socket). With `idleMs`, buffers all back and unused for that long are let
 * go (the agent's memory between bursts is not its peak: a venue agent sends one load
 * after another, issue #19); the next burst allocates them again.
 */
export class BufferPool {
  readonly #free: Buffer[] = [];
  #mine = new WeakSet<ArrayBufferLike>();
  #allocated = 0;
  #waiters: Array<(b: Buffer) => void> = [];
  #idle: NodeJS.Timeout | null = null;

  constructor(
    readonly size: number,
    readonly max = 3,
    readonly idleMs = 0,
  ) {}

  /** Buffers allocated now (lent or free). */
  get allocated(): number {
    return this.#allocated;
  }

  /** A free buffer now, or a promise of the next one released. */
  acquire(): Buffer | Promise<Buffer> {
    const b = this.#free.pop();
    if (b) return b;
    if (this.#allocated < this.max) {
      this.#allocated++;
      // Slow = not carved from Node's shared pool: each buffer owns its ArrayBuffer,
      // which is how release() recognises it.
      const nb = Buffer.allocUnsafeSlow(this.size);
      this.#mine.add(nb.buffer);
      return nb;
    }
    return new Promise<Buffer>((resolve) => this.#waiters.push(resolve));
  }

  /** Give back a buffer from acquire(), by any view of it; other buffers are ignored. */
  release(view: Buffer): void {
    if (!this.#mine.has(view.buffer)) return;
    const b = view.byteOffset === 0 && view.length === this.size ? view : Buffer.from(view.buffer, 0, this.size);
    const w = this.#waiters.shift();
    if (w) w(b);
    else {
      this.#free.push(b);
      if (this.#free.length === this.#allocated) this.#armIdle();
    }
  }

  #armIdle(): void {
    if (this.idleMs <= 0) return;
    if (this.#idle) this.#idle.refresh();
    else {
      this.#idle = setTimeout(() => {
        this.#idle = null;
        if (this.#free.length !== this.#allocated) return; // in use again: it comes back here later
        this.#allocated = 0;
        this.#free.length = 0;
        this.#mine = new WeakSet(); // a stray second release of one of them is ignored
      }, this.idleMs);
      this.#idle.unref();
    }
  }
}

interface Filled {
  buf: Buffer | null;
  n: number;
}

const NOTHING: Filled = { buf: null, n: 0 };

/**
 * [start, end) of one file as chunks of at most `pool.size` bytes. A chunk from next()
 * is a view of a pool buffer: hand it back with `pool.release()` once nothing uses its
 * bytes (the socket's write callback). close() may be called at any time, also with
 * chunks still out; it closes the descriptor once no read is in flight.
 */
export class ChunkReader {
  readonly #fh: fs.FileHandle;
  readonly #pool: BufferPool;
  #pos: number;
  readonly #end: number;
  #ahead: Promise<Filled> | null = null;
  #reading: Promise<unknown> | null = null;
  #eof = false;
  #closed = false;

  private constructor(fh: fs.FileHandle, pool: BufferPool, start: number, end: number) {
    this.#fh = fh;
    this.#pool = pool;
    this.#pos = start;
    this.#end = end;
  }

  /** Rejects like fs.open (ENOENT when the file is gone). */
  static async open(path: string, pool: BufferPool, start: number, end: number): Promise<ChunkReader> {
    return new ChunkReader(await fs.open(path, 'r'), pool, start, end);
  }

  /**
   * The next chunk, or null at the end of the range, or earlier if the file is shorter
   * now (the caller compares what it sent with what it announced). Starts the read of
   * the chunk after it before returning.
   */
  async next(): Promise<Buffer | null> {
    const pending = this.#ahead ?? this.#readOne();
    this.#ahead = null;
    const { buf, n } = await pending;
    if (buf === null) return null;
    if (!this.#eof && this.#pos < this.#end && !this.#closed) {
      const ahead = this.#readOne();
      ahead.catch(() => undefined); // surfaced by the next next(), never unhandled
      this.#ahead = ahead;
    }
    return buf.subarray(0, n);
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    // A read ahead may still wait for a buffer: it gives it back when it gets one.
    this.#ahead = null;
    if (this.#reading) await this.#reading.catch(() => undefined); // closing: the read's error went to its next() caller
    await this.#fh.close();
  }

  async #readOne(): Promise<Filled> {
    if (this.#closed || this.#eof || this.#pos >= this.#end) return NOTHING;
    const buf = await this.#pool.acquire();
    if (this.#closed) {
      this.#pool.release(buf);
      return NOTHING;
    }
    const want = Math.min(buf.length, this.#end - this.#pos);
    const reading = this.#fh.read(buf, 0, want, this.#pos);
    this.#reading = reading;
    let n: number;
    try {
      ({ bytesRead: n } = await reading);
    } catch (err) {
      this.#pool.release(buf);
      throw err;
    } finally {
      this.#reading = null;
    }
    this.#pos += n;
    if (n < want) this.#eof = true;
    if (n === 0) {
      this.#pool.release(buf);
      return NOTHING;
    }
    return { buf, n };
  }
}
