/**
 * Client side of protocol v1: one connection to one peer, carrying many files.
 * `sendFile` may be called concurrently (up to the caller's window): streaming is
 * serialised by a lock (one file's DATA at a time), acknowledgements are awaited
 * in parallel, so small files pipeline instead of paying a round trip each.
 *
 * Files up to the receiver's WELCOME.eagerMaxBytes go eager (PROTOCOL.md 6.4): read
 * whole ahead of taking the lock (reads overlap), then OFFER, DATA and END are written at
 * once without waiting for ACCEPT, so a burst of small files streams back to back.
 *
 * File bytes come from the agent's SendSources (sources.ts): a file going to several
 * destinations at once is read and hashed once for all of them, within one memory budget.
 */
import { BASELINE_HASH, createFileHash, hashLabel, type HashAlg } from '../hash.js';
import { EventEmitter } from 'node:events';
import type { Logger } from '../log.js';
import { TdxError, describeError } from '../errors.js';
import { DEFAULT_LIMITS, makeNonce, peerErrorFrom, type Frame, type FrameOf } from '../protocol/index.js';
import { ClientHandshake, type HandshakeAction } from './handshake.js';
import { connectTransport } from '../transport/connect.js';
import { Mutex } from '../fsutil.js';
import { FrameChannel } from './channel.js';
import type { PeerPace } from '../limits/pacer.js';
import { SendSources, type StreamSource } from './sources.js';
import { SourceChangedError, hashPrefix } from './source-file.js';

export { SourceChangedError };

const MAX_DATA_BYTES = DEFAULT_LIMITS.maxDataBytes;
/** Largest DATA frame of an eager file. */
const EAGER_PIECE = 256 * 1024;
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
  /**
   * The agent's read buffers, shared reads and eager-file budget (sources.ts), shared by
   * every connection; absent: small ones of this connection's own.
   */
  sources?: SendSources | undefined;
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
  /** Releases of buffers lent to the socket, not yet written (run at close). */
  private readonly lent = new Set<() => void>();
  /** Where file bytes come from: read buffers, shared reads, eager files (agent-wide). */
  private readonly sources: SendSources;
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
    this.sources = opts.sources ?? SendSources.single(opts.chunkBytes, opts.log);
    channel.on('close', (err) => {
      for (const done of [...this.lent]) done();
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

  /**
   * An eager file (PROTOCOL.md 6.4): prefetched before its turn (reads overlap with the
   * file on the wire), held whole only while written (sources.ts: read and hashed once
   * for every destination, within the agent's budget).
   */
  private async sendEager(file: OutgoingFile): Promise<SendResult> {
    if (this.closedErr) throw this.closedErr;
    const eager = this.sources.eager;
    // Not streamed to this destination: the shared read need not wait for it. The last
    // destination expected lets the eager cache drop the file once it sent it.
    const last = this.sources.arrived(file);
    eager.prefetch(file, this.hash);
    // Wrapped in an object: a bare promise would be awaited, holding the lock until the ACK.
    const { ack } = await this.streaming.run(async () => {
      if (this.closedErr) throw this.closedErr;
      const held = await eager.hold(file, last);
      let handed = false; // to the socket, which releases it once it wrote the last byte
      try {
        const digest = await held.digest(this.hash);
        if (this.closedErr) throw this.closedErr;
        const id = this.nextId++;
        const answer = this.request(id).ack;
        this.channel.send({ type: 'offer', id, inbox: file.inbox, path: file.path, size: file.size, mtimeMs: file.mtimeMs, resume: false, eager: true });
        // Pieces of at most EAGER_PIECE: what a socket holds encrypted at once, times every destination.
        const step = Math.min(this.opts.chunkBytes, MAX_DATA_BYTES, EAGER_PIECE);
        const len = held.data.length;
        for (let o = 0; o < len; o += step) {
          const end = Math.min(len, o + step);
          handed = end === len;
          await this.sendChunk(held.data.subarray(o, end), handed ? held.release : undefined);
        }
        this.channel.send(this.endFrame(id, digest));
        return { ack: answer };
      } finally {
        if (!handed) held.release();
      }
    });
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
    // Opened before the OFFER: the file's start stays held in the shared read while the
    // receiver answers, so destinations offered the same file together read it together.
    const source = await this.sources.open(file, this.hash);
    try {
      const id = this.nextId++;
      const { accept, ack } = this.request(id);
      this.channel.send({ type: 'offer', id, inbox: file.inbox, path: file.path, size: file.size, mtimeMs: file.mtimeMs, resume });
      const acc = await accept;
      if (!acc) {
        // ACK (skipped / duplicate) or NACK straight away: nothing to stream.
        return { ack, bytesSent: 0, resumedFrom: 0 };
      }
      const offset = acc.offset;
      if (offset > 0) {
        // The receiver's prefix digest, in this connection's hash: the whole-file hash then
        // goes on from it, so END still covers every byte of the file.
        const hash = await createFileHash(this.hash);
        const prefix = this.hash === 'sha256' ? acc.prefixSha256 : (acc.prefixXxh128 ?? null);
        const ok = offset <= file.size && prefix !== null && (await hashPrefix(file.abs, offset, hash, this.opts.chunkBytes, this.sources.stats)) === prefix;
        if (!ok) {
          this.opts.log.info(`receiver's partial of ${file.path} differs from ours (${hashLabel(this.hash)}): sending it again from the start`, { peer: this.peerName });
          this.channel.send({ type: 'abort', id, reason: 'prefix mismatch: restarting from 0' });
          this.pending.delete(id);
          await source.close();
          return this.offerAndStream(file, false);
        }
        this.opts.log.info(`resuming ${file.path} at byte ${offset} of ${file.size}`, { peer: this.peerName });
        await source.seek(offset, hash);
      }
      let sent: number;
      try {
        sent = await this.stream(file, offset, source);
      } catch (err) {
        // Whatever stopped the stream (source changed, read error), the receiver must
        // learn that this file is over before the next OFFER, or the session breaks.
        if (!this.channel.closed) {
          this.channel.send({ type: 'abort', id, reason: err instanceof TdxError ? err.message : describeError(err) });
          this.pending.delete(id);
        }
        throw err;
      }
      this.channel.send(this.endFrame(id, source.digest()));
      return { ack, bytesSent: sent - offset, resumedFrom: offset };
    } finally {
      await source.close();
    }
  }

  /**
   * One chunk as DATA: whole when no limit applies, else in slices the pacer allows
   * one by one (a limit changed mid-file applies from the next slice).
   */
  private async sendChunk(chunk: Buffer, release?: () => void): Promise<void> {
    // Buffers are shared agent-wide: whatever the socket does with its write callback, a
    // closed connection gives back what it still held (releases are idempotent).
    let onWritten: (() => void) | undefined;
    if (release) {
      const done = (): void => {
        this.lent.delete(done);
        release();
      };
      this.lent.add(done);
      onWritten = done;
      if (this.channel.closed) done();
    }
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

  /**
   * Streams the source's bytes from `start` as DATA frames; returns the final offset. The
   * source checks that the file is still the version announced (size, mtime) at its end.
   */
  private async stream(file: OutgoingFile, start: number, source: StreamSource): Promise<number> {
    let offset = start;
    for (let c = await source.next(); c !== null; c = await source.next()) {
      try {
        await this.sendChunk(c.data, c.release);
      } catch (err) {
        c.release(); // not written: the socket holds no reference to it
        throw err;
      }
      offset += c.data.length;
      file.onProgress?.(offset, file.size);
    }
    return offset;
  }
}
