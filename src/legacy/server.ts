/**
 * Listener for the original TouchDesigner "Threaded TCP Transfer" TOX senders (opt-in).
 *
 * One file per connection: header, then `content-length` bytes of base64 that are
 * decoded on the fly straight into an Inbox staging file (memory stays flat whatever
 * the size). `{"success": true}` goes back only after the Inbox commit resolved, i.e.
 * the file is fsynced and visible. Any failure aborts the staging file (nothing partial
 * remains), answers `{"success": false, "error": ...}` when the socket can still carry
 * it, logs source, name and reason, and closes only that connection.
 */
import net from 'node:net';
import type { Inbox, IncomingFile } from '../inbox/inbox.js';
import type { Logger } from '../log.js';
import type { IncomingHandle, IncomingTracker } from '../agent/incoming.js';
import type { ReceivedInfo } from '../types.js';
import { TdxError, describeError } from '../errors.js';
import {
  Base64DecoderCore,
  LegacyHeaderDecoder,
  base64MaxEncodedLength,
  legacyAnswer,
  type LegacyFileHeader,
} from '../protocol/legacy.js';
import { buildAllowList, normalizeAddress, type AllowList } from './allow.js';

export interface LegacyListenerOptions {
  host: string;
  port: number;
  inbox: Inbox;
  /** Source IPs / CIDRs allowed to connect; empty = everyone. */
  allow: string[];
  /** Largest decoded file accepted, bytes. */
  maxFileBytes: number;
  log: Logger;
  /** A connection with no traffic for this long is dropped. Default 60 s. */
  idleTimeoutMs?: number;
  /** Simultaneous legacy connections; more are closed at once. Default 16. */
  maxConnections?: number;
  /** A file landed; `markAnnounced` as in ReceiverDeps.onReceived. */
  onReceived?: (info: ReceivedInfo, markAnnounced?: () => Promise<void>) => void;
  /** Shows files while they arrive (status, events, dashboard). */
  incoming?: IncomingTracker;
  /** Wall clock of received files' times (durationMs, at), ms since the epoch; default Date.now (the agent passes its clock). */
  now?: () => number;
}

/**
 * After answering, how long we wait for the sender to close (reading and discarding
 * anything it still sends, so the answer is not lost to a TCP reset) before closing.
 */
const LINGER_MS = 2000;

export class LegacyListener {
  private readonly log: Logger;
  private readonly allowList: AllowList;
  private readonly idleTimeoutMs: number;
  private readonly maxConnections: number;
  private server: net.Server | null = null;
  private readonly sockets = new Set<net.Socket>();
  private readonly handlers = new Set<Promise<void>>();
  private stopping = false;

  constructor(private readonly opts: LegacyListenerOptions) {
    this.log = opts.log.child({ component: 'legacy' });
    this.allowList = buildAllowList(opts.allow);
    this.idleTimeoutMs = opts.idleTimeoutMs ?? 60_000;
    this.maxConnections = opts.maxConnections ?? 16;
  }

  start(): Promise<{ host: string; port: number }> {
    if (this.server) return Promise.reject(new Error('LegacyListener already started'));
    // allowHalfOpen: a sender may shut down its side after the payload and still wait for the answer.
    const server = net.createServer({ allowHalfOpen: true }, (socket) => this.accept(socket));
    this.server = server;
    return new Promise((resolve, reject) => {
      const onError = (err: NodeJS.ErrnoException): void => {
        this.server = null;
        reject(
          new TdxError(
            err.code === 'EADDRINUSE' ? 'LISTEN_IN_USE' : 'LISTEN_FAILED',
            `legacy TOX listener cannot listen on ${this.opts.host}:${this.opts.port}: ${err.message}` +
              (err.code === 'EADDRINUSE' ? ' (another program, maybe the TOX itself, uses this port: change legacy.listen.port or stop it)' : ''),
            { cause: err },
          ),
        );
      };
      server.once('error', onError);
      server.listen(this.opts.port, this.opts.host, () => {
        server.off('error', onError);
        server.on('error', (err) => this.log.error('legacy listener error', { error: describeError(err) }));
        const addr = server.address() as net.AddressInfo;
        const allow = this.allowList.entries.length > 0 ? this.allowList.entries.join(',') : 'everyone';
        this.log.info('legacy TOX listener ready', { host: addr.address, port: addr.port, inbox: this.opts.inbox.name, allow });
        resolve({ host: addr.address, port: addr.port });
      });
    });
  }

