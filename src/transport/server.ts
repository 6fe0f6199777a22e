/**
 * The transfer port's listener: connection slots (slots.ts: a small budget for connections
 * still in their handshake, `limits.maxConnections`/`maxConnectionsPerPeer` for
 * authenticated ones, refusals logged rate-limited), then:
 *
 * - encrypted (`security.encrypt: true`, the default): the socket goes to TLS untouched.
 *   A peer that does not speak TLS fails the TLS handshake; OpenSSL's reason tells HTTP
 *   from anything else, and the peer gets a plain ERROR frame (UNSUPPORTED_PROTOCOL), so a
 *   tdxfer agent with encryption off learns why. Not sniffing here matters: giving a
 *   sniffed ClientHello back to TLS leaves a 1 KiB buffer in its input ring for the whole
 *   connection (Node's NodeBIO), halving the size of most socket reads (~5 % of throughput).
 * - plain: the first byte tells a TLS peer (0x16) from tdxfer frames ('T'), so a peer whose
 *   `security.encrypt` differs gets a clear log line; the frame decoder names other protocols.
 */
import net from 'node:net';
import tls from 'node:tls';
import type { Duplex } from 'node:stream';
import type { Logger } from '../log.js';
import { describeError } from '../errors.js';
import { explainTlsError, pskServerOptions } from './psk.js';
import { normalizeAddress } from './address.js';
import { encodeFrame } from '../protocol/index.js';
import { RateLimitedLog } from '../ratelog.js';
import { SlotTable, type SlotHolder } from './slots.js';

/** OpenSSL's reasons for bytes that are not TLS at all (as opposed to TLS with another key). */
const NOT_TLS = /(wrong version number|http request|https proxy request|packet length too long|unknown protocol|record layer failure)/i;

export interface IncomingConnection {
  socket: Duplex & { destroyed: boolean };
  tcp: net.Socket;
  remoteAddress: string;
  encrypted: boolean;
  /**
   * The handshake succeeded: take an authenticated slot. Null when admitted (an idle
   * connection may have been closed through its `evict` to make room), else why not: the
   * session then answers ERROR TOO_MANY_CONNECTIONS instead of READY.
   */
  authenticated(holder: SlotHolder & { evict(reason: string): void }): string | null;
  /** Warnings an unauthenticated peer can cause at will go through this (rate-limited). */
  refusals: RateLimitedLog;
}

export interface TransportServerOptions {
  host: string;
  port: number;
  key: Buffer;
  encrypt: boolean;
  maxConnections: number;
  maxConnectionsPerPeer: number;
  handshakeTimeoutMs: number;
  log: Logger;
}

export class TransportServer {
  private readonly server: net.Server;
  private readonly tlsServer: tls.Server | null;
  private readonly slots: SlotTable<net.Socket>;
  private readonly evictors = new Map<net.Socket, (reason: string) => void>();
  private readonly refusals: RateLimitedLog;
  private readonly sockets = new Set<net.Socket>();
  /** Raw sockets in the TLS handshake, by "address:port", to answer non-TLS peers in plain. */
  private readonly handshaking = new Map<string, net.Socket>();

  constructor(
    private readonly opts: TransportServerOptions,
    private readonly onConnection: (conn: IncomingConnection) => void,
  ) {
    this.slots = new SlotTable(opts);
    this.refusals = new RateLimitedLog(opts.log);
    this.tlsServer = opts.encrypt ? tls.createServer(pskServerOptions(opts.key)) : null;
    this.tlsServer?.on('tlsClientError', (err, sock) => this.onTlsError(err, sock));
    this.server = net.createServer({ noDelay: true, pauseOnConnect: false }, (sock) => this.accept(sock));
    this.server.on('error', (err) => {
      if (this.server.listening) opts.log.error(`transfer listener error: ${describeError(err)}`);
    });
  }

  listen(): Promise<{ host: string; port: number }> {
    return new Promise((resolve, reject) => {
      const onError = (err: Error) => reject(err);
      this.server.once('error', onError);
      this.server.listen(this.opts.port, this.opts.host, () => {
        this.server.off('error', onError);
        const a = this.server.address() as net.AddressInfo;
        resolve({ host: a.address, port: a.port });
      });
    });
  }

  /** Stop accepting; existing connections are left to their owners (see destroyAll). */
  close(): Promise<void> {
    this.refusals.stop();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }

  destroyAll(): void {
    for (const s of this.sockets) s.destroy();
  }

