/** File digests in either negotiated algorithm (src/hash.ts), for tests that check what landed. */
import fs from 'node:fs';
import { createFileHash, type HashAlg } from '../../src/hash.js';

export async function digestBytes(data: Uint8Array, alg: HashAlg): Promise<string> {
  const h = await createFileHash(alg);
  h.update(data);
  return h.digest();
}

export async function digestFile(file: string, alg: HashAlg): Promise<string> {
  const h = await createFileHash(alg);
  for await (const chunk of fs.createReadStream(file, { highWaterMark: 1 << 20 })) h.update(chunk as Buffer);
  return h.digest();
}
