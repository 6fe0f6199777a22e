/**
 * PURE: which files in an outbox are candidates for sending.
 *
 * Paths here are outbox-relative and '/'-separated on every platform (the watcher
 * converts native separators before asking).
 *
 * Glob semantics (picomatch 4, options `{ dot: false, nocase: true, windows: false }`):
 * - `*.png` matches `a.png` at the outbox root only, not `shot1/a.png` (a `*` never
 *   crosses '/').
 * - `**\/*.png` matches at any depth, including the root (`a.png`, `shot1/a.png`).
 * - `shot1/**` matches everything below `shot1/`.
 * - `dot: false`: `*` and `**` never match a dot-name segment (moot here: dot-names
 *   are ignored before globs are consulted).
 * - Matching is case-insensitive (`*.png` also matches `A.PNG`): TouchDesigner runs on
 *   Windows and macOS, whose file systems are case-insensitive, and artists do not
 *   expect `.PNG` renders to be skipped.
 * - Globs use '/' as separator; a backslash in a glob is an escape, not a separator.
 */
import picomatch from 'picomatch';
import type { OutboxConfig } from './config/types.js';

/** The archive folder directly inside each outbox (after: "archive"). */
export const ARCHIVE_DIR = 'sent';

/**
 * True when a folder name is the archive folder. Windows and macOS volumes are
 * case-insensitive, so `Sent/` there is the same folder as `sent/` (and archiving into
 * `sent/` lands in it): compare case-insensitively on those platforms.
 */
export function isArchiveDirName(name: string, platform: NodeJS.Platform = process.platform): boolean {
  return platform === 'win32' || platform === 'darwin' ? name.toLowerCase() === ARCHIVE_DIR : name === ARCHIVE_DIR;
}

const IGNORED_EXACT = new Set(['thumbs.db', 'ehthumbs.db', 'desktop.ini', '$recycle.bin', 'system volume information']);
const IGNORED_SUFFIXES = ['.tmp', '.temp', '.part', '.partial', '.crdownload', '.download', '.swp', '.swx'];

/**
 * True for names that are never sent, whether file or folder: hidden (dot-names,
 * including `.DS_Store`), OS clutter (`Thumbs.db`, `desktop.ini`, recycle bins),
 * temporary and partial files (`*.tmp`, `*.part`, `*.crdownload`, `*.swp`), Office lock
 * files (`~$*`) and editor backups (`*~`). Case-insensitive.
 */
export function isIgnoredName(basename: string): boolean {
  if (basename === '' || basename.startsWith('.')) return true;
  if (basename.startsWith('~$') || basename.endsWith('~')) return true;
  const lower = basename.toLowerCase();
  if (IGNORED_EXACT.has(lower)) return true;
  return IGNORED_SUFFIXES.some((s) => lower.endsWith(s));
}

/** Split an outbox-relative path into segments, tolerating a leading './' or '/' and doubled slashes. */
export function relSegments(rel: string): string[] {
  return rel.split('/').filter((s) => s !== '' && s !== '.');
}

/**
 * True when `rel` (a file or folder) is never looked at, independent of globs:
 * anything under the archive folder `sent/` at the outbox root (any case on Windows and
 * macOS, see isArchiveDirName), and anything with an
 * ignored name in any segment (a hidden folder hides everything below it).
 */
export function isIgnoredRel(rel: string, platform: NodeJS.Platform = process.platform): boolean {
  const segs = relSegments(rel);
  if (segs.length === 0) return false; // the outbox root itself
  if (isArchiveDirName(segs[0]!, platform)) return true;
  return segs.some(isIgnoredName);
}

function compile(globs: readonly string[]): ((rel: string) => boolean) | null {
  const list = globs.filter((g) => g.trim() !== '');
  if (list.length === 0) return null;
  return picomatch(list, { dot: false, nocase: true, windows: false });
}

/**
 * The decision for files: `(rel) => true` when the file at `rel` is to be sent.
 * Order: ignored names and `sent/` first; then `include` (empty = everything);
 * then `exclude` (wins over include).
 */
export function makeOutboxFilter(outbox: Pick<OutboxConfig, 'include' | 'exclude'>): (rel: string) => boolean {
  const include = compile(outbox.include);
  const exclude = compile(outbox.exclude);
  return (rel: string): boolean => {
    if (isIgnoredRel(rel)) return false;
    const clean = relSegments(rel).join('/');
    if (include && !include(clean)) return false;
    if (exclude && exclude(clean)) return false;
    return true;
  };
}
