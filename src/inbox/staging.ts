/**
 * The staging folder: where partial files live until one atomic rename moves them into
 * the inbox. Invariant: staging is on the same volume as the inbox (rename across
 * volumes fails with EXDEV and would otherwise have to copy, making partial files
 * visible), and outside the inbox whenever possible, so TouchDesigner's Folder DAT
 * never lists a partial file, even with "include subfolders" on.
 *
 * Layout: `<id><suffix>` holds the bytes, `<id>.json` the identity (source, rel, size,
 * mtime) so a later attempt, even after a crash, can resume; `<id>` is a hash of
 * (source, sanitised rel). Meta files are written to `<id>.json.tmp-*` and renamed.
 */
import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import type { Logger } from '../log.js';
import { errCode, renameRetrying, unlinkQuiet } from '../fsutil.js';
import { childPath } from '../paths.js';

/** Name of the fallback staging folder inside the inbox (hidden on macOS/Linux; receivers must never land a file there). */
export const FALLBACK_DIRNAME = '.tdxfer-staging';

export interface StagingChoice {
  dir: string;
  /** Ending of partial data files: '' in a separate folder, '.part' inside the inbox. */
  suffix: '' | '.part';
  fallback: boolean;
  /** Why the fallback was taken (for the warning), null when not. */
  reason: string | null;
}

/**
 * Decide where partial files go. `stagingDev` is `stat().dev` of the configured staging
 * folder, or null when it could not be created (with `stagingError` saying why).
 */
export function chooseStaging(a: {
  inboxPath: string;
  configured: string;
  inboxDev: number | bigint;
  stagingDev: number | bigint | null;
  stagingError?: string | undefined;
}): StagingChoice {
  const fallbackDir = path.join(a.inboxPath, FALLBACK_DIRNAME);
  if (a.stagingDev === null) {
    return {
      dir: fallbackDir,
      suffix: '.part',
      fallback: true,
      reason: `the staging folder ${a.configured} could not be created (${a.stagingError ?? 'unknown error'}); set "staging" of this inbox to a writable folder on the same volume to keep partial files out of the inbox`,
    };
  }
  if (a.stagingDev !== a.inboxDev) {
    return {
      dir: fallbackDir,
      suffix: '.part',
      fallback: true,
      reason: `the staging folder ${a.configured} is on another volume than the inbox ${a.inboxPath}, so files could not be moved into the inbox atomically (EXDEV); set "staging" of this inbox to a folder on the same volume`,
    };
  }
  return { dir: a.configured, suffix: '', fallback: false, reason: null };
}

export interface PartialMeta {
  v: 1;
  source: string;
  rel: string;
  size: number | null;
  mtimeMs: number | null;
  createdAt: number;
}

function isMeta(x: unknown): x is PartialMeta {
  const m = x as Partial<PartialMeta> | null;
  return (
    typeof m === 'object' &&
    m !== null &&
    m.v === 1 &&
    typeof m.source === 'string' &&
    typeof m.rel === 'string' &&
    (m.size === null || (typeof m.size === 'number' && Number.isSafeInteger(m.size) && m.size >= 0)) &&
    (m.mtimeMs === null || typeof m.mtimeMs === 'number') &&
    typeof m.createdAt === 'number'
  );
}

const ID = /^[0-9a-f]{32}$/;

export class Staging {
  constructor(
    readonly dir: string,
    readonly suffix: '' | '.part',
  ) {}

  /** Stable id of the partial for (source, sanitised rel). */
  id(source: string, rel: string): string {
    return createHash('sha256').update(source).update('\0').update(rel).digest('hex').slice(0, 32);
  }

  dataPath(id: string): string {
    return childPath(this.dir, id + this.suffix);
  }

  metaPath(id: string): string {
    return childPath(this.dir, `${id}.json`);
  }

  async readMeta(id: string): Promise<PartialMeta | null> {
    try {
      const parsed: unknown = JSON.parse(await fs.readFile(this.metaPath(id), 'utf8'));
      return isMeta(parsed) ? parsed : null;
    } catch {
      return null;
    }
  }

  async writeMeta(id: string, meta: PartialMeta): Promise<void> {
    const tmp = `${this.metaPath(id)}.tmp-${randomBytes(4).toString('hex')}`;
    await fs.writeFile(tmp, JSON.stringify(meta));
    await renameRetrying(tmp, this.metaPath(id));
  }

  async remove(id: string): Promise<void> {
    await unlinkQuiet(this.dataPath(id));
    await unlinkQuiet(this.metaPath(id));
  }

  async removeMeta(id: string): Promise<void> {
    await unlinkQuiet(this.metaPath(id));
  }

  /**
   * Delete partials last written more than `ttlMs` ago, partials without valid meta,
   * meta without data, and leftover meta temp files. Files that are not ours are left alone.
   */
  async cleanup(ttlMs: number, log: Logger, now: number = Date.now()): Promise<number> {
    let names: string[];
    try {
      names = await fs.readdir(this.dir);
    } catch (err) {
      if (errCode(err) === 'ENOENT') return 0;
      throw err;
    }
    const ids = new Set<string>();
    let removed = 0;
    for (const n of names) {
      if (/^[0-9a-f]{32}\.json\.tmp-/.test(n)) {
        await unlinkQuiet(path.join(this.dir, n));
        removed++;
        continue;
      }
      const id = n.endsWith('.json') ? n.slice(0, -5) : this.suffix && n.endsWith(this.suffix) ? n.slice(0, -this.suffix.length) : n;
      if (ID.test(id)) ids.add(id);
    }
    for (const id of ids) {
      const meta = await this.readMeta(id);
      const st = await fs.stat(this.dataPath(id)).catch(() => null);
      let why: string | null = null;
      if (!meta) why = 'no valid meta';
      else if (!st) why = 'meta without data';
      else if (now - st.mtimeMs > ttlMs) why = 'older than the resume time limit';
      if (why) {
        await this.remove(id);
        removed++;
        log.info('removed stale partial file from staging', { staging: this.dir, id, why, rel: meta?.rel, source: meta?.source });
      }
    }
    return removed;
  }
}
