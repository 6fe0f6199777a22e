/**
 * Where the bytes of outgoing files come from, agent-wide (issue #19): one object built by
 * the composition root (agent/compose.ts) and shared by every connection of every
 * destination, so memory does not grow with the number of peers:
 *
 * - read buffers: one pool (`readAheadBytes`) for every streamed file;
 * - streamed files: one SharedRead per file version being sent (shared-read.ts), which
 *   every destination sending it at the same time joins; a destination that cannot join
 *   (it came after the start was dropped) or falls out reads on its own;
 * - small (eager) files: EagerFiles, read and hashed once within `eagerBytes`.
 *
 * `stats` counts the bytes read from outbox files and hashed for sending (logged at stop
 * as "sending reads: …"; the fan-out bench reads it).
 */
import { createFileHash, type FileHash, type HashAlg } from '../hash.js';
import type { TransferConfig } from '../config/types.js';
import type { Logger } from '../log.js';
import { BufferPool } from './chunks.js';
import { EagerFiles } from './eager-files.js';
import { SharedRead, type SharedReader } from './shared-read.js';
import { QuickFs } from '../quickfs.js';
import { OwnRead, type ChunkSource, type SendStats, type SourceChunk, type SourceFile } from './source-file.js';

const MiB = 1024 * 1024;
/** Read buffers all back and unused this long are let go (memory between bursts). */
const POOL_IDLE_MS = 2000;
/** Files with destinations expected, at most (the oldest counts go first). */
const MAX_EXPECTED = 10_000;

function keyOf(f: SourceFile): string {
  return `${f.size}:${f.mtimeMs}:${f.abs}`;
}

export interface SendSourcesOptions {
  /** Bytes per read (transfer.chunkBytes). */
  chunkBytes: number;
  log: Logger;
  /** Agent-wide bytes of small files held whole (default 8 MiB, what one connection had before). */
  eagerBytes?: number;
  /** Agent-wide bytes of read buffers for streamed files (default 32 MiB). */
  readAheadBytes?: number;
  /**
   * How far (bytes) a destination may fall behind the fastest one sending the same file
   * before it reads on its own (default 16 MiB, at most half of readAheadBytes): what one
   * shared read holds at most.
   */
  windowBytes?: number;
  /** How long the slowest readers may hold a full window (or one short of buffers) before they read on their own (default 500 ms). */
  graceMs?: number;
}

/** A destination's source for one streamed file, opened before its OFFER (so the file's start is held for it). */
export interface StreamSource extends ChunkSource {
  /**
   * The receiver resumes at `offset`: go on from there, continuing `hash` (the prefix's,
   * already checked). Before the first next() only.
   */
  seek(offset: number, hash: FileHash): Promise<void>;
}

export class SendSources {
  readonly stats: SendStats = { read: 0, hashed: 0 };
  readonly pool: BufferPool;
  readonly eager: EagerFiles;
  /** The quick (synchronous) file calls below the outboxes (quickfs.ts; each watcher registers its outbox). */
  readonly quick: QuickFs;
  readonly #reads = new Map<string, SharedRead>();
  /** Destinations expected to stream a file not being read yet (expect()). */
  readonly #expected = new Map<string, number>();
  readonly #capacity: number;
  readonly #graceMs: number;

  constructor(private readonly opts: SendSourcesOptions) {
    const chunk = opts.chunkBytes;
    const buffers = Math.max(4, Math.floor((opts.readAheadBytes ?? 32 * MiB) / chunk));
    this.pool = new BufferPool(chunk, buffers, POOL_IDLE_MS);
    // Half the pool at most for one window: the rest goes to sockets' writes, own reads, other files.
    this.#capacity = Math.max(2, Math.min(Math.ceil((opts.windowBytes ?? 16 * MiB) / chunk), Math.floor(buffers / 2)));
    this.#graceMs = opts.graceMs ?? 500;
    this.quick = new QuickFs({ log: opts.log });
    this.eager = new EagerFiles(opts.eagerBytes ?? 8 * MiB, this.stats, this.quick);
  }

  /** The agent's sources as the config's `transfer` section sizes them. */
  static fromConfig(t: Pick<TransferConfig, 'chunkBytes' | 'readBufferBytes' | 'eagerBufferBytes' | 'fanoutLagBytes'>, log: Logger): SendSources {
    return new SendSources({ chunkBytes: t.chunkBytes, log, readAheadBytes: t.readBufferBytes, eagerBytes: t.eagerBufferBytes, windowBytes: t.fanoutLagBytes });
  }

