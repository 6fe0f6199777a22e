/**
 * PURE rules of the outbox watcher: paths relative to the outbox root, the agent's own
 * folders that are never looked into, "is this still the same folder" (root identity),
 * and what a failed open or a chokidar error means. No fs call, no timer: unit-tested.
 */
import path from 'node:path';
import { errCode as codeOf } from '../fsutil.js';
import { below } from '../paths.js';

/** Volumes where `A` and `a` are one name (NTFS, APFS by default): path prefixes need the careful check. */
export const CASE_INSENSITIVE_FS = process.platform === 'win32' || process.platform === 'darwin';

/** Paths of one outbox: '/'-separated rels below `root`, and the agent's folders to skip. */
export class OutboxPaths {
  readonly root: string;
  /** `root` + separator: the prefix of every path below it. */
  private readonly rootPrefix: string;
  private readonly ignore: string[];

  constructor(
    root: string,
    ignore: readonly string[] = [],
    private readonly p: path.PlatformPath = path,
    private readonly caseInsensitive = CASE_INSENSITIVE_FS,
  ) {
    this.root = p.resolve(root);
    this.rootPrefix = this.root.endsWith(p.sep) ? this.root : this.root + p.sep;
    this.ignore = ignore.map((i) => p.resolve(i));
  }

  /**
   * '/'-separated path of `abs` relative to the root, or null when it is the root or
   * outside it. chokidar hands us normalised paths below the root, so a prefix check
   * answers almost every call; path.relative (slow, and called for every entry chokidar
   * reads) only for anything else.
   */
  relOf(abs: string): string | null {
    const p = this.p;
    let r: string;
    if (abs.length > this.rootPrefix.length && abs.startsWith(this.rootPrefix) && !abs.includes(`${p.sep}..`)) {
      r = abs.slice(this.rootPrefix.length);
    } else {
      r = p.relative(this.root, abs);
      if (r === '' || r.startsWith('..') || p.isAbsolute(r)) return null;
    }
    return p.sep === '/' ? r : r.split(p.sep).join('/');
  }

  /** The absolute path of `rel` (see below()). */
  absOf(rel: string): string {
    return below(this.root, rel, this.p);
  }

  /** Whether `abs` is one of the ignored folders (the agent's staging/data) or below one. */
  inIgnoredFolder(abs: string): boolean {
    const p = this.p;
    for (const ig of this.ignore) {
      if (abs === ig || abs.startsWith(ig + p.sep)) return true;
      // Case-insensitive volumes (Windows, macOS) or odd spellings: the careful check.
      if (this.caseInsensitive || abs.includes(`${p.sep}..`)) {
        const r = p.relative(ig, abs);
        if (r === '' || (!r.startsWith('..') && !p.isAbsolute(r))) return true;
      }
    }
    return false;
  }
}

export interface FolderId {
  dev: number;
  ino: number;
  birthtimeMs: number;
}

/**
 * Whether two stats of the outbox root are the same folder. dev + ino identify it; Linux
 * file systems reuse a deleted folder's inode number at once, so there the birth time
 * (statx, real on ext4/xfs/btrfs) tells a re-created folder apart. Not on Windows, where
 * NTFS file IDs carry a sequence number and are not reused, and wine reports birthtime as
 * ctime (it changes whenever a file is added), nor on macOS (APFS does not reuse IDs).
 */
export function sameFolder(a: FolderId, b: FolderId, platform: NodeJS.Platform = process.platform): boolean {
  if (a.dev !== b.dev || a.ino !== b.ino) return false;
  return platform !== 'linux' || a.birthtimeMs === b.birthtimeMs;
}

export function errCode(err: unknown): string {
  return codeOf(err) ?? 'UNKNOWN';
}

/** The path (or a folder on it) no longer exists. */
export function isGoneError(err: unknown): boolean {
  const code = errCode(err);
  return code === 'ENOENT' || code === 'ENOTDIR';
}

