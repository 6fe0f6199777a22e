/**
 * TLS with the installation key as pre-shared key (no certificates): TLS 1.3
 * (TLS_AES_*_GCM with PSK) or TLS 1.2 (PSK-AES*-GCM). Measured in Node 20: see
 * shared/FACTS.md. A peer with another key fails the TLS handshake on both sides.
 */
import tls from 'node:tls';

export const PSK_IDENTITY = 'tdxfer';
export const PSK_CIPHERS = 'TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:PSK-AES128-GCM-SHA256:PSK-AES256-GCM-SHA384';

export function pskClientOptions(key: Buffer): tls.ConnectionOptions {
  return {
    pskCallback: () => ({ psk: key, identity: PSK_IDENTITY }),
    ciphers: PSK_CIPHERS,
    minVersion: 'TLSv1.2',
    // No certificate is involved: the PSK authenticates the server.
    checkServerIdentity: () => undefined,
  };
}

export function pskServerOptions(key: Buffer): tls.TlsOptions {
  return {
    pskCallback: (_socket, identity) => (identity === PSK_IDENTITY ? key : null),
    ciphers: PSK_CIPHERS,
    minVersion: 'TLSv1.2',
  };
}

/** Turns OpenSSL's terse handshake errors into what an operator can act on. */
export function explainTlsError(err: unknown): string | null {
  const msg = err instanceof Error ? `${err.message} ${(err as { code?: string }).code ?? ''}` : String(err);
  // TLS 1.3: a PSK binder made with another key is answered with alert 47 (illegal parameter).
  if (/decrypt|bad record mac|PSK|handshake failure|BAD_DECRYPT|DECRYPT_ERROR|alert number 51|illegal parameter|alert number 47/i.test(msg)) {
    return 'TLS handshake failed: the peer does not hold the same installation key (security.key / keyFile must be identical on every machine)';
  }
  if (/wrong version number|unexpected eof|packet length too long|http request/i.test(msg)) {
    return 'TLS handshake failed: the peer does not speak TLS here (encryption off on one side? security.encrypt must match on both machines)';
  }
  if (/socket disconnected before secure TLS connection/i.test(msg)) {
    return 'TLS handshake failed: the peer closed the connection (encryption off on that side? security.encrypt must match on both machines; or it refused us for another reason, see its log)';
  }
  return null;
}
