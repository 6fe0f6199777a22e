/**
 * Reading an outbox file for sending, checked against the version announced: the whole
 * of a small file, a prefix to hash (resume), one destination's own chunked read. Every
 * byte read or hashed is counted in SendStats (the "sending reads" line at stop, the
 * fan-out bench).
 */
import fs from 'node:fs';
import { promisify } from 'node:util';
import { TdxError, describeError } from '../errors.js';
import type { FileHash } from '../hash.js';
import { ChunkReader, type BufferPool } from './chunks.js';
import type { QuickFs } from '../quickfs.js';

/** The file changed (re-render) or vanished while being sent: not an error of the link. */
export class SourceChangedError extends TdxError {
  constructor(message: string) {
    super('SOURCE_CHANGED', message);
  }
}

/** The version of a file being sent (from the watcher's settled stat). */
export interface SourceFile {
  /** Absolute path. */
  abs: string;
  size: number;
  mtimeMs: number;
}

/** Bytes read from outbox files and bytes hashed for sending, agent-wide. */
export interface SendStats {
  read: number;
  hashed: number;
}

/** A chunk to send; release() once the socket wrote it. */
export interface SourceChunk {
  data: Buffer;
  release: () => void;
}

/** One destination's bytes of one file from its start offset, and the whole file's hash. */
export interface ChunkSource {
  /** The next chunk, or null once every byte was given and the file is still the version announced. */
  next(): Promise<SourceChunk | null>;
  /** The whole-file digest in the algorithm asked for (after next() gave null). */
  digest(): string;
  /** Stops (done or abandoned); chunks still out stay valid until released. */
  close(): Promise<void>;
}

/** A read error as the sender reports it: a vanished file is a changed source. */
export function readError(abs: string, err: unknown, when = 'while being sent'): TdxError {
  if (err instanceof TdxError) return err;
  if ((err as { code?: string }).code === 'ENOENT') return new SourceChangedError(`${abs} disappeared ${when}`);
  return new TdxError('READ_FAILED', `cannot read ${abs}: ${describeError(err)}`, { cause: err });
}

/**
 * The version we announced must be the one we sent: a re-render under the same name
 * (size or mtime changed) is sent again as its own version.
 */
export async function checkUnchanged(file: SourceFile, sent: number): Promise<void> {
  let st: fs.Stats;
  try {
    st = await fs.promises.stat(file.abs);
  } catch {
    throw new SourceChangedError(`${file.abs} disappeared while being sent`);
  }
  if (sent !== file.size || st.size !== file.size || st.mtimeMs !== file.mtimeMs) {
    throw new SourceChangedError(`${file.abs} changed while being sent (size ${file.size} → ${st.size}); the new version will be sent`);
  }
}

/**
 * The whole of a small file (into `into`, at least `file.size` bytes), checked to be the
 * version announced: size and mtime from the same open handle, and no byte more or less
 * than announced.
 */
export async function readWhole(file: SourceFile, stats: SendStats, into: Buffer = Buffer.allocUnsafe(file.size), quick?: QuickFs): Promise<Buffer> {
  if (quick) return quick.call(file.abs, () => readWholeSync(file, stats, into), () => readWholeAsync(file, stats, into));
  return readWholeAsync(file, stats, into);
}

/** readWhole() in synchronous calls (QuickFs: a local outbox, calls fast lately). */
function readWholeSync(file: SourceFile, stats: SendStats, buf: Buffer): Buffer {
  let fd: number;
  try {
    fd = fs.openSync(file.abs, 'r');
  } catch (err) {
    throw readError(file.abs, err, 'before it was sent');
  }
  try {
    let n = 0;
    while (n < file.size) {
      const bytesRead = fs.readSync(fd, buf, n, file.size - n, n);
      if (bytesRead === 0) break; // shorter than announced
      n += bytesRead;
    }
    stats.read += n;
    return checkWhole(file, n, fs.fstatSync(fd), buf);
  } catch (err) {
    throw readError(file.abs, err);
  } finally {
    try {
      fs.closeSync(fd);
    } catch {
      // read-only descriptor: a close error loses nothing
    }
  }
}

