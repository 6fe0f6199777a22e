/**
 * Client side of protocol v1: one connection to one peer, carrying many files.
 * `sendFile` may be called concurrently (up to the caller's window): streaming is
 * serialised by a lock (one file's DATA at a time), acknowledgements are awaited
 * in parallel, so small files pipeline instead of paying a round trip each.
 *
 * Files up to the receiver's WELCOME.eagerMaxBytes go eager (PROTOCOL.md 6.4): read
 * whole before taking the lock (reads overlap), then OFFER, DATA and END are written at
 * once without waiting for ACCEPT, so a burst of small files streams back to back.
 */
import fs from 'node:fs';
import { BASELINE_HASH, createFileHash, hashLabel, hashOf, type FileHash, type HashAlg } from '../hash.js';
import { EventEmitter } from 'node:events';
import type { Logger } from '../log.js';
import { TdxError, describeError } from '../errors.js';
import { DEFAULT_LIMITS, makeNonce, peerErrorFrom, type Frame, type FrameOf } from '../protocol/index.js';
import { ClientHandshake, type HandshakeAction } from './handshake.js';
import { connectTransport } from '../transport/connect.js';
import { Mutex } from '../fsutil.js';
import { FrameChannel } from './channel.js';
import { BufferPool, ChunkReader } from './chunks.js';
import type { PeerPace } from '../limits/pacer.js';

const MAX_DATA_BYTES = DEFAULT_LIMITS.maxDataBytes;
/** Bytes of eager files read into memory and not yet written out, per connection (see EagerBudget). */
const EAGER_BUDGET_BYTES = 8 * 1024 * 1024;

/**
 * Bounds the memory of eager files a connection holds at once: the window lets many
 * files be read ahead, and a peer may announce eagerMaxBytes up to 16 MiB. A file larger
 * than the whole budget still goes, alone.
 */
class EagerBudget {
  #used = 0;
  #waiters: Array<() => void> = [];

  constructor(private readonly limit: number) {}

  async take(n: number): Promise<void> {
    while (this.#used > 0 && this.#used + n > this.limit) await new Promise<void>((r) => this.#waiters.push(r));
    this.#used += n;
  }

  give(n: number): void {
    this.#used -= n;
    const w = this.#waiters;
    this.#waiters = [];
    for (const f of w) f();
  }
}

export interface Identity {
  id: string;
  name: string;
  software: string;
}

export interface OpenOptions {
  host: string;
  port: number;
  key: Buffer;
  encrypt: boolean;
  self: Identity;
  connectTimeoutMs: number;
  handshakeTimeoutMs: number;
  idleTimeoutMs: number;
  chunkBytes: number;
  log: Logger;
  /** Bandwidth limits for this peer (limits/pacer.ts); absent: unlimited. */
  pace?: PeerPace | undefined;
  /** File hash algorithms to offer, most preferred first (security.hashes); default HASH_ALGS. */
  hashes?: readonly HashAlg[] | undefined;
}

export interface OutgoingFile {
  /** Absolute source path. */
  abs: string;
  inbox: string;
  /** Wire path ('/'-separated, relative). */
  path: string;
  /** Version being sent (from the watcher's settled stat). */
  size: number;
  mtimeMs: number;
  onProgress?: (bytesDone: number, total: number) => void;
}

export interface SendResult {
  status: 'stored' | 'skipped' | 'duplicate';
  /** Where the receiver put it (relative to its inbox). */
  path: string;
  /** The verified SHA-256 (ACK.sha256): set when the connection used SHA-256 and the file was stored. */
  sha256: string | null;
  /** The verified digest in `hashAlg` (ACK), null when nothing was stored. */
  hash?: string | null;
  hashAlg?: HashAlg;
  /** Bytes actually sent (0 for skipped/duplicate; less than size when resumed). */
  bytesSent: number;
  resumedFrom: number;
}

/** The file changed (re-render) or vanished while being sent: not an error of the link. */
export class SourceChangedError extends TdxError {
  constructor(message: string) {
    super('SOURCE_CHANGED', message);
  }
}

interface Pending {
  onAccept?: (f: FrameOf<'accept'>) => void;
  resolve: (f: FrameOf<'ack'>) => void;
  reject: (e: Error) => void;
}

export class PeerConnection extends EventEmitter<{ close: [TdxError | null] }> {
  private readonly pending = new Map<number, Pending>();
  private nextId = 1;
  /** One file's OFFER…END at a time on this connection; ACKs are awaited outside it. */
  private readonly streaming = new Mutex();
  private closedErr: TdxError | null = null;
  /** Read buffers for stream(), reused by every file of this connection. */
  private readonly pool: BufferPool;
  private readonly eagerBudget = new EagerBudget(EAGER_BUDGET_BYTES);
  /** Inboxes the peer announced in WELCOME. */
  inboxes: string[] = [];
  /** Largest file the peer takes as an eager OFFER (0: it does not). */
  eagerMaxBytes = 0;
  /** The file hash of this connection (WELCOME.hash; SHA-256 with a peer before v1.1). */
  hash: HashAlg = BASELINE_HASH;
  peerId = '';
  peerName = '';

