/**
 * Moving a finished, verified file from staging into the inbox.
 *
 * Invariants:
 * - Confinement on real paths: every folder on the way is resolved with realpath and
 *   must lie inside the inbox's real path BEFORE anything is created in it, so a
 *   symlink (or junction) planted inside the inbox cannot make us write outside.
 * - One name per file, case-insensitively: TouchDesigner mostly runs on NTFS/APFS,
 *   where `A.png` and `a.png` are the same file. Folders differing only in case are
 *   reused (`Shot1/` for `shot1/`), and an overwrite never leaves two case variants.
 * - The file appears by one rename (retried on transient Windows locks), and the
 *   folder is fsynced afterwards.
 * Callers serialise landings per inbox (the folder listing and the rename must not interleave).
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import type { CollisionPolicy } from '../config/types.js';
import type { Logger } from '../log.js';
import { collisionKey, renameCandidate } from '../names.js';
import { InboxError } from './errors.js';
import { errCode, fsyncDir, isInside, renameWithRetry } from '../fsutil.js';
import { FALLBACK_DIRNAME } from './staging.js';

export interface LandRequest {
  inboxName: string;
  /** Inbox path as configured (absolute) and its real path. */
  inboxPath: string;
  inboxReal: string;
  /** Sanitised components of the requested rel. */
  parts: string[];
  /** Finished file in staging. */
  from: string;
  policy: CollisionPolicy;
  log: Logger;
  /**
   * Awaited with the final rel right before the rename that makes the file visible:
   * the dedupe journal is written here, so a crash between the rename and the ACK can
   * never let a resend land a second copy.
   */
  beforeRename?: (rel: string) => Promise<void>;
  /**
   * Leave the fsync of the folder the file landed in to the caller (`syncDir` of the
   * outcome), so it can happen outside the caller's landing lock and be shared.
   */
  deferDirSync?: boolean;
}

export type LandOutcome =
  | { status: 'landed'; rel: string; abs: string; renamedFrom: string | null; syncDir?: string }
  | { status: 'skipped'; rel: string; abs: string };

/** Entries of `dir` whose name equals `name` case-insensitively; the exact spelling first. */
function variants(entries: string[], name: string, atRoot: boolean): string[] {
  const key = collisionKey(name);
  const found = entries.filter((e) => collisionKey(e) === key && !(atRoot && e === FALLBACK_DIRNAME));
  return found.sort((a, b) => Number(b === name) - Number(a === name));
}

async function readdirOrEmpty(dir: string): Promise<string[]> {
  try {
    return await fs.readdir(dir);
  } catch (err) {
    if (errCode(err) === 'ENOENT') return [];
    throw err;
  }
}

function outside(inboxName: string, rel: string, real: string): InboxError {
  return new InboxError(
    'BAD_NAME',
    `Inbox "${inboxName}": the folder ${JSON.stringify(rel)} resolves to ${real}, outside the inbox (a symlink or junction inside the inbox points elsewhere); remove it or send to another folder`,
  );
}

/**
 * Resolve (and, if `create`, create) the parent folders of `parts` inside the inbox.
 * Returns the real path of the parent and the spelling actually used for each folder,
 * or null when a folder is missing and `create` is false.
 */
export async function resolveParent(
  req: Pick<LandRequest, 'inboxName' | 'inboxReal' | 'parts'>,
  create: boolean,
): Promise<{ real: string; names: string[]; created: string[] } | null> {
  let dir = req.inboxReal;
  const names: string[] = [];
  const created: string[] = [];
  for (const part of req.parts.slice(0, -1)) {
    const match = variants(await readdirOrEmpty(dir), part, names.length === 0)[0];
    const name = match ?? part;
    const next = path.join(dir, name);
    if (match === undefined) {
      if (!create) return null;
      try {
        await fs.mkdir(next);
        created.push(dir);
      } catch (err) {
        if (errCode(err) !== 'EEXIST') throw err;
      }
    }
    names.push(name);
    const real = await fs.realpath(next);
    if (!isInside(req.inboxReal, real)) throw outside(req.inboxName, names.join('/'), real);
    const st = await fs.stat(real);
    if (!st.isDirectory()) {
      throw new InboxError(
        'BAD_NAME',
        `Inbox "${req.inboxName}": ${JSON.stringify(names.join('/'))} is a file, but the incoming file needs a folder of that name; rename one of them`,
      );
    }
    dir = real;
  }
  return { real: dir, names, created };
}

