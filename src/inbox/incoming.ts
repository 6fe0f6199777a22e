/**
 * One file being received into an inbox: bytes stream into a staging file (hashed on
 * the way), and `commit` verifies and lands it. See the contract in inbox.ts.
 */
import { hashLabel, type FileHash, type HashAlg } from '../hash.js';
import type { StagedHandle } from './staged-io.js';
import { GatherWriter, type GatherOptions } from './gather-writer.js';
import { BIG_RECEIVE_BYTES, duringBigReceive } from '../heap-tuning.js';
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
  /** The next bytes; resolves once they were taken (backpressure), rejects on failure. */
  write(chunk: Buffer): Promise<void>;
  /**
   * write() without a promise per chunk (the receiver's hot path, issue #12): returns
   * nothing when the bytes were taken at once (copied into the file's write buffer), else
   * a promise to wait for. Calls follow one another (wait for a returned promise first).
   */
  append(chunk: Buffer): void | Promise<void>;
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
  /** The streamed writes' periodic datasync (default: every SYNC_EVERY_BYTES, fs.fdatasync). */
  gather?: GatherOptions;
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
  handle: StagedHandle;
  /** A resume record (meta) exists in staging for this partial. */
  hasMeta: boolean;
  /** Who sends it and how, as its announcement names them (recorded for a recovery after a crash). */
  from?: string | undefined;
  via?: 'tdxfer' | 'legacy' | undefined;
}

type State = 'open' | 'committing' | 'done';

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
  #writerOrNull: GatherWriter | null = null;
  #state: State = 'open';
  #failure: InboxError | null = null;
  #released = false;
  /** Ends the heap's big-receive setting (heap-tuning.ts), for a big streamed file. */
  #endBigReceive: (() => void) | null = null;

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

  get #writer(): GatherWriter {
    if (this.#writerOrNull) return this.#writerOrNull;
    const hash = this.#init.hash;
    if ((this.#init.size ?? 0) - this.#received >= BIG_RECEIVE_BYTES) this.#endBigReceive = duringBigReceive();
    this.#writerOrNull = new GatherWriter(
      this.#init.handle.fd,
      this.#received,
      (bytes) => hash.update(bytes),
      // A failed datasync may have lost written bytes (the kernel reports it once): the partial is useless.
      (err, doing) => void this.#fail(this.#mapIoError(err, doing === 'syncing' ? 'flushing' : 'writing'), true),
      this.#ctx.gather,
    );
    return this.#writerOrNull;
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
    this.#endBigReceive?.();
    this.#ctx.release();
  }

  /**
   * Let in-flight writes finish before closing the fd: closing under a pending write
   * could let that write hit another file that reuses the fd number.
   */
  async #closeHandle(): Promise<void> {
    const writer = this.#writerOrNull;
    if (writer) {
      // What was accepted reaches the file (a resume continues right after it), unless it failed.
      if (this.#failure) await writer.settled();
      else await writer.drain().catch(() => undefined); // aborting: the staged bytes are kept for resume whatever the write says
      writer.release();
    }
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

  /** True when `n` more bytes stay within the announced size and the size limit. */
  #fits(n: number): boolean {
    return this.#received + n <= (this.#init.size ?? this.#ctx.maxFileBytes);
  }

  /** Fails the file (TOO_LARGE, partial deleted) when `n` more bytes would pass its announced size or the size limit. */
  async #checkRoom(n: number): Promise<void> {
    if (this.#fits(n)) return;
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
    await this.append(chunk);
  }

  append(chunk: Buffer): void | Promise<void> {
    if (this.#state !== 'open' || this.#failure) return Promise.reject(this.#unusable());
    if (!this.#fits(chunk.length)) return this.#checkRoom(chunk.length);
    const writer = this.#writer; // created on the first write, starting at #received
    this.#received += chunk.length;
    const taken = writer.write(chunk);
    if (taken === undefined) return;
    return taken.catch((err: unknown) => {
      throw this.#failure ?? this.#mapIoError(err, 'writing');
    });
  }

  /**
   * All the bytes at once, for a file nothing was written to yet (an eager file held in
   * memory): one positional write, no stream.
   */
  async writeWhole(chunks: readonly Buffer[]): Promise<void> {
    if (this.#state !== 'open' || this.#failure) throw this.#unusable();
    if (this.#writerOrNull || this.#received !== this.offset) throw new Error('writeWhole() after write()');
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
      const writer = this.#writerOrNull;
      const t0 = performance.now();
      if (writer) {
        await writer.drain();
        writer.release();
      }
      const t1 = performance.now();
      await this.#init.handle.sync();
      await this.#init.handle.close();
      // The tail after the last byte arrived (issue #12): what the periodic datasyncs left to do.
      if (writer && writer.syncs > 0) this.#ctx.log.debug('file flushed', { rel: this.rel, periodicSyncs: writer.syncs, drainMs: Math.round(t1 - t0), fsyncMs: Math.round(performance.now() - t1) });
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
