/**
 * One read of one file version for every destination sending it at the same time (fan-out,
 * issue #19): one descriptor, one read ahead, feeding a ReadWindow (read-window.ts, the
 * rules); the whole-file hash computed once per algorithm the readers need. This module
 * only executes the window's answers: reads, wake-ups, the stall timer, buffers back to
 * the agent's pool.
 *
 * A reader the window drops (it held everyone for `graceMs`) or one that could not
 * attach goes on with its own read (source-file.ts OwnRead), re-reading its prefix for
 * its hash when it was sharing the hash: it catches up alone and holds no memory of the others.
 */
import fs from 'node:fs/promises';
import { createFileHash, type FileHash, type HashAlg } from '../hash.js';
import type { Logger } from '../log.js';
import type { BufferPool } from './chunks.js';
import { ReadWindow, type ChunkToken } from './read-window.js';
import { OwnRead, SourceChangedError, checkUnchanged, hashPrefix, readError, type ChunkSource, type SendStats, type SourceChunk, type SourceFile } from './source-file.js';

export interface SharedReadDeps {
  pool: BufferPool;
  /** Chunks the window holds at most. */
  capacity: number;
  /** Chunks read ahead of the fastest reader at most. */
  readAhead: number;
  /** How long laggards may hold the others before they are dropped. */
  graceMs: number;
  stats: SendStats;
  log: Logger;
  /** The read has no reader left and closed (the registry forgets it). */
  onClosed: () => void;
}

export class SharedRead {
  readonly window: ReadWindow<Buffer>;
  readonly #hashes = new Map<HashAlg, FileHash>();
  readonly #digests = new Map<HashAlg, string>();
  #waiters: Array<() => void> = [];
  #stallTimer: NodeJS.Timeout | null = null;
  #lingerTimer: NodeJS.Timeout | null = null;
  #started = false;
  /**
   * Destinations expected to read this file (SendSources.expect), each a reader held at
   * byte 0 until it comes (arrived()), holds the others past the grace, or is the only
   * kind left for the grace (then it is dropped and reads alone when it comes).
   */
  readonly #expected: number[] = [];

  constructor(
    readonly file: SourceFile,
    private readonly deps: SharedReadDeps,
  ) {
    this.window = new ReadWindow<Buffer>(file.size, deps.pool.size, deps.capacity, deps.readAhead);
  }

  get closed(): boolean {
    return this.window.closed;
  }

  /**
   * A reader from byte `start` (see ReadWindow.attach), or null: read on your own.
   * `ownHash`: the hash this reader continues (a resumed destination's, prefix included);
   * without it a reader from 0 shares the window's hash of `alg`.
   */
  async attach(start: number, alg: HashAlg, ownHash: FileHash | null): Promise<SharedReader | null> {
    if (ownHash === null && start !== 0) throw new Error('a reader from the middle of a file brings its own hash');
    // Made before attaching (async): the window's hash of `alg` starts with its first sharing reader.
    const fresh = ownHash === null && !this.#hashes.has(alg) ? await createFileHash(alg) : null;
    const a = this.window.attach(start, ownHash === null ? alg : undefined);
    if (!a) return null;
    // Hashes are never removed, so one made by a reader attached meanwhile is kept.
    if (a.sharedHash && !this.#hashes.has(alg)) this.#hashes.set(alg, fresh!);
    if (!this.#started) {
      this.#started = true;
      void this.#produce();
    }
    return new SharedReader(this, a.id, alg, a.sharedHash ? null : ownHash, this.deps);
  }

  /** Holds byte 0 for `n` more destinations until they come. */
  expect(n: number): void {
    for (let i = 0; i < n; i++) {
      const a = this.window.attach(0);
      if (!a) return;
      this.#expected.push(a.id);
    }
  }

  /** One expected destination came (or will not stream it): its hold on byte 0 goes. */
  arrived(): void {
    const id = this.#expected.pop();
    if (id === undefined) return;
    this.window.leave(id);
    this.settle();
  }

  /** The shared digest of `alg` (once every chunk was hashed). */
  sharedDigest(alg: HashAlg): string {
    let d = this.#digests.get(alg);
    if (d === undefined) {
      d = this.#hashes.get(alg)!.digest();
      this.#digests.set(alg, d);
    }
    return d;
  }

  sharedHash(alg: HashAlg): FileHash {
    return this.#hashes.get(alg)!;
  }

  /** Waits for the next change (a chunk read, one taken, a reader gone). */
  changed(): Promise<void> {
    return new Promise((r) => this.#waiters.push(r));
  }

  /** After every window operation: buffers back to the pool, waiters woken, stall watched, empty read closed. */
  settle(): void {
    for (const b of this.window.freed()) this.deps.pool.release(b);
    const w = this.#waiters;
    this.#waiters = [];
    for (const f of w) f();
    // Only expected ones left after reading began (the others finished first): what was
    // read stays for them for the grace, then they read on their own when they come.
    if (this.#started && this.window.readers === this.#expected.length && this.#expected.length > 0 && !this.window.closed) {
      this.#lingerTimer ??= setTimeout(() => {
        this.#lingerTimer = null;
        if (this.window.readers !== this.#expected.length) return;
        for (const id of this.#expected.splice(0)) this.window.leave(id);
        this.settle();
      }, this.deps.graceMs).unref();
    }
    if (this.window.readers === 0 && !this.window.closed) {
      this.window.close();
      for (const b of this.window.freed()) this.deps.pool.release(b);
      this.#clearStall();
      if (this.#lingerTimer) clearTimeout(this.#lingerTimer);
      this.#lingerTimer = null;
      this.deps.onClosed();
      return;
    }
    if (this.window.stalled()) this.#stallTimer ??= setTimeout(() => this.#onStall(), this.deps.graceMs);
    else this.#clearStall();
  }

  #clearStall(): void {
    if (this.#stallTimer) clearTimeout(this.#stallTimer);
    this.#stallTimer = null;
  }

  #onStall(): void {
    this.#stallTimer = null;
    if (!this.window.stalled()) return;
    const ids = this.window.laggards();
    this.deps.log.debug(`shared read of ${this.file.abs}: ${ids.length} destination(s) fell ${this.deps.capacity} chunks behind; they read on their own`);
    for (const id of ids) {
      const e = this.#expected.indexOf(id);
      if (e >= 0) {
        this.#expected.splice(e, 1);
        this.window.leave(id);
      } else this.window.detach(id);
    }
    this.settle();
  }

  async #produce(): Promise<void> {
    const w = this.window;
    let fh: fs.FileHandle | null = null;
    try {
      fh = await fs.open(this.file.abs, 'r');
      for (;;) {
        if (w.closed) return;
        if (w.head >= w.count) {
          await checkUnchanged(this.file, this.file.size);
          w.finish();
          return;
        }
        if (!w.canPush()) {
          await this.changed();
          continue;
        }
        const buf = await this.deps.pool.acquire();
        if (!w.canPush()) {
          this.deps.pool.release(buf); // closed, or the readers skipped ahead meanwhile
          continue;
        }
        const i = w.head;
        const want = w.chunkLength(i);
        let n = 0;
        try {
          while (n < want) {
            const { bytesRead } = await fh.read(buf, n, want - n, i * w.chunkBytes + n);
            if (bytesRead === 0) break;
            n += bytesRead;
          }
        } catch (err) {
          this.deps.pool.release(buf);
          throw err;
        }
        this.deps.stats.read += n;
        if (n < want) {
          this.deps.pool.release(buf);
          await checkUnchanged(this.file, i * w.chunkBytes + n); // throws: shorter than announced
          throw new SourceChangedError(`${this.file.abs} changed while being sent; the new version will be sent`);
        }
        if (w.head !== i || !w.canPush()) this.deps.pool.release(buf); // skipped past while reading
        else w.push(buf, n);
        this.settle();
      }
    } catch (err) {
      w.fail(readError(this.file.abs, err));
    } finally {
      this.settle();
      await fh?.close().catch(() => undefined); // read-only handle: a close error loses nothing
    }
  }
}

/** One destination's reader of a SharedRead; falls back to its own read when dropped. */
export class SharedReader implements ChunkSource {
  #own: OwnRead | null = null;
  #attached = true;

