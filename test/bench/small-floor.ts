/**
 * The small-files floor: the least a Node program must do per file to move a folder of
 * small files the way tdxfer promises (verified end to end, durable before the ACK,
 * atomic, the source archived once acknowledged), in two processes like two agents. No
 * protocol beyond one length-prefixed frame per file and a 4-byte ACK; plain TCP or the
 * same TLS-PSK as tdxfer. For context beside the small-file rows of `npm run bench`:
 * whether a gap is tdxfer's own code or what Node costs per file here.
 *
 * Per file, sender: openSync, fstatSync, readSync (into the frame), closeSync, XXH3-128
 * (src/xxh3, as tdxfer), one socket write (corked until the next tick, as tdxfer's
 * channel); at most WINDOW files unacknowledged (tdxfer's `transfer.window` default); on
 * its ACK, renameSync into archive/ (tdxfer's default after-action).
 * Per file, receiver: XXH3-128 of the bytes, openSync 'wx' in staging/, writeSync,
 * fs.fsync through the thread pool, closeSync; then landing in batches (every file whose
 * fsync finished while the previous batch was on disk, as src/inbox/land.ts): renameSync
 * each into the destination, one fsync of the destination folder per batch (thread pool),
 * one socket write with the batch's ACKs. Not done (tdxfer does): the inbox journal, name
 * collision checks, events, status, logs.
 *
 * Children: `node small-floor.js recv <staging> <dest> [pskHex]` prints `port <n>`, then
 * `recv <files> <batches> <userMs> <sysMs>` once the sender closes; `node small-floor.js send <port>
 * <src> <archive> [pskHex]` prints `sent <files> <ms> <userMs> <sysMs>`: time and CPU from
 * its first file read to the last ACK; CPU of each process from process.cpuUsage().
 */
import fs from 'node:fs';
import net from 'node:net';
import tls from 'node:tls';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { pskClientOptions, pskServerOptions } from '../../src/transport/psk.js';
import { Xxh3Simd, readyXxh3Simd } from '../../src/xxh3/xxh3.js';
import type { Cpu } from './figures.js';
import { copyTree, freshDir, spawnProc } from './util.js';

/** tdxfer's default `transfer.window` (src/config/defaults.ts). */
export const WINDOW = 32;
/** id u32, data length u32, name length u16, XXH3-128 digest (16 bytes). */
export const HEADER = 26;
const MAX_DATA = 64 << 20;

export interface Frame {
  id: number;
  name: string;
  digest: Buffer;
  data: Buffer;
}

/** A frame's bytes with room for `size` data bytes at `HEADER + name` (filled by the caller). */
export function frameFor(id: number, name: string, size: number): { buf: Buffer; dataAt: number } {
  const nameLen = Buffer.byteLength(name);
  const buf = Buffer.allocUnsafe(HEADER + nameLen + size);
  buf.writeUInt32BE(id, 0);
  buf.writeUInt32BE(size, 4);
  buf.writeUInt16BE(nameLen, 8);
  buf.write(name, HEADER, 'utf8');
  return { buf, dataAt: HEADER + nameLen };
}

/** Writes the digest (32 hex characters) into a frame made by frameFor. */
export function setDigest(buf: Buffer, hex: string): void {
  if (Buffer.from(hex, 'hex').copy(buf, 10) !== 16) throw new Error(`not a 128-bit digest: ${hex}`);
}

/** Cuts a byte stream into frames, whatever the chunk boundaries. */
export class FrameParser {
  #buf: Buffer = Buffer.alloc(0);

