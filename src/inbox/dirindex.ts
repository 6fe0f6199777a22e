/**
 * Which names a folder of the inbox holds, without listing it per file.
 *
 * Landing needs, for each incoming name, the entries equal to it case-insensitively
 * (case-variant rules, onCollision) and, under `rename`, a free "(n)" candidate. Listing
 * the folder for that made every landing cost O(files in the folder): a render folder of
 * 100,000 frames took ~160 ms of CPU per landed file (issue #20). Instead:
 *
 * - Each folder is listed once, when a file first lands in it, into an index by
 *   collision key; our own landings keep it up to date (`applied`). The listing is
 *   streamed (never one array of 100,000 names) into a compact table outside the JS heap
 *   (nametable.ts, ~25 bytes per name), so a full folder costs the process a few MB, not
 *   the ~30 MB a listing array and a Map of strings left behind.
 * - The names a landing may use are checked on disk every time: an lstat of the exact
 *   name and of each indexed case variant, so a file another program created or removed
 *   under one of those names is never missed and a stale entry is dropped.
 * - A hit the index cannot explain (the exact name exists, no indexed variant is that
 *   file) is classified by one more lstat of the name in swapped case: on a
 *   case-sensitive folder the entry is spelled exactly as asked; on a case-insensitive one
 *   (NTFS, APFS) its spelling may differ, and the folder is listed again, on demand.
 * - Case variants other programs create under other spellings (possible only on
 *   case-sensitive volumes) are picked up by a new listing when the folder's mtime shows a
 *   change we did not make (one stat per lookup tells). A folder only tdxfer writes to is
 *   listed once; one another program keeps changing is listed at most once per
 *   `refreshMinMs` (default 0: at each lookup after such a change, as the rules need).
 *   Limit: a variant another program creates within the same folder-timestamp tick as one
 *   of our landings (ext4 takes timestamps from a coarse clock, a few ms) leaves the mtime
 *   where our landing put it and is seen only at the next change we did not make; until
 *   then an `overwrite` landing may leave that other spelling beside it (nothing is lost).
 * - At most `maxFolders` folders are kept (least recently used first out).
 *
 * Everything here is I/O through `DirOps`, so tests count listings on a real disk.
 */
import type { Stats } from 'node:fs';
import fs from 'node:fs/promises';
import { errCode } from '../fsutil.js';
import { collisionKey } from '../names.js';
import { childPath } from '../paths.js';

/** The file-system calls the index makes (node:fs by default; tests wrap it to count). */
export interface DirOps {
  readdir(dir: string): Promise<string[]>;
  /**
   * The folder's names one by one (used instead of `readdir` when present): a listing of
   * 100,000 names never exists as one array (nor as libuv's scandir copy), so it does not
   * grow the process for good (issue #20).
   */
  scan?(dir: string): AsyncIterable<string>;
  lstat(p: string): Promise<Stats>;
  stat(p: string): Promise<Stats>;
}

async function* scanDir(dir: string): AsyncIterable<string> {
  const d = await fs.opendir(dir, { bufferSize: 128 });
  for await (const e of d) yield e.name;
}

export const nodeDirOps: DirOps = {
  readdir: (dir) => fs.readdir(dir),
  scan: scanDir,
  lstat: (p) => fs.lstat(p),
  stat: (p) => fs.stat(p),
};

/** What the index needs of a folder's name set (land.ts's Listing). */
export interface NameSet {
  variants(name: string, atRoot: boolean): string[];
  add(name: string): void;
  remove(name: string): void;
}

export interface DirIndexOptions {
  ops?: DirOps;
  /** Least time between two listings of one folder prompted by others' changes. Default 0. */
  refreshMinMs?: number;
  /** Folders kept indexed. Default 256. */
  maxFolders?: number;
}

interface Folder<L> {
  listing: L;
  /** mtime of the folder after our own last change, or at the last listing. */
  mtimeMs: number;
  listedAt: number;
  /** Our own changes under way (`changing` .. `settled`): the mtime they move is not someone else's. */
  busy: number;
  /** Counts `changing` and `settled` calls: a lookup's stat taken across one is not judged by mtime. */
  epoch: number;
}

async function orNull(p: Promise<Stats>): Promise<Stats | null> {
  try {
    return await p;
  } catch (err) {
    const code = errCode(err);
    if (code === 'ENOENT' || code === 'ENOTDIR') return null;
    throw err;
  }
}

function sameFile(a: Stats, b: Stats): boolean {
  return a.ino === b.ino && a.dev === b.dev;
}

function swapCase(name: string): string {
  let out = '';
  for (const ch of name) {
    const up = ch.toUpperCase();
    out += up === ch ? ch.toLowerCase() : up;
  }
  return out;
}

export class DirIndex<L extends NameSet> {
  readonly #folders = new Map<string, Folder<L>>();
  readonly #make: (names: Iterable<string>) => L;
  readonly #ops: DirOps;
  readonly #refreshMinMs: number;
  readonly #maxFolders: number;