  /** Open TCP connections (including ones closing down), for status and tests. */
  connections(): Promise<number> {
    const server = this.server;
    if (!server) return Promise.resolve(0);
    return new Promise((resolve, reject) => server.getConnections((err, n) => (err ? reject(err) : resolve(n))));
  }

  /** Stops listening, drops open connections (their staging files are deleted) and waits for them to finish. */
  async stop(): Promise<void> {
    this.stopping = true;
    const server = this.server;
    this.server = null;
    const closed = server ? new Promise<void>((r) => server.close(() => r())) : Promise.resolve();
    for (const s of this.sockets) s.destroy(new TdxError('SHUTTING_DOWN', 'the agent is stopping'));
    await Promise.allSettled([...this.handlers]);
    await closed;
  }

  private accept(socket: net.Socket): void {
    const ip = normalizeAddress(socket.remoteAddress ?? '');
    socket.on('error', () => {}); // surfaced through the read loop; never unhandled
    if (this.stopping) {
      socket.destroy();
      return;
    }
    if (!this.allowList.allows(ip)) {
      this.log.warn('legacy connection refused: source address not in legacy.allow (add it there to accept this TOX sender)', {
        source: ip,
        allow: this.allowList.entries.join(','),
      });
      socket.destroy();
      return;
    }
    if (this.sockets.size >= this.maxConnections) {
      this.log.warn('legacy connection refused: too many connections at once', { source: ip, max: this.maxConnections });
      socket.destroy();
      return;
    }
    this.sockets.add(socket);
    const h = this.handle(socket, ip)
      .catch((err: unknown) => this.log.error('legacy connection handler failed unexpectedly', { source: ip, error: describeError(err) }))
      .finally(() => {
        this.sockets.delete(socket);
        this.handlers.delete(h);
      });
    this.handlers.add(h);
  }

