/**
 * Where in an inbox a file goes, on real paths: the inbox's name index, confinement
 * checks, the parent folders of a rel (created on the way, reusing a folder that differs
 * only in case) and the existing entry a file would collide with.
 *
 * Invariant: every folder on the way is resolved with realpath and must lie inside the
 * inbox's real path BEFORE anything is created in it, so a symlink (or junction) planted
 * inside the inbox cannot make us write outside.
 */
import fs from 'node:fs/promises';
import { InboxError } from './errors.js';
import { errCode, isInside, realpathLong } from '../fsutil.js';
import { DirIndex, nodeDirOps, type DirOps } from './dirindex.js';
import { THREAD_POOL_FS, type QuickFs } from '../quickfs.js';
import { Listing } from './land-plan.js';
import { below, childPath } from '../paths.js';

/** The inbox's name index: folders listed once, names checked on disk (see dirindex.ts). */
export type LandIndex = DirIndex<Listing>;

export function newLandIndex(ops?: DirOps, quick?: QuickFs): LandIndex {
  // The per-name lstats of landing as QuickFs calls (quickfs.ts, issue #12); listings as they are.
  const o = ops ?? (quick ? { ...nodeDirOps, lstat: (p: string) => quick.lstat(p), stat: (p: string) => quick.stat(p) } : undefined);
  return new DirIndex((names) => new Listing(names), o ? { ops: o } : {});
}

/**
 * Throws when any of `paths` no longer resolves to `expectedReal` (the folder was replaced by
 * a symlink or junction to somewhere else). A missing folder passes: it is re-created in place.
 */
export async function checkConfined(inboxName: string, what: string, paths: string[], expectedReal: string, quick?: QuickFs): Promise<void> {
  for (const p of paths) {
    let real: string;
    try {
      real = await realpathLong(p, quick);
    } catch (err) {
      if (errCode(err) === 'ENOENT') continue;
      throw err;
    }
    if (real !== expectedReal) {
      throw new InboxError(
        'IO',
        `Inbox "${inboxName}": the ${what} ${p} now resolves to ${real}, not ${expectedReal} (it was replaced by a symlink or junction while the agent runs); nothing is written there. Put the real folder back, or restart the agent to use the new location.`,
        { retryable: true },
      );
    }
  }
}

/**
 * A folder that must keep resolving to `expectedReal` (the inbox, its staging folder),
 * checked before every file: the first check resolves each path with realpath
 * (checkConfined) and remembers the folder's identity (device and inode); later checks
 * stat each path (one call, following links) and resolve real paths again only when the
 * identity differs. A path whose stat shows the remembered folder leads to that very
 * folder, wherever a link on the way points; a folder swapped for a link to another one,
 * or removed and made again, shows another identity and gets the full check (and its
 * refusal). realpath costs an lstat per path component: three of them per incoming file
 * were the receiver's largest single cost in the 20,000-file backlog (issue #12).
 */
export class ConfinedFolder {
  #id: { dev: bigint; ino: bigint } | null = null;
  /** The check not started yet, shared by every caller that arrives before it starts. */
  #next: Promise<void> | null = null;

  constructor(
    private readonly inboxName: string,
    private readonly what: string,
    paths: string[],
    private readonly expectedReal: string,
    /** The inbox's QuickFs: these stats and realpaths synchronous while the folder is local and fast (issue #12). */
    private readonly quick: QuickFs = THREAD_POOL_FS,
  ) {
    this.paths = [...new Set(paths)];
  }

  private readonly paths: string[];

  /**
   * Resolves once a check that started after this call passed (rejects as it failed).
   * Callers of one turn of the event loop (the eager files of one network read, issue #12)
   * share one check: it starts on the next turn (setImmediate), after all of them arrived,
   * so it is as fresh for each of them as one of its own would be.
   */
  check(): Promise<void> {
    this.#next ??= new Promise<void>((resolve) => setImmediate(resolve)).then(() => {
      this.#next = null;
      return this.#checkNow();
    });
    return this.#next;
  }

  async #checkNow(): Promise<void> {
    const id = this.#id;
    if (id !== null) {
      const same = await Promise.all(this.paths.map((p) => this.quick.statBig(p).then((st) => st.isDirectory() && st.dev === id.dev && st.ino === id.ino, () => false)));
      if (same.every(Boolean)) return;
      this.#id = null;
    }
    // Identity taken before and after the full check: a swap in between is not remembered.
    const before = await this.quick.statBig(this.expectedReal).catch(() => null);
    await checkConfined(this.inboxName, this.what, this.paths, this.expectedReal, this.quick);
    const after = await this.quick.statBig(this.expectedReal).catch(() => null);
    if (before && after && before.isDirectory() && before.dev === after.dev && before.ino === after.ino) this.#id = { dev: after.dev, ino: after.ino };
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
  req: { inboxName: string; inboxReal: string; parts: string[]; index: LandIndex; quick?: QuickFs | undefined },
  create: boolean,
): Promise<{ real: string; names: string[]; created: string[] } | null> {
  let dir = req.inboxReal;
  const names: string[] = [];
  const created: string[] = [];
  for (const part of req.parts.slice(0, -1)) {
    const listing = await req.index.lookup(dir, [part]);
    const match = listing.variants(part, names.length === 0)[0];
    const name = match ?? part;
    const next = childPath(dir, name);
    if (match === undefined) {
      if (!create) return null;
      try {
        await fs.mkdir(next);
        created.push(dir);
      } catch (err) {
        if (errCode(err) !== 'EEXIST') throw err;
      }
      listing.add(part);
      await req.index.settled(dir);
    }
    names.push(name);
    const real = await realpathLong(next, req.quick);
    if (!isInside(req.inboxReal, real)) throw outside(req.inboxName, names.join('/'), real);
    const st = await (req.quick ?? THREAD_POOL_FS).stat(real);
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
  req: { inboxName: string; inboxPath: string; inboxReal: string; parts: string[]; index: LandIndex; quick?: QuickFs | undefined },
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
  const hit = (await req.index.lookup(parent.real, [name])).variants(name, parent.names.length === 0)[0];
  if (hit === undefined) return null;
  const rel = [...parent.names, hit].join('/');
  return { rel, abs: below(req.inboxPath, rel) };
}

/** The parent folders of a rel as resolveParent found (or made) them. */
export type Parent = NonNullable<Awaited<ReturnType<typeof resolveParent>>>;
