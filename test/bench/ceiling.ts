/**
 * The ceiling: the least a Node program must do to move a file over loopback the way
 * tdxfer promises it (SHA-256 on both sides, the copy fsync'ed with its folder), in
 * two processes like two agents. No framing, no protocol; TLS only in its `tls` variant
 * (the same TLS-PSK as tdxfer, for context: what encryption alone costs here).
 *
 * Run as a child (`node ceiling.js recv <dst> <hwm>`) it is the receiving side: it
 * listens on 127.0.0.1 (port 0), prints `port <n>`, takes one connection, writes it to
 * <dst> and prints `done <sha256> <bytes>` after fsync of file and folder.
 * From the bench it is `ceilingRun()`: starts a receiver child, sends the file, times
 * from the first byte read to the receiver's `done`.
 */
import fs from 'node:fs/promises';
import { createReadStream, createWriteStream } from 'node:fs';
import net from 'node:net';
import tls from 'node:tls';
import { randomBytes } from 'node:crypto';
import { pskClientOptions, pskServerOptions } from '../../src/transport/psk.js';
import path from 'node:path';
import { createHash } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { spawnProc } from './util.js';

/** hwm 0 = Node's defaults everywhere (64 KiB file reads, 16 KiB write buffers). */
async function receive(dst: string, hwm: number, key: Buffer | null): Promise<void> {
  const server = key ? tls.createServer(pskServerOptions(key)) : net.createServer(hwm > 0 ? { highWaterMark: hwm } : {});
  server.listen(0, '127.0.0.1', () => {
    process.stdout.write(`port ${(server.address() as net.AddressInfo).port}\n`);
  });
  const sock = await new Promise<net.Socket>((resolve) => server.once(key ? 'secureConnection' : 'connection', resolve));
  server.close();
  const fh = await fs.open(dst, 'w');
  // On the raw fd as the inbox does (src/inbox/incoming.ts): a FileHandle's own write
  // stream leaves a later fh.sync() pending forever once ended (Node 20).
  const ws = createWriteStream(dst, hwm > 0 ? { fd: fh.fd, highWaterMark: hwm, autoClose: false } : { fd: fh.fd, autoClose: false });
  const hash = createHash('sha256');
  let bytes = 0;
  sock.on('data', (c: Buffer) => {
    hash.update(c);
    bytes += c.length;
    if (!ws.write(c)) {
      sock.pause();
      ws.once('drain', () => sock.resume());
    }
  });
  await new Promise<void>((resolve, reject) => {
    sock.once('end', resolve);
    sock.once('error', reject);
  });
  await new Promise<void>((resolve, reject) => ws.end((err?: Error | null) => (err ? reject(err) : resolve())));
  await fh.sync();
  await fh.close();
  const dir = await fs.open(path.dirname(dst), 'r');
  await dir.sync();
  await dir.close();
  process.stdout.write(`done ${hash.digest('hex')} ${bytes}\n`);
  sock.end();
}

export interface CeilingResult {
  ms: number;
  sha256: string;
}

export async function ceilingRun(src: string, dst: string, hwm: number, opts: { tls?: boolean } = {}): Promise<CeilingResult> {
  const self = fileURLToPath(import.meta.url);
  const key = opts.tls ? randomBytes(32) : null;
  const recv = spawnProc(process.execPath, [self, 'recv', dst, String(hwm), ...(key ? [key.toString('hex')] : [])]);
  try {
    const port = Number((await recv.waitFor(/port (\d+)/))[1]);
    const t0 = performance.now();
    let sock: net.Socket;
    if (key) {
      sock = tls.connect({ port, host: '127.0.0.1', ...pskClientOptions(key) });
      await new Promise<void>((resolve, reject) => sock.once('secureConnect', resolve).once('error', reject));
    } else {
      // highWaterMark reaches the socket's Duplex constructor; @types/node does not list it.
      sock = net.connect((hwm > 0 ? { port, host: '127.0.0.1', highWaterMark: hwm } : { port, host: '127.0.0.1' }) as net.NetConnectOpts);
      await new Promise<void>((resolve, reject) => sock.once('connect', resolve).once('error', reject));
    }
    const rs = createReadStream(src, hwm > 0 ? { highWaterMark: hwm } : {});
    const hash = createHash('sha256');
    for await (const c of rs as AsyncIterable<Buffer>) {
      hash.update(c);
      if (!sock.write(c)) await new Promise((r) => sock.once('drain', r));
    }
    sock.end();
    const sha256 = hash.digest('hex');
    const m = await recv.waitFor(/done ([0-9a-f]{64}) (\d+)/, 120_000);
    const ms = performance.now() - t0;
    if (m[1] !== sha256) throw new Error(`bench: ceiling copy of ${src} is corrupt (sha256 ${m[1]} != ${sha256})`);
    sock.destroy();
    return { ms, sha256 };
  } finally {
    await recv.stop();
  }
}

if (process.argv[2] === 'recv' && process.argv[1] === fileURLToPath(import.meta.url)) {
  receive(process.argv[3]!, Number(process.argv[4] ?? 0), process.argv[5] ? Buffer.from(process.argv[5], 'hex') : null).catch((err: unknown) => {
    process.stderr.write(`ceiling receiver failed: ${String(err)}\n`);
    process.exit(1);
  });
}