  constructor(
    private readonly read: SharedRead,
    private readonly id: number,
    private readonly alg: HashAlg,
    /** Null while sharing the window's hash. */
    private hash: FileHash | null,
    private readonly deps: SharedReadDeps,
  ) {}

  /**
   * Moves to `offset` (a resumed destination, once its ACCEPT came), continuing `hash`
   * (the prefix's). Before the first next() only.
   */
  async seek(offset: number, hash: FileHash): Promise<void> {
    this.hash = hash;
    if (this.#attached && this.read.window.seek(this.id, offset)) {
      this.read.settle();
      return;
    }
    this.#leave();
    this.#own = new OwnRead(this.read.file, this.deps.pool, offset, hash, this.deps.stats);
  }

  async next(): Promise<SourceChunk | null> {
    for (;;) {
      if (this.#own) return this.#own.next();
      const w = this.read.window;
      const t = w.take(this.id);
      switch (t.kind) {
        case 'chunk': {
          const h = t.hashAlg !== null ? this.read.sharedHash(this.alg) : this.hash;
          if (h) {
            h.update(t.view);
            this.deps.stats.hashed += t.view.length;
          }
          this.read.settle();
          const token: ChunkToken = t.token;
          let released = false;
          return {
            data: t.view,
            release: () => {
              if (released) return;
              released = true;
              w.done(token);
              this.read.settle();
            },
          };
        }
        case 'wait':
          await this.read.changed();
          break;
        case 'end':
          this.#leave();
          return null;
        case 'failed':
          this.#leave();
          throw t.error;
        case 'detached':
          this.#attached = false;
          await this.#fallBack(t.cursor);
          break;
      }
    }
  }

  /** Dropped by the window at `cursor`: its own read from there, its own hash (re-reading the prefix when it shared one). */
  async #fallBack(cursor: number): Promise<void> {
    let hash = this.hash;
    if (!hash) {
      hash = await createFileHash(this.alg);
      await hashPrefix(this.read.file.abs, cursor, hash, this.deps.pool.size, this.deps.stats);
      this.hash = hash;
    }
    this.#own = new OwnRead(this.read.file, this.deps.pool, cursor, hash, this.deps.stats);
  }

  digest(): string {
    if (this.#own) return this.#own.digest();
    return this.hash ? this.hash.digest() : this.read.sharedDigest(this.alg);
  }

  async close(): Promise<void> {
    this.#leave();
    await this.#own?.close();
  }

  #leave(): void {
    if (!this.#attached) return;
    this.#attached = false;
    this.read.window.leave(this.id);
    this.read.settle();
  }
}
