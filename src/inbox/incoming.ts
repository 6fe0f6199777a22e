/**
 * One file being received into an inbox: bytes stream into a staging file (hashed on
 * the way), and `commit` verifies and lands it. See the contract in inbox.ts.
 */
import { hashLabel, type FileHash, type HashAlg } from '../hash.js';
import type fs from 'node:fs/promises';
import { createWriteStream, type WriteStream } from 'node:fs';
import type { CollisionPolicy } from '../config/types.js';
import type { Logger } from '../log.js';
import { describeError } from '../errors.js';
import { InboxError } from './errors.js';
import { errCode, formatBytes } from '../fsutil.js';
import type { Lander } from './land.js';
import type { Journal, LandedRecord } from './journal.js';
import type { Staging } from './staging.js';

export interface Landed {
  inbox: string;
  rel: string;
  abs: string;
  size: number;
  /** The verified hash of the landed bytes, by the connection's algorithm. */
  hash: HashAlg;
  digest: string;
  /** `digest` when `hash` is SHA-256, else null. */
  sha256: string | null;
  renamedFrom: string | null;
  /**
   * Set (true) only when onCollision=skip found the target taken at commit time (it was
   * free at begin): nothing was written, `rel`/`abs` name the existing file, `size` and
   * `digest` describe the bytes received (verified) and discarded.
   */
  skipped?: boolean;
  /**
   * Call right before the announcement of this landing goes out, in the same tick (write-
   * ahead, agent/announce.ts): writes the mark that clears its "landed, not yet announced"
   * record in the inbox journal synchronously, before it returns (a restart announces what
   * is still unmarked). Never rejects. A no-op for a skipped file.
   */
  markAnnounced: () => Promise<void>;
}

export interface IncomingFile {
  readonly rel: string;
  readonly offset: number;
  /** The file's hash algorithm (BeginRequest.hash). */
  readonly hash: HashAlg;
  /** Digest of bytes [0, offset) in `hash`, null when offset is 0. */
  readonly prefixDigest: string | null;
  /** `prefixDigest` when `hash` is SHA-256, else null. */
  readonly prefixSha256: string | null;
  write(chunk: Buffer): Promise<void>;
  /** All the bytes at once (nothing written before): an eager file held in memory. */
  writeWhole(chunks: readonly Buffer[]): Promise<void>;
  readonly received: number;
  /**
   * `expected`: the sender's digest in `hash` (null: nothing to check against, legacy).
   * `mayLand`: asked right before the rename; false leaves the verified file staged (InboxError CLOSED).
   */
  commit(expected: string | null, opts?: { mayLand?: () => boolean }): Promise<Landed>;
  abort(keepPartial: boolean): Promise<void>;
}

/** What an IncomingFile needs from its inbox. */
export interface IncomingContext {
  inboxName: string;
  inboxPath: string;
  inboxReal: string;
  policy: CollisionPolicy;
  log: Logger;
  staging: Staging;
  /** Lands (and journals) verified files in batches. */
  lander: Lander;
  /** The journal the lander writes records to (for the announced mark). */
  journal?: Journal;
  maxFileBytes: number;
  /** Called exactly once when the file is finished (committed, failed or aborted). */
  release: () => void;
}

export interface IncomingInit {
  id: string;
  source: string;
  rel: string;
  parts: string[];
  size: number | null;
  mtimeMs: number | null;
  offset: number;
  prefixDigest: string | null;
  /** Running hash already fed with bytes [0, offset). */
  hash: FileHash;
  handle: fs.FileHandle;
  /** A resume record (meta) exists in staging for this partial. */
  hasMeta: boolean;
  /** Who sends it and how, as its announcement names them (recorded for a recovery after a crash). */
  from?: string | undefined;
  via?: 'tdxfer' | 'legacy' | undefined;
}