  private async handle(socket: net.Socket, ip: string): Promise<void> {
    const now = this.opts.now ?? Date.now;
    const started = now();
    const idle = this.idleTimeoutMs;
    socket.setTimeout(idle, () => {
      socket.destroy(new TdxError('TIMEOUT', `no data from ${ip} for ${idle} ms (legacy idle timeout)`));
    });
    // destroyOnReturn: false, or the end of the sender's data (a half-close) would destroy
    // the socket before the answer is written.
    const reader = socket.iterator({ destroyOnReturn: false }) as AsyncIterator<Buffer>;
    let header: LegacyFileHeader | null = null;
    let file: IncomingFile | null = null;
    let view: IncomingHandle | undefined;
    try {
      const headerDecoder = new LegacyHeaderDecoder({ maxContentLength: base64MaxEncodedLength(this.opts.maxFileBytes) });
      let rest: Buffer = Buffer.alloc(0);
      while (header === null) {
        const r = await reader.next();
        if (r.done) {
          throw new TdxError('TRUNCATED', `connection closed before the header was complete (${headerDecoder.buffered} bytes received)`);
        }
        const got = headerDecoder.push(r.value);
        if (got) ({ header, rest } = got);
      }
      const begun = await this.opts.inbox.begin({
        source: `legacy:${ip}`,
        path: header.file_name,
        size: null,
        mtimeMs: null,
        resume: false,
        from: ip,
        via: 'legacy',
      });
      if (begun.kind === 'write') {
        file = begun.file;
        // The decoded size from the base64 length (exact up to the 0-2 padding bytes).
        view = this.opts.incoming?.start({ inbox: this.opts.inbox.name, file: file.rel, from: ip, via: 'legacy', bytesTotal: Math.floor(header['content-length'] / 4) * 3, resumedFrom: 0 });
      } else this.log.info('legacy file not written: inbox policy', { source: ip, file: header.file_name, status: begun.status, rel: begun.rel });

      await this.receivePayload(reader, header['content-length'], rest, file, view);
      view?.verifying();

      if (file === null) {
        socket.end(legacyAnswer(true));
        await this.linger(socket, reader);
        return;
      }
      socket.setTimeout(0); // fsync + rename of a large file may take longer than the idle timeout
      const landed = await file.commit(null);
      file = null;
      view?.end('done', null, landed.rel);
      socket.setTimeout(idle);
      socket.end(legacyAnswer(true));
      const durationMs = now() - started;
      if (landed.skipped) {
        this.log.info('legacy file discarded: the name exists in the inbox (onCollision=skip)', { source: ip, file: landed.rel });
      } else {
        this.log.info('legacy file received', { source: ip, file: landed.rel, bytes: landed.size, ms: durationMs, renamedFrom: landed.renamedFrom });
        try {
          this.opts.onReceived?.({
            inbox: this.opts.inbox.name,
            file: landed.rel,
            path: landed.abs,
            size: landed.size,
            sha256: landed.sha256,
            hash: landed.digest,
            hashAlg: landed.hash,
            from: ip,
            via: 'legacy',
            durationMs,
            at: now(),
          }, landed.markAnnounced);
        } catch (err) {
          this.log.error('onReceived callback failed (the file landed)', { file: landed.rel, error: describeError(err) });
        }
      }
      await this.linger(socket, reader);
    } catch (err) {
      if (file) await file.abort(false);
      const reason = describeError(err);
      view?.end('failed', reason);
      this.log.warn('legacy file failed, nothing kept', { source: ip, file: header?.file_name ?? null, reason });
      if (socket.writable && !socket.destroyed) {
        socket.end(legacyAnswer(false, reason));
        await this.linger(socket, reader);
      } else {
        socket.destroy();
      }
    }
  }

  /** Reads exactly `length` encoded bytes (starting with `first`), decoding into `file` (or discarding when null). */
  private async receivePayload(reader: AsyncIterator<Buffer>, length: number, first: Buffer, file: IncomingFile | null, view?: IncomingHandle): Promise<void> {
    const decoder = new Base64DecoderCore(this.opts.maxFileBytes);
    let remaining = length;
    let chunk: Buffer = first;
    for (;;) {
      const part = chunk.length > remaining ? chunk.subarray(0, remaining) : chunk;
      remaining -= part.length;
      const out = decoder.push(part);
      // Awaiting each write keeps at most one socket chunk in flight: the socket is
      // not read while the disk is behind, so TCP flow control slows the sender.
      if (out.length > 0 && file) {
        await file.write(out);
        view?.progress(file.received);
      }
      if (remaining === 0) break;
      const r = await reader.next();
      if (r.done) {
        throw new TdxError('TRUNCATED', `connection closed after ${length - remaining} of ${length} payload bytes (content-length); the sender stopped early`);
      }
      chunk = r.value;
    }
    decoder.end();
  }

  /** After the answer: reads and discards until the sender closes (at most LINGER_MS), then closes; the answer is flushed first. */
  private async linger(socket: net.Socket, reader: AsyncIterator<Buffer>): Promise<void> {
    const timer = setTimeout(() => socket.destroy(), LINGER_MS);
    socket.once('close', () => clearTimeout(timer));
    try {
      while (!(await reader.next()).done);
    } catch {
      // the peer reset the connection, or the linger time is over: nothing left to do
    }
    // Destroying before our answer is flushed would discard it.
    if (socket.writableFinished || socket.destroyed) socket.destroy();
    else socket.once('finish', () => socket.destroy());
  }
}
