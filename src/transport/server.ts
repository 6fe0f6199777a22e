/**
 * The transfer port's listener: connection limits (overall and per source address),
 * then the first byte tells TLS (0x16) from plain tdxfer frames ('T'), so a peer whose
 * `security.encrypt` differs gets a clear log line instead of a cryptic failure.
 */
import net from 'node:net';
import tls from 'node:tls';
import type { Duplex } from 'node:stream';
import type { Logger } from '../log.js';
import { describeError } from '../errors.js';
import { explainTlsError, pskServerOptions } from './psk.js';
import { normalizeAddress } from './address.js';
import { encodeFrame } from '../protocol/index.js';

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
  private total = 0;

  constructor(
    private readonly opts: TransportServerOptions,
    private readonly onConnection: (conn: IncomingConnection) => void,
  ) {
    this.tlsServer = opts.encrypt ? tls.createServer(pskServerOptions(opts.key)) : null;
    this.tlsServer?.on('tlsClientError', (err, sock) => {
      const hint = explainTlsError(err) ?? `TLS error: ${describeError(err)}`;
      opts.log.warn(`refused connection from ${sock.remoteAddress ?? '?'}: ${hint}`);
    });
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
      if (isTls && this.tlsServer) {
        const tlsServer = this.tlsServer;
        // An absolute deadline: Node's own TLS handshake timeout (120 s by default) is
        // reset by every byte, so a peer dribbling its ClientHello would hold a slot forever.
        const deadline = setTimeout(() => {
          log.warn(`closed connection from ${addr}: TLS handshake not finished within ${this.opts.handshakeTimeoutMs} ms (limits.handshakeTimeoutMs)`);
          sock.destroy();
        }, this.opts.handshakeTimeoutMs);
        const onSecure = (secure: tls.TLSSocket) => {
          if (secure.remoteAddress !== sock.remoteAddress || secure.remotePort !== sock.remotePort) return;
          clearTimeout(deadline);
          tlsServer.off('secureConnection', onSecure);
          this.onConnection({ socket: secure, tcp: sock, remoteAddress: addr, encrypted: true });
        };
        tlsServer.on('secureConnection', onSecure);
        sock.once('close', () => {
          clearTimeout(deadline);
          tlsServer.off('secureConnection', onSecure);
        });
        // The TLS server takes the socket over with the ClientHello unshifted back;
        // it must not be resumed here (that would hand the bytes to nobody).
        tlsServer.emit('connection', sock);
        return;
      }
      if (isTls) {
        log.warn(`refused connection from ${addr}: the peer uses encryption but this agent has security.encrypt=false; set the same security.encrypt on both machines`);
        sock.destroy();
        return;
      }
      if (this.opts.encrypt && first[0] === 0x54) {
        log.warn(`refused connection from ${addr}: the peer sent unencrypted tdxfer frames but this agent requires encryption; set the same security.encrypt on both machines`);
        sock.end(encodeFrame({ type: 'error', code: 'UNSUPPORTED_PROTOCOL', message: 'this agent requires encryption (security.encrypt=true); set the same security.encrypt on both machines' }));
        return;
      }
      // Plain mode (or garbage in encrypted mode: the frame decoder names what it looks like).
      this.onConnection({ socket: sock, tcp: sock, remoteAddress: addr, encrypted: false });
      sock.resume();
    });
  }
}
