/**
 * A test client that speaks protocol v1 by itself (src/protocol/PROTOCOL.md), so fault
 * tests can play a hostile or broken peer: wrong proofs, frames out of order, absurd
 * sizes, hostile names, bytes dribbled one at a time, raw garbage.
 *
 * It uses the real codec (src/protocol) for everything it reads, and for TLS the real
 * PSK options (src/transport/psk.ts) or connectTransport (src/transport/connect.ts), so
 * only what a test deliberately breaks differs from an honest agent.
 */
import net from 'node:net';
import tls from 'node:tls';
import type { Duplex } from 'node:stream';
import {
  FrameDecoder, encodeDataHeader, encodeFrame, makeNonce, makeProof, verifyProof, type Frame, type FrameOf,
} from '../../src/protocol/index.js';
import { connectTransport } from '../../src/transport/connect.js';
import { pskClientOptions } from '../../src/transport/psk.js';
import { createFileHash, type HashAlg } from '../../src/hash.js';

export interface RawConnectOptions {
  host?: string;
  port: number;
  /** TLS with this key as PSK; omit for plain TCP. */
  tlsKey?: Buffer;
  /** Source address (e.g. 127.0.0.2, to look like another peer on loopback). */
  localAddress?: string;
  timeoutMs?: number;
}

export type ControlFrame = Exclude<Frame, { type: 'data' }>;

/** Raw HELLO/OFFER/... frame bytes built by hand: header + arbitrary payload. */
export function rawFrame(type: number, payload: Buffer | string, opts: { version?: number; length?: number; magic?: [number, number] } = {}): Buffer {
  const body = typeof payload === 'string' ? Buffer.from(payload, 'utf8') : payload;
  const h = Buffer.alloc(8);
  h[0] = opts.magic?.[0] ?? 0x54;
  h[1] = opts.magic?.[1] ?? 0x58;
  h[2] = opts.version ?? 1;
  h[3] = type;
  h.writeUInt32BE(opts.length ?? body.length, 4);
  return Buffer.concat([h, body]);
}

export class RawClient {
  readonly frames: Frame[] = [];
  /** Bytes received that the decoder could not parse (the agent never sends such). */
  decodeError: unknown = null;
  closed = false;
  closedAt = 0;
  /** false: stay silent even to PINGs (a frozen peer), so the agent's idle timer runs. */
  answerPings = true;
  /** The file hash of this connection: WELCOME.hash, or SHA-256 when the server sent none. */
  hash: HashAlg = 'sha256';
  private readonly decoder = new FrameDecoder();
  private waiters: Array<() => void> = [];
  /**
   * Where the bytes of write() stand in the frame a test writes by hand (e.g. one byte per
   * second): header bytes so far, payload bytes still due, or not a frame at all. An
   * automatic PONG written in the middle would split that frame on the wire (the agent PINGs
   * before READY too: PROTOCOL.md section 7), so it waits for the frame's last byte.
   */
  private outHeader: number[] = [];
  private outLeft = 0;
  private outGarbage = false;
  private heldPongs: number[] = [];

  /**
   * `openedAt`: when connect() began (before TCP and TLS), so that `waitClosed()` never measures
   * less than the agent's own timers, which start at accept.
   */
  private constructor(
    readonly socket: Duplex & { destroyed: boolean },
    readonly openedAt = Date.now(),
  ) {
    socket.on('data', (chunk: Buffer) => {
      try {
        for (const f of this.decoder.push(chunk)) {
          // Answer keepalives like an honest peer, so only what the test does counts.
          if (f.type === 'ping' && this.answerPings) {
            if (this.midFrame) this.heldPongs.push(f.t);
            else this.send({ type: 'pong', t: f.t });
          }
          this.frames.push(f);
        }
      } catch (err) {
        this.decodeError = err;
      }
      this.wake();
    });
    socket.on('error', () => undefined);
    socket.on('close', () => {
      this.closed = true;
      this.closedAt = Date.now();
      this.wake();
    });
  }