  private accept(sock: net.Socket): void {
    const addr = normalizeAddress(sock.remoteAddress ?? '?');
    sock.on('error', () => undefined); // errors are reported by the session that owns the socket
    // A connection that has received bytes is in its handshake: silent ones make room first.
    const victim = this.slots.open(sock, addr, (s) => s.bytesRead > 0);
    if (victim) {
      this.refusals.warn('unauthenticated connections', `closed an unauthenticated connection from ${normalizeAddress(victim.remoteAddress ?? '?')} to make room for one from ${addr}: ${this.slots.pendingCount} connections are in their handshake (a flood, or peers without the key?)`);
      victim.destroy();
    }
    this.sockets.add(sock);
    sock.once('close', () => {
      this.sockets.delete(sock);
      this.evictors.delete(sock);
      this.slots.close(sock);
    });
    sock.setKeepAlive(true, 5000);
    if (this.tlsServer) {
      this.acceptTls(sock, addr, this.tlsServer);
      return;
    }
    // Nothing at all within the handshake time: slow-loris or a port scanner.
    sock.setTimeout(this.opts.handshakeTimeoutMs, () => {
      this.refusals.warn('silent connections', `closed connection from ${addr}: nothing received within ${this.opts.handshakeTimeoutMs} ms`, addr);
      sock.destroy();
    });
    sock.once('data', (first: Buffer) => {
      sock.pause();
      sock.setTimeout(0);
      sock.unshift(first);
      const isTls = first[0] === 0x16;
      if (isTls) {
        this.refusals.warn('peers with TLS', `refused connection from ${addr}: the peer uses encryption but this agent has security.encrypt=false; set the same security.encrypt on both machines`, addr);
        // Answer in plain bytes rather than a bare close: the peer's TLS stack reports "wrong
        // version number", which it can name as an encryption mismatch (a bare close is ambiguous).
        sock.end(encodeFrame({ type: 'error', code: 'UNSUPPORTED_PROTOCOL', message: 'this agent has encryption off (security.encrypt=false); set the same security.encrypt on both machines' }));
        setTimeout(() => sock.destroy(), 1000).unref();
        return;
      }
      // Plain tdxfer, or anything else: the frame decoder names what it looks like.
      this.onConnection(this.incoming(sock, sock, addr, false));
      sock.resume();
    });
  }

  private incoming(socket: Duplex & { destroyed: boolean }, tcp: net.Socket, addr: string, encrypted: boolean): IncomingConnection {
    return {
      socket, tcp, remoteAddress: addr, encrypted, refusals: this.refusals,
      authenticated: (holder) => {
        if (tcp.destroyed) return 'connection already closed';
        const d = this.slots.authenticate(tcp, addr, holder);
        if (!d.admit) {
          this.refusals.warn('refused authenticated connections', `refused connection from ${addr}: ${d.reason}`, addr);
          return d.reason;
        }
        this.evictors.set(tcp, (reason) => holder.evict(reason));
        if (d.evict) {
          const evict = this.evictors.get(d.evict);
          this.evictors.delete(d.evict);
          this.opts.log.info(`closing the longest-idle connection from ${normalizeAddress(d.evict.remoteAddress ?? '?')} to make room for a new one from ${addr}`);
          if (evict) evict('closed as the longest-idle connection to make room for a new one');
          else d.evict.destroy();
        }
        return null;
      },
    };
  }

  private acceptTls(sock: net.Socket, addr: string, tlsServer: tls.Server): void {
    const key = `${sock.remoteAddress}:${sock.remotePort}`;
    this.handshaking.set(key, sock);
    // An absolute deadline: Node's own TLS handshake timeout (120 s by default) is reset
    // by every byte, so a peer dribbling its ClientHello would hold a slot forever.
    const deadline = setTimeout(() => {
      const what = sock.bytesRead === 0 ? `nothing received within ${this.opts.handshakeTimeoutMs} ms` : `TLS handshake not finished within ${this.opts.handshakeTimeoutMs} ms (limits.handshakeTimeoutMs)`;
      this.refusals.warn(sock.bytesRead === 0 ? 'silent connections' : 'slow TLS handshakes', `closed connection from ${addr}: ${what}`, addr);
      sock.destroy();
    }, this.opts.handshakeTimeoutMs);
    const done = (): void => {
      clearTimeout(deadline);
      tlsServer.off('secureConnection', onSecure);
      if (this.handshaking.get(key) === sock) this.handshaking.delete(key);
    };
    const onSecure = (secure: tls.TLSSocket): void => {
      if (secure.remoteAddress !== sock.remoteAddress || secure.remotePort !== sock.remotePort) return;
      done();
      this.onConnection(this.incoming(secure, sock, addr, true));
    };
    tlsServer.on('secureConnection', onSecure);
    sock.once('close', done);
    tlsServer.emit('connection', sock);
  }

  private onTlsError(err: Error, secure: tls.TLSSocket): void {
    const key = `${secure.remoteAddress}:${secure.remotePort}`;
    const raw = this.handshaking.get(key);
    const addr = normalizeAddress(raw?.remoteAddress ?? secure.remoteAddress ?? '?');
    const notTls = NOT_TLS.exec(err.message);
    if (!notTls) {
      this.refusals.warn('TLS handshake failures', `refused connection from ${addr}: ${explainTlsError(err) ?? `TLS error: ${describeError(err)}`}`, addr);
      return;
    }
    const http = /http request|https proxy request/i.test(err.message);
    const what = http
      ? 'it looks like HTTP: this is the tdxfer transfer port, not the status API (status.port)'
      : 'a tdxfer agent with security.encrypt=false (set the same security.encrypt on both machines), an original TOX sender (point it at legacy.listen instead), or something else';
    this.refusals.warn(http ? 'HTTP clients on the transfer port' : 'peers without TLS', `refused connection from ${addr}: the peer does not speak TLS but this agent requires encryption: ${what} (OpenSSL: ${notTls[1]!.toLowerCase()})`, addr);
    // OpenSSL sends nothing to a peer that is not TLS: answer in plain, so a tdxfer agent
    // with encryption off reports why (a plain ERROR frame; other programs just close).
    if (raw && !raw.destroyed && !http) {
      raw.end(encodeFrame({ type: 'error', code: 'UNSUPPORTED_PROTOCOL', message: 'this agent requires encryption (security.encrypt=true); set the same security.encrypt on both machines' }));
      setTimeout(() => raw.destroy(), 1000).unref();
    }
  }

}