/** The existing entry the file would collide with (case-insensitively), or null. Never creates anything. */
export async function findExisting(
  req: Pick<LandRequest, 'inboxName' | 'inboxPath' | 'inboxReal' | 'parts'>,
): Promise<{ rel: string; abs: string } | null> {
  let parent: Awaited<ReturnType<typeof resolveParent>>;
  try {
    parent = await resolveParent(req, false);
  } catch (err) {
    if (err instanceof InboxError) return null;
    throw err;
  }
  if (!parent) return null;
  const name = req.parts[req.parts.length - 1]!;
  const hit = variants(await readdirOrEmpty(parent.real), name, parent.names.length === 0)[0];
  if (hit === undefined) return null;
  const rel = [...parent.names, hit].join('/');
  return { rel, abs: path.join(req.inboxPath, ...parent.names, hit) };
}

export async function land(req: LandRequest): Promise<LandOutcome> {
  const parent = (await resolveParent(req, true))!;
  const requested = req.parts.join('/');
  const name = req.parts[req.parts.length - 1]!;
  const entries = await readdirOrEmpty(parent.real);
  const same = variants(entries, name, parent.names.length === 0);
  const finish = async (finalName: string): Promise<LandOutcome> => {
    if (!req.deferDirSync) await fsyncDir(parent.real);
    // New folders are durable only once the folder holding them is synced too.
    for (const d of parent.created.reverse()) await fsyncDir(d);
    const rel = [...parent.names, finalName].join('/');
    return {
      status: 'landed', rel, abs: path.join(req.inboxPath, ...parent.names, finalName), renamedFrom: rel === requested ? null : requested,
      ...(req.deferDirSync ? { syncDir: parent.real } : {}),
    };
  };

  const announce = async (finalName: string): Promise<void> => {
    await req.beforeRename?.([...parent.names, finalName].join('/'));
  };

  if (same.length === 0) {
    await announce(name);
    await renameWithRetry(req.from, path.join(parent.real, name), req.log);
    return finish(name);
  }

  if (req.policy === 'skip') {
    const hit = same[0]!;
    return { status: 'skipped', rel: [...parent.names, hit].join('/'), abs: path.join(req.inboxPath, ...parent.names, hit) };
  }

  if (req.policy === 'rename') {
    const used = new Set(entries.map(collisionKey));
    let n = 1;
    let cand = renameCandidate(name, n);
    while (used.has(collisionKey(cand)) || (parent.names.length === 0 && collisionKey(cand) === collisionKey(FALLBACK_DIRNAME))) {
      cand = renameCandidate(name, ++n);
    }
    await announce(cand);
    await renameWithRetry(req.from, path.join(parent.real, cand), req.log);
    return finish(cand);
  }

  // overwrite: replace the existing entry atomically (the exact spelling if present).
  const target = same[0]!;
  const targetAbs = path.join(parent.real, target);
  const st = await fs.lstat(targetAbs);
  if (st.isDirectory()) {
    throw new InboxError(
      'BAD_NAME',
      `Inbox "${req.inboxName}": ${JSON.stringify([...parent.names, target].join('/'))} is a folder, so the incoming file cannot replace it; rename the folder or the file`,
    );
  }
  await announce(name);
  await renameWithRetry(req.from, targetAbs, req.log);
  if (target !== name) {
    // Case-only rename: works on case-insensitive volumes too; the file keeps the new content throughout.
    await renameWithRetry(targetAbs, path.join(parent.real, name), req.log);
    req.log.info('replaced a file whose name differed only in case; it now has the incoming spelling', { replaced: target, now: name });
  }
  // Only possible on case-sensitive volumes: further variants of the same name.
  for (const other of same.slice(1)) {
    if (other === name) continue;
    const p = path.join(parent.real, other);
    const ost = await fs.lstat(p).catch(() => null);
    if (ost && !ost.isDirectory()) {
      await fs.rm(p, { force: true });
      req.log.info('removed a case variant of the overwritten file (would be the same file on Windows/macOS)', { removed: other, kept: name });
    }
  }
  return finish(name);
}