/**
 * What a failed open of a settled file means: `gone` (deleted meanwhile), `busy` (Windows:
 * another program holds it open, i.e. still writes it), `unreadable` (the agent's user
 * lacks read permission; retried until readable), `retry` (anything else, retried quietly).
 */
export function classifyOpenError(code: string): 'gone' | 'busy' | 'unreadable' | 'retry' {
  if (code === 'ENOENT' || code === 'ENOTDIR') return 'gone';
  if (code === 'EBUSY') return 'busy';
  if (code === 'EACCES' || code === 'EPERM') return 'unreadable';
  return 'retry';
}

/** What to do about a chokidar error, and the message (with its de-duplication key) to log. */
export interface WatchErrorDecision {
  /** skip: keep watching (a sub-folder is skipped); restart: new watcher after a backoff; poll: restart in polling mode. */
  action: 'skip' | 'restart' | 'poll';
  key: string;
  level: 'warn' | 'error';
  msg: string;
}

/** A chokidar error (code, and the path it names, if any) on the outbox at `root`. */
export function classifyWatchError(code: string, at: string | undefined, root: string, detail: string): WatchErrorDecision {
  const where = at ?? root;
  if ((code === 'EACCES' || code === 'EPERM') && where !== root) {
    // A sub-folder we may not read: a restart would hit it again. Its files are skipped.
    return { action: 'skip', key: `perm:${where}`, level: 'warn', msg: `Permission denied watching ${where} (${code}): files below it are not sent. Give the agent's user read access, or move it out of outbox ${root}.` };
  }
  if (code === 'ENOSPC' || code === 'EMFILE' || code === 'ENFILE') {
    const how =
      code === 'ENOSPC'
        ? "the system limit of file watches is reached; raise it (Linux: sysctl fs.inotify.max_user_watches=524288, persist in /etc/sysctl.d/)"
        : 'too many open files; raise the limit (ulimit -n, or LimitNOFILE= in the systemd unit)';
    return { action: 'poll', key: `limit:${code}`, level: 'error', msg: `Cannot watch outbox ${root}: ${how}. Switching this outbox to polling (slower) meanwhile.` };
  }
  return { action: 'restart', key: `chokidar:${code}`, level: 'error', msg: `Watching outbox ${root} failed: ${detail}. Restarting the watcher; check that the folder exists and is readable.` };
}

/**
 * Indexes of `listed` names that are new, and known names no longer listed (dirwatch.ts
 * rescans). Linear, and without building a set of the listing unless something vanished:
 * a folder of 100,000 names is re-read while it changes.
 */
export function diffNames(known: ReadonlySet<string>, listed: readonly string[]): { added: number[]; removed: string[] } {
  const added: number[] = [];
  for (let i = 0; i < listed.length; i++) if (!known.has(listed[i]!)) added.push(i);
  // Known names still listed = listed - added; the rest of `known` vanished.
  if (known.size === listed.length - added.length) return { added, removed: [] };
  const now = new Set(listed);
  const removed: string[] = [];
  for (const n of known) if (!now.has(n)) removed.push(n);
  return { added, removed };
}

/** Shortest time between two re-reads of a changing folder (ms), 2 % of the time at most: 50× what the last one took, at least 1 s. */
export function rescanDelay(lastScanMs: number): number {
  return Math.max(1000, 50 * (Number.isFinite(lastScanMs) && lastScanMs > 0 ? lastScanMs : 0));
}

/** Every folder of a native watch is re-read at least this often (ms), whatever its events say (dirwatch.ts sweep). */
export const SWEEP_MS = 30_000;

/**
 * When the next backstop sweep of all watched folders starts (ms after the last one ended):
 * SWEEP_MS, or 50× what the last sweep took when that is longer, so a sweep (names only, one
 * stat per folder) costs at most 2 % of the time however many files and folders are watched.
 */
export function sweepDelay(lastSweepMs: number, everyMs: number = SWEEP_MS): number {
  return Math.max(everyMs, rescanDelay(lastSweepMs));
}