/**
 * Write-behind: write() returns at once while fewer than HIGH_WATER_MARK bytes wait for
 * the disk, else waits until at most LOW_WATER_MARK do. One write runs at a time (in the
 * thread pool) and takes everything queued behind it, so resuming at the low mark (not
 * at 'drain', when the queue is empty) keeps that thread busy: with a plain 1 MiB
 * high-water mark every 1 MiB ended in a full drain and the disk thread idled until the
 * channel refilled it. Kept small: the network's chunks stay alive until written.
 */
const HIGH_WATER_MARK = 2 << 20;
const LOW_WATER_MARK = 1 << 20;

type State = 'open' | 'committing' | 'done';

/**
 * Flush and end the write stream. Not `stream.finished()`: with autoClose=false (we
 * fsync and close the handle ourselves) the stream never emits 'close', which
 * `finished()` waits for.
 */
function endStream(stream: WriteStream): Promise<void> {
  if (stream.destroyed) return Promise.reject(stream.errored ?? new Error('the file stream was destroyed'));
  return new Promise((resolve, reject) => {
    stream.end((err?: Error | null) => (err ? reject(err) : resolve()));
  });
}

export class IncomingFileImpl implements IncomingFile {
  readonly rel: string;
  readonly offset: number;
  readonly hash: HashAlg;
  readonly prefixDigest: string | null;
  readonly prefixSha256: string | null;
  #received: number;
  #ctx: IncomingContext;
  #init: IncomingInit;
  /** Created on the first streamed write; a file written whole (writeWhole) never needs one. */
  #streamOrNull: WriteStream | null = null;
  /** Bytes given to #stream whose write has not called back yet. */
  #unwritten = 0;
  #onWritten: (() => void) | null = null;
  readonly #written = (): void => {
    this.#unwritten -= this.#chunkLengths.shift() ?? 0;
    if (this.#onWritten && this.#unwritten <= LOW_WATER_MARK) this.#onWritten();
  };
  readonly #chunkLengths: number[] = [];
  #state: State = 'open';
  #failure: InboxError | null = null;
  #released = false;

  constructor(ctx: IncomingContext, init: IncomingInit) {
    this.#ctx = ctx;
    this.#init = init;
    this.rel = init.rel;
    this.offset = init.offset;
    this.hash = init.hash.alg;
    this.prefixDigest = init.prefixDigest;
    this.prefixSha256 = init.hash.alg === 'sha256' ? init.prefixDigest : null;
    this.#received = init.offset;
  }

  get #stream(): WriteStream {
    if (this.#streamOrNull) return this.#streamOrNull;
    const init = this.#init;
    // A stream on the numeric fd, not `handle.createWriteStream()`: a FileHandle stream
    // holds a reference that makes `handle.close()` wait until the stream closes, and we
    // need the handle open after the stream ends to fsync it.
    const stream = createWriteStream(this.#ctx.staging.dataPath(init.id), {
      fd: init.handle.fd,
      start: this.#received,
      highWaterMark: HIGH_WATER_MARK,
      autoClose: false,
    });
    stream.on('error', (err) => void this.#fail(this.#mapIoError(err, 'writing'), true));
    this.#streamOrNull = stream;
    return stream;
  }

  get received(): number {
    return this.#received;
  }