  push(chunk: Buffer): Frame[] {
    this.#buf = this.#buf.length === 0 ? chunk : Buffer.concat([this.#buf, chunk]);
    const out: Frame[] = [];
    let at = 0;
    while (this.#buf.length - at >= HEADER) {
      const size = this.#buf.readUInt32BE(at + 4);
      const nameLen = this.#buf.readUInt16BE(at + 8);
      if (size > MAX_DATA) throw new Error(`small-floor: frame of ${size} bytes`);
      const end = at + HEADER + nameLen + size;
      if (this.#buf.length < end) break;
      const name = this.#buf.toString('utf8', at + HEADER, at + HEADER + nameLen);
      if (name === '' || name.includes('/') || name.includes('\\') || name === '.' || name === '..') throw new Error(`small-floor: bad name ${JSON.stringify(name)}`);
      out.push({ id: this.#buf.readUInt32BE(at), name, digest: this.#buf.subarray(at + 10, at + 26), data: this.#buf.subarray(at + HEADER + nameLen, end) });
      at = end;
    }
    this.#buf = this.#buf.subarray(at);
    return out;
  }
}

const xxh = (data: Uint8Array): string => {
  const h = new Xxh3Simd();
  h.update(data);
  return h.digest();
};
const cpuSince = (c0: NodeJS.CpuUsage): string => {
  const c = process.cpuUsage(c0);
  return `${(c.user / 1000).toFixed(1)} ${(c.system / 1000).toFixed(1)}`;
};

async function receive(staging: string, dest: string, key: Buffer | null): Promise<void> {
  await readyXxh3Simd();
  xxh(Buffer.alloc(4096)); // the module compiled before the first file
  const server = key ? tls.createServer(pskServerOptions(key)) : net.createServer();
  server.listen(0, '127.0.0.1', () => process.stdout.write(`port ${(server.address() as net.AddressInfo).port}\n`));
  const sock = await new Promise<net.Socket>((resolve) => server.once(key ? 'secureConnection' : 'connection', resolve));
  server.close();
  const c0 = process.cpuUsage();
  const parser = new FrameParser();
  let ready: Array<{ id: number; name: string }> = [];
  let landing = false;
  let files = 0;
  let batches = 0;
  const fail = (err: unknown) => {
    process.stderr.write(`small-floor receiver failed: ${String(err)}\n`);
    process.exit(1);
  };
  // Group commit: every file fsynced while the previous batch was on disk lands together.
  const land = () => {
    if (landing || ready.length === 0) return;
    landing = true;
    const batch = ready;
    ready = [];
    for (const f of batch) fs.renameSync(path.join(staging, f.name), path.join(dest, f.name));
    const dfd = fs.openSync(dest, 'r');
    fs.fsync(dfd, (err) => {
      fs.closeSync(dfd);
      if (err) return fail(err);
      const acks = Buffer.allocUnsafe(4 * batch.length);
      batch.forEach((f, i) => acks.writeUInt32BE(f.id, 4 * i));
      sock.write(acks);
      files += batch.length;
      batches++;
      landing = false;
      land();
    });
  };
  sock.on('data', (chunk: Buffer) => {
    for (const f of parser.push(chunk)) {
      if (xxh(f.data) !== f.digest.toString('hex')) return fail(new Error(`${f.name}: XXH3-128 mismatch`));
      const fd = fs.openSync(path.join(staging, f.name), 'wx');
      for (let off = 0; off < f.data.length; ) off += fs.writeSync(fd, f.data, off);
      fs.fsync(fd, (err) => {
        fs.closeSync(fd);
        if (err) return fail(err);
        ready.push({ id: f.id, name: f.name });
        land();
      });
    }
  });
  sock.once('error', fail);
  sock.once('end', () => {
    process.stdout.write(`recv ${files} ${batches} ${cpuSince(c0)}\n`);
    sock.end();
  });
}

async function send(port: number, src: string, archive: string, key: Buffer | null): Promise<void> {
  await readyXxh3Simd();
  xxh(Buffer.alloc(4096));
  const sock = key ? tls.connect({ port, host: '127.0.0.1', ...pskClientOptions(key) }) : net.connect({ port, host: '127.0.0.1' });
  await new Promise<void>((resolve, reject) => sock.once(key ? 'secureConnect' : 'connect', resolve).once('error', reject));
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  const names = fs.readdirSync(src);
  let next = 0;
  let acked = 0;
  let pending: Buffer = Buffer.alloc(0);
  const pump = () => {
    if (next >= names.length || next - acked >= WINDOW) return;
    sock.cork();
    while (next < names.length && next - acked < WINDOW) {
      const name = names[next]!;
      const fd = fs.openSync(path.join(src, name), 'r');
      const size = fs.fstatSync(fd).size;
      const { buf, dataAt } = frameFor(next, name, size);
      for (let off = 0; off < size; ) {
        const n = fs.readSync(fd, buf, dataAt + off, size - off, off);
        if (n === 0) throw new Error(`${name} shrank while read`);
        off += n;
      }
      fs.closeSync(fd);
      setDigest(buf, xxh(buf.subarray(dataAt)));
      sock.write(buf);
      next++;
    }
    process.nextTick(() => sock.uncork());
  };
  await new Promise<void>((resolve, reject) => {
    sock.once('error', reject);
    sock.on('data', (chunk: Buffer) => {
      pending = pending.length === 0 ? chunk : Buffer.concat([pending, chunk]);
      const whole = pending.length - (pending.length % 4);
      for (let at = 0; at < whole; at += 4) {
        const name = names[pending.readUInt32BE(at)]!;
        fs.renameSync(path.join(src, name), path.join(archive, name));
        acked++;
      }
      pending = pending.subarray(whole);
      if (acked === names.length) resolve();
      else pump();
    });
    pump();
  });
  process.stdout.write(`sent ${names.length} ${(performance.now() - t0).toFixed(1)} ${cpuSince(c0)}\n`);
  sock.end();
}

export interface FloorRun {
  ms: number;
  sender: Cpu;
  receiver: Cpu;
  /** Landing batches at the receiver: folder fsyncs, ACK writes. */
  batches: number;
}

/**
 * Moves every file of `src` (a fresh copy: the files end in `archive`) into `dest`
 * through a receiver and a sender child; `staging`, `dest` and `archive` must exist.
 */
export async function smallFloorRun(dirs: { src: string; staging: string; dest: string; archive: string }, files: number, opts: { tls: boolean }): Promise<FloorRun> {
  const self = fileURLToPath(import.meta.url);
  const key = opts.tls ? [randomBytes(32).toString('hex')] : [];
  const recv = spawnProc(process.execPath, [self, 'recv', dirs.staging, dirs.dest, ...key]);
  try {
    const port = (await recv.waitFor(/port (\d+)/))[1]!;
    const sender = spawnProc(process.execPath, [self, 'send', port, dirs.src, dirs.archive, ...key]);
    try {
      const s = await sender.waitFor(/sent (\d+) ([\d.]+) ([\d.]+) ([\d.]+)/, 300_000);
      const r = await recv.waitFor(/recv (\d+) (\d+) ([\d.]+) ([\d.]+)/, 60_000);
      if (Number(s[1]) !== files || Number(r[1]) !== files) throw new Error(`bench: small floor moved ${s[1]} files (receiver: ${r[1]}), expected ${files}`);
      const landed = fs.readdirSync(dirs.dest).length;
      if (landed !== files) throw new Error(`bench: small floor left ${landed} files in ${dirs.dest}, expected ${files}`);
      return { ms: Number(s[2]), sender: { user: Number(s[3]), sys: Number(s[4]) }, receiver: { user: Number(r[3]), sys: Number(r[4]) }, batches: Number(r[2]) };
    } finally {
      await sender.stop();
    }
  } finally {
    await recv.stop();
  }
}

/** One run on a fresh copy of `set` (cp -r, not timed) in fresh folders under `base`; nothing deleted. */
export async function smallFloor(base: string, set: string, files: number, opts: { tls: boolean }, label: string): Promise<FloorRun> {
  const root = await freshDir(base, `${label}-`);
  const dirs = { src: path.join(root, 'batch'), staging: path.join(root, 'staging'), dest: path.join(root, 'inbox'), archive: path.join(root, 'archive') };
  copyTree(set, dirs.src);
  for (const d of [dirs.staging, dirs.dest, dirs.archive]) fs.mkdirSync(d);
  return smallFloorRun(dirs, files, opts);
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const [mode, a, b, c, d] = process.argv.slice(2);
  const key = (hex: string | undefined) => (hex ? Buffer.from(hex, 'hex') : null);
  const run = mode === 'recv' ? receive(a!, b!, key(c)) : mode === 'send' ? send(Number(a), b!, c!, key(d)) : Promise.reject(new Error(`mode ${mode}`));
  run.catch((err: unknown) => {
    process.stderr.write(`small-floor ${mode} failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exit(1);
  });
}