/** The bytes read (`n`) and the open file's stat must be the version announced. */
function checkWhole(file: SourceFile, n: number, st: fs.Stats, buf: Buffer): Buffer {
  // Longer than announced shows in the size of the same open file.
  if (n !== file.size || st.size !== file.size || st.mtimeMs !== file.mtimeMs) {
    throw new SourceChangedError(`${file.abs} changed before it was sent (size ${file.size} → ${st.size}); the new version will be sent`);
  }
  return buf.subarray(0, n);
}

async function readWholeAsync(file: SourceFile, stats: SendStats, into: Buffer): Promise<Buffer> {
  // A plain descriptor, not a FileHandle: four calls per small file, and a FileHandle's
  // promise machinery cost ~25 % more CPU per file than the callback calls (issue #12).
  let fd: number;
  try {
    fd = await openFd(file.abs, 'r');
  } catch (err) {
    throw readError(file.abs, err, 'before it was sent');
  }
  try {
    const buf = into;
    let n = 0;
    while (n < file.size) {
      const bytesRead = await readFd(fd, buf, n, file.size - n, n);
      if (bytesRead === 0) break; // shorter than announced
      n += bytesRead;
    }
    stats.read += n;
    return checkWhole(file, n, await fstatFd(fd), buf);
  } catch (err) {
    throw readError(file.abs, err);
  } finally {
    await closeFd(fd).catch(() => undefined); // read-only descriptor: a close error loses nothing
  }
}

const openFd = promisify(fs.open);
const fstatFd = promisify(fs.fstat);
const closeFd = promisify(fs.close);
function readFd(fd: number, buf: Buffer, offset: number, length: number, position: number): Promise<number> {
  return new Promise((resolve, reject) => fs.read(fd, buf, offset, length, position, (err, n) => (err ? reject(err) : resolve(n))));
}

/** Hashes [0, length) of the file into `hash` and returns the digest so far (the hash goes on). */
export async function hashPrefix(abs: string, length: number, hash: FileHash, chunk: number, stats: SendStats): Promise<string> {
  if (length === 0) return hash.peek();
  const rs = fs.createReadStream(abs, { start: 0, end: length - 1, highWaterMark: chunk });
  let n = 0;
  try {
    for await (const c of rs as AsyncIterable<Buffer>) {
      hash.update(c);
      n += c.length;
    }
  } catch (err) {
    throw readError(abs, err);
  }
  stats.read += n;
  stats.hashed += n;
  if (n !== length) throw new SourceChangedError(`${abs} is shorter than the receiver's partial copy`);
  return hash.peek();
}

/** A destination's own read of [start, size) (pooled buffers, one read ahead), hashing as it goes. */
export class OwnRead implements ChunkSource {
  #reader: ChunkReader | null = null;
  #pos: number;
  #done = false;

  constructor(
    private readonly file: SourceFile,
    private readonly pool: BufferPool,
    start: number,
    private readonly hash: FileHash,
    private readonly stats: SendStats,
  ) {
    this.#pos = start;
  }

  async next(): Promise<SourceChunk | null> {
    if (this.#done) return null;
    try {
      if (this.#pos < this.file.size) {
        this.#reader ??= await ChunkReader.open(this.file.abs, this.pool, this.#pos, this.file.size);
        const chunk = await this.#reader.next();
        if (chunk !== null) {
          this.#pos += chunk.length;
          this.stats.read += chunk.length;
          this.stats.hashed += chunk.length;
          this.hash.update(chunk);
          let released = false;
          const release = (): void => {
            if (released) return; // twice would lend the buffer twice
            released = true;
            this.pool.release(chunk);
          };
          return { data: chunk, release };
        }
      }
    } catch (err) {
      throw readError(this.file.abs, err);
    }
    await this.close();
    await checkUnchanged(this.file, this.#pos);
    this.#done = true;
    return null;
  }

  digest(): string {
    return this.hash.digest();
  }

  async close(): Promise<void> {
    const r = this.#reader;
    this.#reader = null;
    await r?.close().catch(() => undefined); // read-only handle: a close error loses nothing
  }
}
