/** Outgoing connections: plain TCP or TLS-PSK, with a connect timeout. */
import net from 'node:net';
import tls from 'node:tls';
import type { Duplex } from 'node:stream';
import { TdxError, describeError } from '../errors.js';
import { explainTlsError, pskClientOptions } from './psk.js';

export interface ConnectOptions {
  host: string;
  port: number;
  key: Buffer;
  encrypt: boolean;
  timeoutMs: number;
}

export interface Connected {
  socket: Duplex & { destroyed: boolean };
  /** The underlying TCP socket (keepalive, addresses). */
  tcp: net.Socket;
  encrypted: boolean;
}

export function connectTransport(opts: ConnectOptions): Promise<Connected> {
  return new Promise((resolve, reject) => {
    const where = `${opts.host}:${opts.port}`;
    let settled = false;
    const fail = (err: unknown, sock: net.Socket) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      sock.destroy();
      const tlsHint = opts.encrypt ? explainTlsError(err) : null;
      const code = (err as { code?: string })?.code;
      // The sentence says it all; OpenSSL's own text ("SSL routines…") stays out of the message and its
      // cause chain (describeError would append it) and is kept as `detail` for debug logs.
      if (tlsHint) reject(Object.assign(new TdxError('TLS_FAILED', `${where}: ${tlsHint}`), { detail: describeError(err) }));
      else if (err instanceof TdxError) reject(err);
      else reject(new TdxError('CONNECT_FAILED', `cannot connect to ${where}: ${describeError(err)}`, { cause: err }));
      void code;
    };
    const tcp = net.connect({ host: opts.host, port: opts.port, noDelay: true });
    const timer = setTimeout(
      () => fail(new TdxError('CONNECT_TIMEOUT', `cannot connect to ${where}: no answer within ${opts.timeoutMs} ms`), tcp),
      opts.timeoutMs,
    );
    // Keep-alive only once connected: under wine, setKeepAlive() on a socket that is still
    // connecting makes the connect fail with UNKNOWN; after connect it is harmless everywhere.
    tcp.once('connect', () => tcp.setKeepAlive(true, 5000));
    tcp.once('error', (err) => fail(err, tcp));
    if (!opts.encrypt) {
      tcp.once('connect', () => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        tcp.removeAllListeners('error');
        resolve({ socket: tcp, tcp, encrypted: false });
      });
      return;
    }
    const secure = tls.connect({ socket: tcp, ...pskClientOptions(opts.key) });
    secure.once('error', (err) => fail(err, tcp));
    secure.once('secureConnect', () => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      secure.removeAllListeners('error');
      tcp.removeAllListeners('error');
      resolve({ socket: secure, tcp, encrypted: true });
    });
  });
}