  private constructor(
    private readonly channel: FrameChannel,
    private readonly opts: OpenOptions,
    readonly encrypted: boolean,
  ) {
    super();
    this.pool = new BufferPool(opts.chunkBytes);
    channel.on('close', (err) => {
      const e = err ?? new TdxError('CONNECTION_LOST', 'connection closed');
      this.closedErr = e;
      for (const p of this.pending.values()) p.reject(e);
      this.pending.clear();
      this.emit('close', err);
    });
  }

  get closed(): boolean {
    return this.closedErr !== null || this.channel.closed;
  }

  static async open(opts: OpenOptions): Promise<PeerConnection> {
    const { socket, encrypted } = await connectTransport({ host: opts.host, port: opts.port, key: opts.key, encrypt: opts.encrypt, timeoutMs: opts.connectTimeoutMs });
    const channel = new FrameChannel(socket, { idleTimeoutMs: opts.idleTimeoutMs });
    const conn = new PeerConnection(channel, opts, encrypted);
    await conn.handshake();
    return conn;
  }

  /** Runs the client handshake machine (handshake.ts): this only executes its actions. */
  private handshake(): Promise<void> {
    const hs = new ClientHandshake({
      key: this.opts.key,
      self: this.opts.self,
      clientNonce: makeNonce(),
      where: `${this.opts.host}:${this.opts.port}`,
      handshakeTimeoutMs: this.opts.handshakeTimeoutMs,
      ...(this.opts.hashes ? { hashes: this.opts.hashes } : {}),
    });
    return new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => run(hs.on({ kind: 'timeout' })), this.opts.handshakeTimeoutMs);
      const run = (actions: HandshakeAction[]): void => {
        for (const a of actions) {
          switch (a.kind) {
            case 'send':
              this.channel.send(a.frame);
              break;
            case 'close':
              if (a.how === 'end') this.channel.end();
              else this.channel.fail(a.error);
              break;
            case 'settle':
              clearTimeout(timer);
              if (a.error) reject(a.error);
              else {
                const p = a.peer!;
                this.peerId = p.agentId;
                this.peerName = p.name;
                this.inboxes = p.inboxes;
                this.eagerMaxBytes = p.eagerMaxBytes;
                this.hash = p.hash;
                this.channel.start((f) => this.onFrame(f));
                resolve();
              }
              break;
            default:
              break; // server-side actions: not produced by the client machine
          }
        }
      };
      this.channel.once('close', () => run(hs.on({ kind: 'closed' })));
      this.channel.start((f: Frame) => run(hs.on({ kind: 'frame', frame: f })));
      run(hs.start());
    });
  }

  private onFrame(f: Frame): void {
    switch (f.type) {
      case 'accept': {
        const p = this.pending.get(f.id);
        if (!p?.onAccept) throw new TdxError('OUT_OF_ORDER', `ACCEPT for unknown file ${f.id}`);
        const cb = p.onAccept;
        delete p.onAccept;
        cb(f);
        return;
      }
      case 'ack': {
        const p = this.pending.get(f.id);
        if (!p) throw new TdxError('OUT_OF_ORDER', `ACK for unknown file ${f.id}`);
        this.pending.delete(f.id);
        p.resolve(f);
        return;
      }
      case 'nack': {
        const p = this.pending.get(f.id);
        if (!p) throw new TdxError('OUT_OF_ORDER', `NACK for unknown file ${f.id}`);
        this.pending.delete(f.id);
        p.reject(peerErrorFrom(f));
        return;
      }
      case 'error': {
        this.opts.log.warn(`peer ${this.peerName} closed the connection: ${f.code}: ${f.message}`);
        this.channel.destroy(peerErrorFrom(f));
        return;
      }
      default:
        throw new TdxError('OUT_OF_ORDER', `unexpected ${f.type.toUpperCase()} from the receiver`);
    }
  }

  close(): void {
    this.channel.end();
  }

  destroy(): void {
    this.channel.destroy(new TdxError('CONNECTION_LOST', 'connection closed locally'));
  }

  /** Send one file; resolves once the receiver confirmed it durable and verified. */
  async sendFile(file: OutgoingFile): Promise<SendResult> {
    if (file.size <= this.eagerMaxBytes) return this.sendEager(file);
    const r = await this.streaming.run(() => {
      if (this.closedErr) throw this.closedErr;
      return this.offerAndStream(file, true);
    });
    const a = await r.ack;
    return { ...this.ackHash(a), status: a.status, path: a.path, bytesSent: r.bytesSent, resumedFrom: r.resumedFrom };
  }

  private async sendEager(file: OutgoingFile): Promise<SendResult> {
    if (this.closedErr) throw this.closedErr;
    await this.eagerBudget.take(file.size);
    let ack: Promise<FrameOf<'ack'>>;
    try {
      const data = await readWhole(file);
      const digest = await hashOf(this.hash, data);
      // Wrapped in an object: a bare promise would be awaited, holding the lock until the ACK.
      ({ ack } = await this.streaming.run(async () => {
        if (this.closedErr) throw this.closedErr;
        const id = this.nextId++;
        const answer = this.request(id).ack;
        this.channel.send({ type: 'offer', id, inbox: file.inbox, path: file.path, size: file.size, mtimeMs: file.mtimeMs, resume: false, eager: true });
        const step = Math.min(this.opts.chunkBytes, MAX_DATA_BYTES);
        for (let o = 0; o < data.length; o += step) await this.sendChunk(data.subarray(o, Math.min(data.length, o + step)));
        this.channel.send(this.endFrame(id, digest));
        return { ack: answer };
      }));
    } finally {
      this.eagerBudget.give(file.size);
    }
    file.onProgress?.(file.size, file.size);
    const a = await ack;
    return { ...this.ackHash(a), status: a.status, path: a.path, bytesSent: a.status === 'stored' ? file.size : 0, resumedFrom: 0 };
  }

  /** END with the whole-file digest in the field of this connection's hash (PROTOCOL.md 4.4). */
  private endFrame(id: number, digest: string): FrameOf<'end'> {
    return this.hash === 'sha256' ? { type: 'end', id, sha256: digest } : { type: 'end', id, xxh128: digest };
  }

  private ackHash(a: FrameOf<'ack'>): Pick<SendResult, 'sha256' | 'hash' | 'hashAlg'> {
    const digest = this.hash === 'sha256' ? a.sha256 : (a.xxh128 ?? null);
    return { sha256: a.sha256, hash: digest, hashAlg: this.hash };
  }

  private request(id: number): { accept: Promise<FrameOf<'accept'> | null>; ack: Promise<FrameOf<'ack'>> } {
    let onAccept!: (f: FrameOf<'accept'> | null) => void;
    const accept = new Promise<FrameOf<'accept'> | null>((r) => (onAccept = r));
    const ack = new Promise<FrameOf<'ack'>>((resolve, reject) => {
      this.pending.set(id, {
        onAccept: (f) => onAccept(f),
        // An ACK/NACK/close before ACCEPT settles `accept` as null so the streamer stops waiting.
        resolve: (f) => {
          onAccept(null);
          resolve(f);
        },
        reject: (e) => {
          onAccept(null);
          reject(e);
        },
      });
    });
    ack.catch(() => undefined); // observed by sendFile; avoid unhandled rejections while streaming
    return { accept, ack };
  }

  private async offerAndStream(file: OutgoingFile, resume: boolean): Promise<{ ack: Promise<FrameOf<'ack'>>; bytesSent: number; resumedFrom: number }> {
    const id = this.nextId++;
    const { accept, ack } = this.request(id);
    this.channel.send({ type: 'offer', id, inbox: file.inbox, path: file.path, size: file.size, mtimeMs: file.mtimeMs, resume });
    const acc = await accept;
    if (!acc) {
      // ACK (skipped / duplicate) or NACK straight away: nothing to stream.
      return { ack, bytesSent: 0, resumedFrom: 0 };
    }
    const hash = await createFileHash(this.hash);
    let offset = acc.offset;
    if (offset > 0) {
      // The receiver's prefix digest, in this connection's hash: the whole-file hash then
      // goes on from it, so END still covers every byte of the file.
      const prefix = this.hash === 'sha256' ? acc.prefixSha256 : (acc.prefixXxh128 ?? null);
      const ok = offset <= file.size && prefix !== null && (await hashPrefix(file.abs, offset, hash, this.opts.chunkBytes)) === prefix;
      if (!ok) {
        this.opts.log.info(`receiver's partial of ${file.path} differs from ours (${hashLabel(this.hash)}): sending it again from the start`, { peer: this.peerName });
        this.channel.send({ type: 'abort', id, reason: 'prefix mismatch: restarting from 0' });
        this.pending.delete(id);
        return this.offerAndStream(file, false);
      }
      this.opts.log.info(`resuming ${file.path} at byte ${offset} of ${file.size}`, { peer: this.peerName });
    }
    const resumedFrom = offset;
    try {
      offset = await this.stream(file, offset, hash);
    } catch (err) {
      // Whatever stopped the stream (source changed, read error), the receiver must
      // learn that this file is over before the next OFFER, or the session breaks.
      if (!this.channel.closed) {
        this.channel.send({ type: 'abort', id, reason: err instanceof TdxError ? err.message : describeError(err) });
        this.pending.delete(id);
      }
      throw err;
    }
    this.channel.send(this.endFrame(id, hash.digest()));
    return { ack, bytesSent: offset - resumedFrom, resumedFrom };
  }

  /**
   * One chunk as DATA: whole when no limit applies, else in slices the pacer allows
   * one by one (a limit changed mid-file applies from the next slice).
   */
  private async sendChunk(chunk: Buffer, onWritten?: () => void): Promise<void> {
    const pace = this.opts.pace;
    if (!pace || pace.slice() === 0) {
      await this.channel.sendData(chunk, onWritten);
      pace?.sent(chunk.length);
      return;
    }
    for (let o = 0; o < chunk.length; ) {
      const n = Math.min(pace.slice() || chunk.length, chunk.length - o);
      const wait = pace.take(n);
      if (wait) await wait;
      const end = o + n;
      await this.channel.sendData(chunk.subarray(o, end), end === chunk.length ? onWritten : undefined);
      pace.sent(n);
      o = end;
    }
  }

  /** Streams [offset, size) as DATA frames; returns the final offset. */
  private async stream(file: OutgoingFile, start: number, hash: FileHash): Promise<number> {
    let offset = start;
    if (file.size > start) {
      // Pooled buffers, one read ahead (chunks.ts); a buffer goes back to the pool when
      // the socket has written it.
      let reader: ChunkReader | null = null;
      const release = (chunk: Buffer) => () => this.pool.release(chunk);
      try {
        reader = await ChunkReader.open(file.abs, this.pool, start, file.size);
        for (let chunk = await reader.next(); chunk !== null; chunk = await reader.next()) {
          hash.update(chunk);
          await this.sendChunk(chunk, release(chunk));
          offset += chunk.length;
          file.onProgress?.(offset, file.size);
        }
      } catch (err) {
        if ((err as { code?: string }).code === 'ENOENT') throw new SourceChangedError(`${file.abs} disappeared while being sent`);
        throw err instanceof TdxError ? err : new TdxError('READ_FAILED', `cannot read ${file.abs}: ${describeError(err)}`, { cause: err });
      } finally {
        await reader?.close().catch(() => undefined); // read-only handle: a close error loses nothing
      }
    }
    // The version we announced must be the one we sent: a re-render under the same
    // name (size or mtime changed) is sent again as its own version.
    let st: fs.Stats;
    try {
      st = await fs.promises.stat(file.abs);
    } catch {
      throw new SourceChangedError(`${file.abs} disappeared while being sent`);
    }
    if (offset !== file.size || st.size !== file.size || st.mtimeMs !== file.mtimeMs) {
      throw new SourceChangedError(`${file.abs} changed while being sent (size ${file.size} → ${st.size}); the new version will be sent`);
    }
    return offset;
  }
}