  /** Small sources for one connection of its own (`tdxfer send`, tests opening a PeerConnection alone). */
  static single(chunkBytes: number, log: Logger): SendSources {
    return new SendSources({ chunkBytes, log, eagerBytes: 8 * MiB, readAheadBytes: 6 * chunkBytes, windowBytes: 3 * chunkBytes });
  }

  /** Shared reads running now. */
  get reading(): number {
    return this.#reads.size;
  }

  /**
   * `file` is about to go to `destinations` more destinations (agent.ts, a fan-out; or
   * destinations that a `peer: "*"` route added later, once their peer appeared): the
   * first one to stream it keeps its start for the others until they come, or until they
   * held it for the grace period. Only a count until then (a backlog of files costs a map
   * entry each). Once its read runs, destinations added later are held for in that read
   * if its start is still there; else each reads on its own when it comes.
   */
  expect(file: SourceFile, destinations: number): void {
    if (destinations < 1) return;
    const key = keyOf(file);
    const running = this.#reads.get(key);
    if (running && !running.closed) return running.expect(destinations);
    const n = (this.#expected.get(key) ?? 0) + destinations;
    if (n < 2) return; // one destination alone: nobody to wait for
    this.#expected.set(key, n);
    // Counts of files never streamed (jobs cancelled, the version superseded) must not pile up.
    if (this.#expected.size > MAX_EXPECTED) this.#expected.delete(this.#expected.keys().next().value!);
  }

  /**
   * One destination of an expect()ed file will not stream it (it goes eager). Returns true
   * when no other destination is expected for this version any more (the eager cache need
   * not keep it once this one sent it: eager-files.ts hold()).
   */
  arrived(file: SourceFile): boolean {
    const key = keyOf(file);
    const read = this.#reads.get(key);
    if (read) {
      read.arrived();
      return false;
    }
    const n = (this.#expected.get(key) ?? 0) - 1;
    if (n > 0) this.#expected.set(key, n);
    else this.#expected.delete(key);
    return n <= 0;
  }

  /**
   * A source of `file` from byte 0 with its whole-file hash in `alg`: a reader of the
   * shared read running for this version, or of a new one.
   */
  async open(file: SourceFile, alg: HashAlg): Promise<StreamSource> {
    const key = keyOf(file);
    const running = this.#reads.get(key);
    if (running && !running.closed) {
      const r = await running.attach(0, alg, null);
      running.arrived();
      if (r) return r;
    }
    // None, or its start is gone: a new one (later destinations join this one), holding
    // byte 0 for the other destinations expected.
    const read = this.#newRead(file);
    read.expect((this.#expected.get(key) ?? 1) - 1);
    this.#expected.delete(key);
    const r: SharedReader | null = await read.attach(0, alg, null);
    // Others joined it while this one made its hash and already went past byte 0: read alone.
    return r ?? new OwnStream(file, this.pool, alg, this.stats);
  }

  #newRead(file: SourceFile): SharedRead {
    const key = keyOf(file);
    const read: SharedRead = new SharedRead(file, {
      pool: this.pool,
      capacity: this.#capacity,
      // Two chunks ahead of the fastest destination (one read in flight, one ready): what it
      // takes was read just before, still in the CPU's cache when hashed and encrypted.
      readAhead: 2,
      graceMs: this.#graceMs,
      stats: this.stats,
      log: this.opts.log,
      onClosed: () => {
        if (this.#reads.get(key) === read) this.#reads.delete(key);
      },
    });
    this.#reads.set(key, read);
    return read;
  }

  /** "sending reads: …" for the stop line. */
  summary(): string {
    return `sending reads: ${this.stats.read} bytes read, ${this.stats.hashed} bytes hashed`;
  }
}

/** A destination's own read as a StreamSource (made at its first seek or next). */
class OwnStream implements StreamSource {
  #read: OwnRead | null = null;

  constructor(
    private readonly file: SourceFile,
    private readonly pool: BufferPool,
    private readonly alg: HashAlg,
    private readonly stats: SendStats,
  ) {}

  async seek(offset: number, hash: FileHash): Promise<void> {
    this.#read = new OwnRead(this.file, this.pool, offset, hash, this.stats);
  }

  async next(): Promise<SourceChunk | null> {
    this.#read ??= new OwnRead(this.file, this.pool, 0, await createFileHash(this.alg), this.stats);
    return this.#read.next();
  }

  digest(): string {
    if (!this.#read) throw new Error('digest before the end');
    return this.#read.digest();
  }

  async close(): Promise<void> {
    await this.#read?.close();
  }
}