  get #where(): string {
    return `inbox "${this.#ctx.inboxName}" (${this.#ctx.inboxPath}), file ${JSON.stringify(this.rel)}`;
  }

  #mapIoError(err: unknown, doing: string): InboxError {
    if (err instanceof InboxError) return err;
    if (errCode(err) === 'ENOSPC') {
      return new InboxError('NO_SPACE', `The disk is full while ${doing} ${this.#where}; free space on that volume and retry`, { cause: err });
    }
    return new InboxError('IO', `Failed ${doing} ${this.#where}: ${describeError(err)}`, { cause: err });
  }

  #release(): void {
    if (this.#released) return;
    this.#released = true;
    this.#ctx.release();
  }

  /**
   * Let in-flight writes finish before closing the fd: closing under a pending write
   * could let that write hit another file that reuses the fd number.
   */
  async #closeHandle(): Promise<void> {
    const stream = this.#streamOrNull;
    if (stream && !stream.destroyed && !stream.writableFinished) await endStream(stream).catch(() => undefined); // aborting: the staged bytes are kept for resume whatever the close says
    await this.#init.handle.close().catch(() => undefined); // same
  }

  /** Enter the failed state once; NO_SPACE and hash/size failures make the partial useless (deleted). */
  async #fail(err: InboxError, deletePartial: boolean): Promise<void> {
    if (this.#failure) return;
    this.#failure = err;
    this.#state = 'done';
    await this.#closeHandle();
    if (deletePartial || err.code === 'NO_SPACE') await this.#ctx.staging.remove(this.#init.id);
    this.#ctx.log.warn('incoming file failed', { rel: this.rel, source: this.#init.source, code: err.code, err: err.message });
    this.#release();
  }

  #unusable(): InboxError {
    return this.#failure ?? new InboxError('CLOSED', `The transfer of ${this.#where} is already finished or aborted; begin it again`);
  }

  /** Fails the file (TOO_LARGE, partial deleted) when `n` more bytes would pass its announced size or the size limit. */
  async #checkRoom(n: number): Promise<void> {
    const limit = this.#init.size ?? this.#ctx.maxFileBytes;
    if (this.#received + n <= limit) return;
    const err = new InboxError(
      'TOO_LARGE',
      this.#init.size !== null
        ? `The sender sent more than the announced ${this.#init.size} bytes for ${this.#where}`
        : `${this.#where} exceeds the limit of ${formatBytes(this.#ctx.maxFileBytes)} (limits.maxFileBytes)`,
    );
    await this.#fail(err, true);
    throw err;
  }

  async write(chunk: Buffer): Promise<void> {
    if (this.#state !== 'open' || this.#failure) throw this.#unusable();
    await this.#checkRoom(chunk.length);
    const stream = this.#stream; // created here on the first write, starting at #received
    this.#init.hash.update(chunk);
    this.#received += chunk.length;
    this.#unwritten += chunk.length;
    this.#chunkLengths.push(chunk.length);
    if (stream.write(chunk, this.#written) || this.#unwritten <= LOW_WATER_MARK) return;
    await new Promise<void>((resolve, reject) => {
      const done = (): void => {
        this.#onWritten = null;
        this.#stream.off('close', done);
        this.#stream.off('error', done);
        if (this.#failure) reject(this.#failure);
        else resolve();
      };
      this.#onWritten = done;
      this.#stream.on('close', done);
      // With autoClose=false the stream is not destroyed on error (autoDestroy follows
      // autoClose), so neither 'drain' nor 'close' ever comes after ENOSPC: wait for
      // 'error' too. The constructor's listener runs first and has set #failure.
      this.#stream.on('error', done);
      if (this.#failure) done();
    });
  }

  /**
   * All the bytes at once, for a file nothing was written to yet (an eager file held in
   * memory): one positional write, no stream.
   */
  async writeWhole(chunks: readonly Buffer[]): Promise<void> {
    if (this.#state !== 'open' || this.#failure) throw this.#unusable();
    if (this.#streamOrNull || this.#received !== this.offset) throw new Error('writeWhole() after write()');
    await this.#checkRoom(chunks.reduce((n, c) => n + c.length, 0));
    for (const c of chunks) this.#init.hash.update(c);
    try {
      let position = this.#received;
      let rest = chunks.filter((c) => c.length > 0);
      while (rest.length > 0) {
        const { bytesWritten } = await this.#init.handle.writev(rest, position);
        position += bytesWritten;
        // Short writes are rare but legal: continue after what was written.
        let skip = bytesWritten;
        while (rest.length > 0 && skip >= rest[0]!.length) skip -= rest.shift()!.length;
        if (skip > 0) rest = [rest[0]!.subarray(skip), ...rest.slice(1)];
      }
      this.#received = position;
    } catch (err) {
      const e = this.#mapIoError(err, 'writing');
      await this.#fail(e, true);
      throw e;
    }
  }

  async commit(expected: string | null, opts: { mayLand?: () => boolean } = {}): Promise<Landed> {
    if (this.#state !== 'open' || this.#failure) throw this.#unusable();
    this.#state = 'committing';
    const { id, size, source } = this.#init;
    const staging = this.#ctx.staging;
    try {
      if (this.#streamOrNull) await endStream(this.#streamOrNull);
      await this.#init.handle.sync();
      await this.#init.handle.close();
    } catch (err) {
      const e = this.#failure ?? this.#mapIoError(err, 'flushing');
      await this.#fail(e, false);
      throw e;
    }
    if (this.#failure) throw this.#failure;
    if (size !== null && this.#received !== size) {
      const err = new InboxError('SIZE_MISMATCH', `${this.#where}: announced ${size} bytes but received ${this.#received}; the partial file was discarded`);
      await this.#fail(err, true);
      throw err;
    }
    const alg = this.hash;
    const digest = this.#init.hash.digest();
    if (expected !== null && expected.toLowerCase() !== digest) {
      const err = new InboxError('HASH_MISMATCH', `${this.#where}: ${hashLabel(alg)} of the received bytes is ${digest}, the sender announced ${expected}; the partial file was discarded`);
      await this.#fail(err, true);
      throw err;
    }
    let outcome;
    const records: LandedRecord[] = [];
    const { from, via } = this.#init;
    try {
      outcome = await this.#ctx.lander.land({
        parts: this.#init.parts,
        from: staging.dataPath(id),
        record: (landedRel) => {
          const rec: LandedRecord = {
            source, rel: this.rel, landedRel, size: this.#received, mtimeMs: this.#init.mtimeMs, ...(alg === 'sha256' ? { sha256: digest } : { xxh128: digest }), at: Date.now(),
            pending: true, ...(from !== undefined ? { from } : {}), ...(via !== undefined ? { via } : {}),
          };
          records.push(rec);
          return rec;
        },
        ...(opts.mayLand ? { mayLand: opts.mayLand } : {}),
      });
    } catch (err) {
      // Retryable failures keep the verified bytes in staging (meta intact): a retry
      // resumes at offset = size. Refusals (BAD_NAME) cannot succeed later: drop them.
      const e = this.#mapIoError(err, 'moving into');
      if (!e.retryable) await staging.remove(id);
      this.#failure = e;
      this.#state = 'done';
      if (e.code === 'CLOSED') this.#ctx.log.info('stopping: the received file stays staged', { rel: this.rel, source });
      else this.#ctx.log.error('could not move a received file into the inbox', { rel: this.rel, source, code: e.code, err: e.message });
      this.#release();
      throw e;
    }
    this.#state = 'done';
    const base = { inbox: this.#ctx.inboxName, size: this.#received, hash: alg, digest, sha256: alg === 'sha256' ? digest : null };
    if (outcome.status === 'skipped') {
      await staging.remove(id);
      this.#ctx.log.info('file already exists, discarded the received copy (onCollision=skip)', { rel: outcome.rel, source });
      this.#release();
      return { ...base, rel: outcome.rel, abs: outcome.abs, renamedFrom: null, skipped: true, markAnnounced: () => Promise.resolve() };
    }
    if (this.#init.hasMeta) await staging.removeMeta(id);
    this.#release();
    const journal = this.#ctx.journal;
    // Synchronous: every record's mark is written before this returns (Journal.markAnnounced).
    const markAnnounced = (): Promise<void> => (journal ? Promise.all(records.splice(0).map((r) => journal.markAnnounced(r))).then(() => undefined) : Promise.resolve());
    return { ...base, rel: outcome.rel, abs: outcome.abs, renamedFrom: outcome.renamedFrom, markAnnounced };
  }

  async abort(keepPartial: boolean): Promise<void> {
    try {
      if (this.#state !== 'open' || this.#failure) return;
      this.#state = 'done';
      // Flushes what was accepted, so a resume continues right after it.
      await this.#closeHandle();
      if (!keepPartial) await this.#ctx.staging.remove(this.#init.id);
    } catch (err) {
      this.#ctx.log.warn('error while aborting an incoming file', { rel: this.rel, err: describeError(err) });
    } finally {
      this.#release();
    }
  }
}
