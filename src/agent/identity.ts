/** The agent's stable id: random, created once in the data folder, announced and used in resume identities. */
import fs from 'node:fs/promises';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { softwareVersionOf } from '../build-info.js';
import { writeFileAtomic } from '../fsutil.js';

export async function loadAgentId(dataDir: string): Promise<string> {
  const file = path.join(dataDir, 'agent-id');
  try {
    const id = (await fs.readFile(file, 'utf8')).trim();
    if (/^[A-Za-z0-9_-]{8,64}$/.test(id)) return id;
  } catch (err) {
    if ((err as { code?: string }).code !== 'ENOENT') throw err;
  }
  const id = randomBytes(8).toString('hex');
  await writeFileAtomic(file, id + '\n', { mode: 0o644 });
  return id;
}

/** The package version (from the bundle in a single executable, else package.json). */
export function softwareVersion(): string {
  return softwareVersionOf();
}
