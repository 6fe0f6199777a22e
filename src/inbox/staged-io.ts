/**
 * The file I/O of a staged (partial) file: opened for writing without following a link
 * planted in its place, from byte 0 (creating a staging folder deleted by hand) or to
 * resume; the hash of the bytes already there; the digest of a whole file.
 */
import { createReadStream, constants as fsConstants } from 'node:fs';
import fs from 'node:fs/promises';
import { createFileHash, type FileHash, type HashAlg } from '../hash.js';
import { InboxError } from './errors.js';

/** O_NOFOLLOW where the platform has it (not Windows): a staging file replaced by a link is not written through. */
const NOFOLLOW = fsConstants.O_NOFOLLOW ?? 0;
const WRITE_FRESH = fsConstants.O_WRONLY | fsConstants.O_CREAT | fsConstants.O_TRUNC | NOFOLLOW;
export const WRITE_RESUME = fsConstants.O_RDWR | NOFOLLOW;

export async function openNoFollow(file: string, flags: number): Promise<fs.FileHandle> {
  try {
    return await fs.open(file, flags, 0o666);
  } catch (err) {
    if ((err as { code?: unknown }).code === 'ELOOP') {
      throw new InboxError('IO', `The staging file ${file} is a symlink (someone replaced it); it is not written through. Remove the link.`, { cause: err });
    }
    throw err;
  }
}

/** Opens `file` for writing from byte 0, creating its folder when it is missing (staging deleted by hand). */
export async function openFresh(file: string, dir: string): Promise<fs.FileHandle> {
  try {
    return await openNoFollow(file, WRITE_FRESH);
  } catch (err) {
    if ((err as { code?: unknown }).code !== 'ENOENT') throw err;
    await fs.mkdir(dir, { recursive: true });
    return openNoFollow(file, WRITE_FRESH);
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