  static async connect(opts: RawConnectOptions): Promise<RawClient> {
    const t0 = Date.now();
    const host = opts.host ?? '127.0.0.1';
    const timeoutMs = opts.timeoutMs ?? 5000;
    if (opts.tlsKey && opts.localAddress === undefined) {
      const c = await connectTransport({ host, port: opts.port, key: opts.tlsKey, encrypt: true, timeoutMs });
      return new RawClient(c.socket, t0);
    }
    const tcp = await new Promise<net.Socket>((resolve, reject) => {
      const s = net.connect({ host, port: opts.port, noDelay: true, ...(opts.localAddress ? { localAddress: opts.localAddress } : {}) });
      const t = setTimeout(() => {
        s.destroy();
        reject(new Error(`raw client: no connection to ${host}:${opts.port} within ${timeoutMs} ms`));
      }, timeoutMs);
      s.once('connect', () => {
        clearTimeout(t);
        resolve(s);
      });
      s.once('error', (err) => {
        clearTimeout(t);
        reject(err);
      });
    });
    if (!opts.tlsKey) return new RawClient(tcp, t0);
    const key = opts.tlsKey;
    const secure = await new Promise<tls.TLSSocket>((resolve, reject) => {
      const s = tls.connect({ socket: tcp, ...pskClientOptions(key) });
      s.once('secureConnect', () => resolve(s));
      s.once('error', reject);
    });
    return new RawClient(secure, t0);
  }

  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }

  private changed(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const t = setTimeout(resolve, ms);
      this.waiters.push(() => {
        clearTimeout(t);
        resolve();
      });
    });
  }

  send(frame: ControlFrame): void {
    if (!this.socket.destroyed) this.socket.write(encodeFrame(frame));
  }

  sendData(data: Buffer): void {
    this.socket.write(encodeDataHeader(data.length));
    this.socket.write(data);
  }

  /** Raw bytes, e.g. part of a frame; PONGs wait until the frame they begin or continue is complete. */
  write(bytes: Buffer | string): void {
    if (this.socket.destroyed) return;
    const b = typeof bytes === 'string' ? Buffer.from(bytes, 'utf8') : bytes;
    this.socket.write(b);
    this.trackOutgoing(b);
    if (!this.midFrame && this.heldPongs.length > 0) {
      const held = this.heldPongs;
      this.heldPongs = [];
      for (const t of held) this.send({ type: 'pong', t });
    }
  }

  /** True while the raw bytes written so far end inside a frame (or are no frames at all). */
  private get midFrame(): boolean {
    return this.outGarbage || this.outHeader.length > 0 || this.outLeft > 0;
  }

  private trackOutgoing(b: Buffer): void {
    let o = 0;
    while (o < b.length && !this.outGarbage) {
      if (this.outLeft > 0) {
        const n = Math.min(this.outLeft, b.length - o);
        this.outLeft -= n;
        o += n;
        continue;
      }
      this.outHeader.push(b[o++]!);
      if (this.outHeader.length < 8) continue;
      const h = Buffer.from(this.outHeader);
      this.outHeader = [];
      if (h[0] !== 0x54 || h[1] !== 0x58) this.outGarbage = true;
      else this.outLeft = h.readUInt32BE(4);
    }
  }

  /** The next frame (PING/PONG skipped) matching `pred`, or null if the connection closed first. */
  async next(timeoutMs = 5000, pred: (f: Frame) => boolean = () => true): Promise<Frame | null> {
    const end = Date.now() + timeoutMs;
    for (;;) {
      const i = this.frames.findIndex((f) => f.type !== 'ping' && f.type !== 'pong' && pred(f));
      if (i >= 0) return this.frames.splice(i, 1)[0]!;
      if (this.closed) return null;
      const left = end - Date.now();
      if (left <= 0) throw new Error(`raw client: no matching frame within ${timeoutMs} ms (have: ${this.frames.map((f) => f.type).join(', ') || 'nothing'})`);
      await this.changed(left);
    }
  }

  async expect<K extends Frame['type']>(type: K, timeoutMs = 5000): Promise<FrameOf<K>> {
    const f = await this.next(timeoutMs);
    if (f === null) throw new Error(`raw client: connection closed while waiting for ${type.toUpperCase()}`);
    if (f.type !== type) throw new Error(`raw client: expected ${type.toUpperCase()}, got ${f.type.toUpperCase()} ${JSON.stringify(f)}`);
    return f as FrameOf<K>;
  }

  /** Resolves with the ms from connect to close; throws if still open after timeoutMs. */
  async waitClosed(timeoutMs = 5000): Promise<number> {
    const end = Date.now() + timeoutMs;
    while (!this.closed) {
      const left = end - Date.now();
      if (left <= 0) throw new Error(`raw client: connection still open after ${timeoutMs} ms`);
      await this.changed(left);
    }
    return this.closedAt - this.openedAt;
  }

  /** The ERROR frame the agent sent before closing (or null), after the close. */
  async errorThenClose(timeoutMs = 5000): Promise<FrameOf<'error'> | null> {
    await this.waitClosed(timeoutMs);
    const e = this.frames.find((f) => f.type === 'error');
    return (e as FrameOf<'error'> | undefined) ?? null;
  }

  /**
   * HELLO → WELCOME → AUTH → READY with `key`. With `proofKey` the AUTH proof is made
   * with another key (an impostor); the server's proof is returned as checked, not enforced.
   * Without `hashes` the HELLO is exactly one of the previous protocol version (no hash list:
   * SHA-256); with them, a v1.1 HELLO announcing those algorithms.
   */
  async handshake(key: Buffer, opts: { agentId?: string; name?: string; proofKey?: Buffer; expectReady?: boolean; hashes?: string[] } = {}): Promise<{ welcome: FrameOf<'welcome'>; serverProofOk: boolean }> {
    const agentId = opts.agentId ?? 'rawclient';
    const clientNonce = makeNonce();
    this.send({ type: 'hello', protocol: 1, agentId, name: opts.name ?? 'raw test client', software: 'rawclient/1', nonce: clientNonce, ...(opts.hashes ? { hashes: opts.hashes } : {}) });
    const welcome = await this.expect('welcome');
    this.hash = (welcome.hash ?? 'sha256') as HashAlg;
    const serverProofOk = verifyProof({ key, role: 'server', clientNonce, serverNonce: welcome.nonce, agentId: welcome.agentId, proof: welcome.proof });
    this.send({ type: 'auth', proof: makeProof({ key: opts.proofKey ?? key, role: 'client', clientNonce, serverNonce: welcome.nonce, agentId }) });
    if (opts.expectReady !== false) await this.expect('ready');
    return { welcome, serverProofOk };
  }

  /**
   * OFFER (eager: with DATA and END at once), then (if accepted) the bytes and END, whose
   * digest is in the connection's hash; returns the final answer (ACK/NACK) or null on close.
   * `flipAt`: that byte goes out XORed with 0xff while END carries the true file's digest
   * (corruption between the sender's read and the receiver's disk).
   */
  async sendFile(f: { id: number; inbox: string; path: string; data: Buffer; mtimeMs?: number; resume?: boolean; eager?: boolean; flipAt?: number }, timeoutMs = 10_000): Promise<Frame | null> {
    const h = await createFileHash(this.hash);
    h.update(f.data);
    const digest = h.digest();
    const end: ControlFrame = this.hash === 'sha256' ? { type: 'end', id: f.id, sha256: digest } : { type: 'end', id: f.id, xxh128: digest };
    const wire = Buffer.from(f.data);
    if (f.flipAt !== undefined) wire[f.flipAt] = wire[f.flipAt]! ^ 0xff;
    const stream = (from: number): void => {
      for (let o = from; o < wire.length; o += 1 << 20) this.sendData(wire.subarray(o, Math.min(wire.length, o + (1 << 20))));
      this.send(end);
    };
    this.send({ type: 'offer', id: f.id, inbox: f.inbox, path: f.path, size: f.data.length, mtimeMs: f.mtimeMs ?? 1_700_000_000_000, resume: f.eager ? false : (f.resume ?? false), ...(f.eager ? { eager: true } : {}) });
    if (f.eager) stream(0);
    else {
      const ans = await this.next(timeoutMs, (x) => 'id' in x && x.id === f.id);
      if (ans === null || ans.type !== 'accept') return ans;
      stream(ans.offset);
    }
    return this.next(timeoutMs, (x) => 'id' in x && x.id === f.id && (x.type === 'ack' || x.type === 'nack'));
  }

  destroy(): void {
    this.socket.destroy();
  }

  end(): void {
    this.socket.end();
  }
}

/** Plain TCP bytes only (no framing): for garbage, dribbling and floods. */
export function rawSocket(port: number, opts: { host?: string; localAddress?: string } = {}): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host: opts.host ?? '127.0.0.1', port, ...(opts.localAddress ? { localAddress: opts.localAddress } : {}) });
    s.once('connect', () => {
      s.off('error', reject);
      s.on('error', () => undefined);
      // Flowing, so a close by the agent (FIN) is seen even if the test never reads.
      s.resume();
      resolve(s);
    });
    s.once('error', reject);
  });
}

/** Resolves when `s` closes, with the ms it took; rejects after timeoutMs. */
/** Resolves to the ms from `since` (default: now) to the socket's close. Start it right after connecting. */
export function socketClosed(s: net.Socket, timeoutMs: number, since = Date.now()): Promise<number> {
  const t0 = since;
  if (s.destroyed || s.closed) return Promise.resolve(Date.now() - t0);
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`socket still open after ${timeoutMs} ms`)), timeoutMs);
    s.on('error', () => undefined);
    s.once('close', () => {
      clearTimeout(t);
      resolve(Date.now() - t0);
    });
  });
}
