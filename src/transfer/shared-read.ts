/**
 * One read of one file version for every destination sending it at the same time (fan-out,
 * issue #19): one descriptor, one read ahead, feeding a ReadWindow (read-window.ts, the
 * rules); the whole-file hash computed once per algorithm the readers need. This module
 * only executes the window's answers: reads, wake-ups, the stall timer, buffers back to
 * the agent's pool.
 *
 * A reader the window drops (it was `capacity` chunks behind and held everyone for
 * `graceMs`, or memory was short) or one that could not attach goes on with its own read
 * (source-file.ts OwnRead): it catches up alone and holds no memory of the others. A
 * dropped reader that shared the window's hash goes on from the hash's state saved at its
 * cursor (one state per chunk still held), so dropping it costs only the bytes it has left,
 * not a re-read of its prefix.
 */
import fs from 'node:fs/promises';
import { createFileHash, restoreFileHash, type FileHash, type HashAlg, type HashState } from '../hash.js';
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
  /** The producer waits for a read buffer (the agent's pool is lent out): no room to grow. */
  #starved = false;
  /** Per algorithm, the shared hash's state at the start of chunk i (i from window.base on). */
  readonly #states = new Map<HashAlg, Map<number, HashState>>();
  /** States handed to readers the window dropped (by reader id), until they fall back. */
  readonly #handoff = new Map<number, Map<HashAlg, HashState>>();
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

  /** The shared hash of `alg` just took chunk `index`: its state at the start of the next one is kept while that is held. */
  hashed(alg: HashAlg, index: number): void {
    if (index + 1 >= this.window.count) return; // the end: a dropped reader there has nothing left
    let m = this.#states.get(alg);
    if (!m) this.#states.set(alg, (m = new Map()));
    m.set(index + 1, this.#hashes.get(alg)!.save());
  }

  /** The shared hash's state of `alg` at the cursor where the window dropped reader `id` (once), or null. */
  takeHandoff(id: number, alg: HashAlg): HashState | null {
    const h = this.#handoff.get(id);
    this.#handoff.delete(id);
    return h?.get(alg) ?? null;
  }

  /** Waits for the next change (a chunk read, one taken, a reader gone). */
  changed(): Promise<void> {
    return new Promise((r) => this.#waiters.push(r));
  }

  /** After every window operation: buffers back to the pool, waiters woken, stall watched, empty read closed. */
  settle(): void {
    for (const b of this.window.freed()) this.deps.pool.release(b);
    for (const m of this.#states.values()) for (const i of m.keys()) if (i < this.window.base) m.delete(i);
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
      this.#states.clear();
      for (const b of this.window.freed()) this.deps.pool.release(b);
      this.#clearStall();
      if (this.#lingerTimer) clearTimeout(this.#lingerTimer);
      this.#lingerTimer = null;
      this.deps.onClosed();
      return;
    }
    if (this.window.stalled(!this.#starved)) this.#stallTimer ??= setTimeout(() => this.#onStall(), this.deps.graceMs);
    else this.#clearStall();
  }

  #clearStall(): void {
    if (this.#stallTimer) clearTimeout(this.#stallTimer);
    this.#stallTimer = null;
  }

  #onStall(): void {
    this.#stallTimer = null;
    if (!this.window.stalled(!this.#starved)) return;
    const ids = this.window.laggards();
    const why = this.#starved ? 'held the others while read buffers were short' : `fell ${this.deps.capacity} chunks behind`;
    this.deps.log.debug(`shared read of ${this.file.abs}: ${ids.length} destination(s) ${why}; they read on their own`);
    for (const id of ids) {
      const e = this.#expected.indexOf(id);
      if (e >= 0) {
        this.#expected.splice(e, 1);
        this.window.leave(id);
        continue;
      }
      // Its cursor is at a chunk's start (readers from 0 take whole chunks): the hash's state there.
      const cursor = this.window.cursorOf(id) ?? -1;
      const at = cursor / this.window.chunkBytes;
      const states = new Map<HashAlg, HashState>();
      for (const [alg, m] of this.#states) {
        const s = m.get(at);
        if (s) states.set(alg, s);
      }
      if (states.size > 0) this.#handoff.set(id, states);
      this.window.detach(id);
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
        const got = this.deps.pool.acquire();
        let buf: Buffer;
        if (got instanceof Promise) {
          // Every read buffer is lent out: the window cannot grow, laggards count as stalling it.
          this.#starved = true;
          this.settle();
          try {
            buf = await got;
          } finally {
            this.#starved = false;
          }
        } else buf = got;
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
          if (t.hashAlg !== null) this.read.hashed(this.alg, t.token.index);
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

  /**
   * Dropped by the window at `cursor`: its own read from there, its own hash (when it shared
   * one: from the shared hash's state at the cursor, else by re-reading the prefix).
   */
  async #fallBack(cursor: number): Promise<void> {
    let hash = this.hash;
    if (!hash) {
      const state = this.read.takeHandoff(this.id, this.alg);
      if (state) hash = await restoreFileHash(state);
      else {
        hash = await createFileHash(this.alg);
        await hashPrefix(this.read.file.abs, cursor, hash, this.deps.pool.size, this.deps.stats);
      }
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
    this.read.takeHandoff(this.id, this.alg); // dropped and never read again: its state goes
    await this.#own?.close();
  }

  #leave(): void {
    if (!this.#attached) return;
    this.#attached = false;
    this.read.window.leave(this.id);
    this.read.settle();
  }
}
