/**
 * The file I/O of a staged (partial) file: opened for writing without following a link
 * planted in its place, from byte 0 (creating a staging folder deleted by hand) or to
 * resume; the hash of the bytes already there; the digest of a whole file.
 */
import nodeFs, { createReadStream, constants as fsConstants } from 'node:fs';
import fs from 'node:fs/promises';
import type { QuickFs } from '../quickfs.js';
import { createFileHash, type FileHash, type HashAlg } from '../hash.js';
import { InboxError } from './errors.js';

/** O_NOFOLLOW where the platform has it (not Windows): a staging file replaced by a link is not written through. */
const NOFOLLOW = fsConstants.O_NOFOLLOW ?? 0;
const WRITE_FRESH = fsConstants.O_WRONLY | fsConstants.O_CREAT | fsConstants.O_TRUNC | NOFOLLOW;
export const WRITE_RESUME = fsConstants.O_RDWR | NOFOLLOW;

/** The calls an incoming file makes on its staged file: a FileHandle, or a QuickHandle. */
export type StagedHandle = Pick<fs.FileHandle, 'fd' | 'writev' | 'sync' | 'close' | 'truncate'>;

/**
 * A staged small file's descriptor whose open, writes and close are QuickFs calls (made
 * synchronously while the staging folder is local and fast, issue #12); fsync always goes
 * through the thread pool. Like a FileHandle, a second close() does nothing and a closed
 * handle's fd is -1, so a late call cannot reach a file that reuses the number.
 */
class QuickHandle implements StagedHandle {
  #fd: number;

  constructor(
    fd: number,
    private readonly file: string,
    private readonly quick: QuickFs,
  ) {
    this.#fd = fd;
  }

  get fd(): number {
    return this.#fd;
  }

  #open(): number {
    if (this.#fd < 0) throw Object.assign(new Error(`EBADF: file closed, ${this.file}`), { code: 'EBADF', path: this.file });
    return this.#fd;
  }

  writev<T extends readonly NodeJS.ArrayBufferView[]>(buffers: T, position?: number): Promise<nodeFs.WriteVResult<T>> {
    return this.quick.call(
      this.file,
      () => ({ bytesWritten: nodeFs.writevSync(this.#open(), buffers, position), buffers }),
      () => new Promise((resolve, reject) => nodeFs.writev(this.#open(), buffers, position ?? null, (err, bytesWritten) => (err ? reject(err) : resolve({ bytesWritten, buffers })))),
    );
  }

  sync(): Promise<void> {
    return new Promise((resolve, reject) => nodeFs.fsync(this.#open(), (err) => (err ? reject(err) : resolve())));
  }

  truncate(len?: number): Promise<void> {
    return new Promise((resolve, reject) => nodeFs.ftruncate(this.#open(), len ?? 0, (err) => (err ? reject(err) : resolve())));
  }

  close(): Promise<void> {
    const fd = this.#fd;
    if (fd < 0) return Promise.resolve();
    this.#fd = -1;
    return this.quick.call(
      this.file,
      () => nodeFs.closeSync(fd),
      () => new Promise<void>((resolve, reject) => nodeFs.close(fd, (err) => (err ? reject(err) : resolve()))),
    );
  }
}

export async function openNoFollow(file: string, flags: number, quick?: QuickFs): Promise<StagedHandle> {
  try {
    if (quick) {
      return await quick.call(
        file,
        (): StagedHandle => new QuickHandle(nodeFs.openSync(file, flags, 0o666), file, quick),
        () => new Promise<StagedHandle>((resolve, reject) => nodeFs.open(file, flags, 0o666, (err, fd) => (err ? reject(err) : resolve(new QuickHandle(fd, file, quick))))),
      );
    }
    return await fs.open(file, flags, 0o666);
  } catch (err) {
    if ((err as { code?: unknown }).code === 'ELOOP') {
      throw new InboxError('IO', `The staging file ${file} is a symlink (someone replaced it); it is not written through. Remove the link.`, { cause: err });
    }
    throw err;
  }
}

/**
 * Opens `file` for writing from byte 0, creating its folder when it is missing (staging
 * deleted by hand). With `quick` (a small file) its calls are QuickFs calls.
 */
export async function openFresh(file: string, dir: string, quick?: QuickFs): Promise<StagedHandle> {
  try {
    return await openNoFollow(file, WRITE_FRESH, quick);
  } catch (err) {
    if ((err as { code?: unknown }).code !== 'ENOENT') throw err;
    await fs.mkdir(dir, { recursive: true });
    return openNoFollow(file, WRITE_FRESH, quick);
  }
}

/** Feeds the first `length` bytes of `file` (the part received before a resume) to `hash`. */
export async function hashPrefix(file: string, length: number, hash: FileHash): Promise<void> {
  if (length === 0) return;
  for await (const chunk of createReadStream(file, { start: 0, end: length - 1, highWaterMark: 1 << 20 })) {
    hash.update(chunk as Buffer);
  }
}

/** The digest of a whole file in `alg`, or null when it cannot be read. */
export async function digestOf(file: string, alg: HashAlg): Promise<string | null> {
  const hash = await createFileHash(alg);
  try {
    for await (const chunk of createReadStream(file, { highWaterMark: 1 << 20 })) hash.update(chunk as Buffer);
  } catch {
    return null;
  }
  return hash.digest();
}