/**
 * The whole of a small file, checked to be the version announced: size and mtime from
 * the same open handle, and no byte more or less than announced.
 */
async function readWhole(file: OutgoingFile): Promise<Buffer> {
  let fh: fs.promises.FileHandle;
  try {
    fh = await fs.promises.open(file.abs, 'r');
  } catch (err) {
    if ((err as { code?: string }).code === 'ENOENT') throw new SourceChangedError(`${file.abs} disappeared before it was sent`);
    throw new TdxError('READ_FAILED', `cannot read ${file.abs}: ${describeError(err)}`, { cause: err });
  }
  try {
    const buf = Buffer.allocUnsafe(file.size);
    let n = 0;
    while (n < file.size) {
      const { bytesRead } = await fh.read(buf, n, file.size - n, n);
      if (bytesRead === 0) break; // shorter than announced
      n += bytesRead;
    }
    // Longer than announced shows in the size of the same open file.
    const st = await fh.stat();
    if (n !== file.size || st.size !== file.size || st.mtimeMs !== file.mtimeMs) {
      throw new SourceChangedError(`${file.abs} changed before it was sent (size ${file.size} → ${st.size}); the new version will be sent`);
    }
    return buf.subarray(0, n);
  } catch (err) {
    if (err instanceof TdxError) throw err;
    throw new TdxError('READ_FAILED', `cannot read ${file.abs}: ${describeError(err)}`, { cause: err });
  } finally {
    await fh.close().catch(() => undefined); // read-only handle: a close error loses nothing
  }
}

async function hashPrefix(abs: string, length: number, hash: FileHash, chunk: number): Promise<string> {
  const rs = fs.createReadStream(abs, { start: 0, end: length - 1, highWaterMark: chunk });
  let n = 0;
  for await (const c of rs as AsyncIterable<Buffer>) {
    hash.update(c);
    n += c.length;
  }
  if (n !== length) throw new SourceChangedError(`${abs} is shorter than the receiver's partial copy`);
  return hash.peek();
}
