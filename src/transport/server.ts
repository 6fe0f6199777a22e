/**
 * The transfer port's listener: connection limits (overall and per source address), then:
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

/** OpenSSL's reasons for bytes that are not TLS at all (as opposed to TLS with another key). */
const NOT_TLS = /(wrong version number|http request|https proxy request|packet length too long|unknown protocol|record layer failure)/i;

export interface IncomingConnection {
  socket: Duplex & { destroyed: boolean };
  tcp: net.Socket;
  remoteAddress: string;
  encrypted: boolean;
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
  private readonly perAddress = new Map<string, number>();
  private readonly sockets = new Set<net.Socket>();
  /** Raw sockets in the TLS handshake, by "address:port", to answer non-TLS peers in plain. */
  private readonly handshaking = new Map<string, net.Socket>();
  private total = 0;

  constructor(
    private readonly opts: TransportServerOptions,
    private readonly onConnection: (conn: IncomingConnection) => void,
  ) {
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
    return new Promise((resolve) => this.server.close(() => resolve()));
  }

  destroyAll(): void {
    for (const s of this.sockets) s.destroy();
  }

  private accept(sock: net.Socket): void {
    const addr = normalizeAddress(sock.remoteAddress ?? '?');
    const log = this.opts.log;
    sock.on('error', () => undefined); // errors are reported by the session that owns the socket
    const n = this.perAddress.get(addr) ?? 0;
    if (this.total >= this.opts.maxConnections || n >= this.opts.maxConnectionsPerPeer) {
      log.warn(`refused connection from ${addr}: too many connections (${this.total} open, ${n} from this address; limits.maxConnections=${this.opts.maxConnections}, limits.maxConnectionsPerPeer=${this.opts.maxConnectionsPerPeer})`);
      sock.destroy();
      return;
    }
    this.total++;
    this.perAddress.set(addr, n + 1);
    this.sockets.add(sock);
    sock.once('close', () => {
      this.total--;
      this.sockets.delete(sock);
      const left = (this.perAddress.get(addr) ?? 1) - 1;
      if (left <= 0) this.perAddress.delete(addr);
      else this.perAddress.set(addr, left);
    });
    sock.setKeepAlive(true, 5000);
    if (this.tlsServer) {
      this.acceptTls(sock, addr, this.tlsServer);
      return;
    }
    // Nothing at all within the handshake time: slow-loris or a port scanner.
    sock.setTimeout(this.opts.handshakeTimeoutMs, () => {
      log.warn(`closed connection from ${addr}: nothing received within ${this.opts.handshakeTimeoutMs} ms`);
      sock.destroy();
    });
    sock.once('data', (first: Buffer) => {
      sock.pause();
      sock.setTimeout(0);
      sock.unshift(first);
      const isTls = first[0] === 0x16;
      if (isTls) {
        log.warn(`refused connection from ${addr}: the peer uses encryption but this agent has security.encrypt=false; set the same security.encrypt on both machines`);
        // Answer in plain bytes rather than a bare close: the peer's TLS stack reports "wrong
        // version number", which it can name as an encryption mismatch (a bare close is ambiguous).
        sock.end(encodeFrame({ type: 'error', code: 'UNSUPPORTED_PROTOCOL', message: 'this agent has encryption off (security.encrypt=false); set the same security.encrypt on both machines' }));
        setTimeout(() => sock.destroy(), 1000).unref();
        return;
      }
      // Plain tdxfer, or anything else: the frame decoder names what it looks like.
      this.onConnection({ socket: sock, tcp: sock, remoteAddress: addr, encrypted: false });
      sock.resume();
    });
  }

  private acceptTls(sock: net.Socket, addr: string, tlsServer: tls.Server): void {
    const log = this.opts.log;
    const key = `${sock.remoteAddress}:${sock.remotePort}`;
    this.handshaking.set(key, sock);
    // An absolute deadline: Node's own TLS handshake timeout (120 s by default) is reset
    // by every byte, so a peer dribbling its ClientHello would hold a slot forever.
    const deadline = setTimeout(() => {
      const what = sock.bytesRead === 0 ? `nothing received within ${this.opts.handshakeTimeoutMs} ms` : `TLS handshake not finished within ${this.opts.handshakeTimeoutMs} ms (limits.handshakeTimeoutMs)`;
      log.warn(`closed connection from ${addr}: ${what}`);
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
      this.onConnection({ socket: secure, tcp: sock, remoteAddress: addr, encrypted: true });
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
      this.opts.log.warn(`refused connection from ${addr}: ${explainTlsError(err) ?? `TLS error: ${describeError(err)}`}`);
      return;
    }
    const http = /http request|https proxy request/i.test(err.message);
    const what = http
      ? 'it looks like HTTP: this is the tdxfer transfer port, not the status API (status.port)'
      : 'a tdxfer agent with security.encrypt=false (set the same security.encrypt on both machines), an original TOX sender (point it at legacy.listen instead), or something else';
    this.opts.log.warn(`refused connection from ${addr}: the peer does not speak TLS but this agent requires encryption: ${what} (OpenSSL: ${notTls[1]!.toLowerCase()})`);
    // OpenSSL sends nothing to a peer that is not TLS: answer in plain, so a tdxfer agent
    // with encryption off reports why (a plain ERROR frame; other programs just close).
    if (raw && !raw.destroyed && !http) {
      raw.end(encodeFrame({ type: 'error', code: 'UNSUPPORTED_PROTOCOL', message: 'this agent requires encryption (security.encrypt=true); set the same security.encrypt on both machines' }));
      setTimeout(() => raw.destroy(), 1000).unref();
    }
  }

}