  constructor(make: (names: Iterable<string>) => L, opts: DirIndexOptions = {}) {
    this.#make = make;
    this.#ops = opts.ops ?? nodeDirOps;
    this.#refreshMinMs = opts.refreshMinMs ?? 0;
    this.#maxFolders = opts.maxFolders ?? 256;
  }

  /**
   * The index of `dir`, with `names` (exact names a landing may use) and their indexed
   * case variants checked on disk. A missing folder gives an empty set (not kept).
   */
  async lookup(dir: string, names: readonly string[]): Promise<L> {
    const seen = this.#folders.get(dir);
    const epoch = seen?.epoch;
    const st = await orNull(this.#ops.stat(dir));
    if (!st) {
      this.#folders.delete(dir);
      return this.#make([]);
    }
    let f = this.#folders.get(dir);
    if (f) {
      this.#folders.delete(dir); // re-inserted below: most recently used last
      // While our own batch renames into it, its mtime moves because of us: a lookup for the
      // next file (Inbox.begin runs beside the batch) must not take that for a change by
      // someone else, or every batch would list the folder again (issue #20).
      // The same holds for a stat that raced with the start or end of such a batch (epoch).
      const ours = f.busy > 0 || f !== seen || f.epoch !== epoch;
      if (!ours && st.mtimeMs !== f.mtimeMs && performance.now() - f.listedAt >= this.#refreshMinMs) f = undefined;
    }
    f ??= await this.#list(dir);
    this.#keep(dir, f);
    for (const name of names) await this.#check(dir, f, name);
    return f.listing;
  }

  /**
   * Whether `name` (a rename candidate the index thinks free) is taken on disk after all;
   * if so it is added to the index. Only adds: names planned but not yet renamed in a
   * batch stay in the index.
   */
  async taken(dir: string, name: string): Promise<boolean> {
    const f = this.#folders.get(dir);
    if (!f || f.listing.variants(name, false).length > 0) return false;
    if (!(await orNull(this.#ops.lstat(childPath(dir, name))))) return false;
    f.listing.add(name);
    return true;
  }

  /**
   * Our own changes in `dir` begin (a batch's renames); each call is ended by `settled`.
   * Meanwhile its mtime is not taken as a change by others: a change by another program
   * in that window is seen only through the on-disk check of the names landings use.
   */
  changing(dir: string): void {
    const f = this.#folders.get(dir);
    if (!f) return;
    f.busy++;
    f.epoch++;
  }

  /** Our own changes in `dir` are done: its current mtime no longer means "changed by others". */
  async settled(dir: string): Promise<void> {
    const f = this.#folders.get(dir);
    if (!f) return;
    const st = await orNull(this.#ops.stat(dir));
    if (f.busy > 0) f.busy--;
    f.epoch++;
    if (this.#folders.get(dir) !== f) return; // forgotten or listed again meanwhile
    if (st) f.mtimeMs = st.mtimeMs;
    else this.#folders.delete(dir);
  }

  /** Forget `dir` (after a failed change whose outcome on disk is unknown). */
  forget(dir: string): void {
    this.#folders.delete(dir);
  }

  /** Folders and entries held (for the status of long runs and for tests). */
  size(): { folders: number } {
    return { folders: this.#folders.size };
  }

  async #list(dir: string): Promise<Folder<L>> {
    // The mtime from before the listing: a change made while it is read shows as a change.
    const st = await orNull(this.#ops.stat(dir));
    const listing = this.#make([]);
    try {
      const ops = this.#ops;
      for await (const n of ops.scan ? ops.scan(dir) : await ops.readdir(dir)) listing.add(n);
    } catch (err) {
      if (errCode(err) !== 'ENOENT') throw err;
    }
    return { listing, mtimeMs: st?.mtimeMs ?? -1, listedAt: performance.now(), busy: 0, epoch: 0 };
  }

  #keep(dir: string, f: Folder<L>): void {
    this.#folders.set(dir, f);
    while (this.#folders.size > this.#maxFolders) {
      const oldest = this.#folders.keys().next().value;
      if (oldest === undefined) break;
      this.#folders.delete(oldest);
    }
  }

  async #check(dir: string, f: Folder<L>, name: string): Promise<void> {
    const known = f.listing.variants(name, false);
    const exact = await orNull(this.#ops.lstat(childPath(dir, name)));
    const present: Stats[] = [];
    for (const v of known) {
      const st = v === name ? exact : await orNull(this.#ops.lstat(childPath(dir, v)));
      if (st) present.push(st);
      else f.listing.remove(v);
    }
    if (!exact || known.includes(name)) return;
    if (present.some((s) => sameFile(s, exact))) return; // a case-insensitive folder found a variant we know
    const swapped = swapCase(name);
    if (swapped !== name && collisionKey(swapped) === collisionKey(name)) {
      const other = await orNull(this.#ops.lstat(childPath(dir, swapped)));
      if (other && sameFile(other, exact)) {
        // Case-insensitive folder and a spelling we have never seen: list it again.
        const fresh = await this.#list(dir);
        f.listing = fresh.listing;
        f.mtimeMs = fresh.mtimeMs;
        f.listedAt = fresh.listedAt;
        if (f.listing.variants(name, false).length > 0) return;
      }
    }
    f.listing.add(name);
  }
}
