/**
 * PURE path building for paths made per file (issue #12): path.join and path.resolve
 * normalise their whole input on every call and leave several strings behind each time.
 * Where the parts are known to be normal already (a resolved folder and plain names) the
 * same answer is one concatenation. Each function gives exactly path.join's or
 * path.resolve's answer; test/core/paths.test.ts compares them on POSIX and Windows paths.
 */
import path from 'node:path';

const SLASH = 47;
const DOT = 46;
const BACKSLASH = 92;

/**
 * Whether `rel` is names joined by single '/', none of them '.' or '..' (and, for Windows
 * paths, no '\\'): such a rel needs no normalising to be put below a folder.
 */
export function isPlainRel(rel: string, windows: boolean): boolean {
  if (rel.length === 0) return false;
  let start = 0;
  for (let i = 0; i <= rel.length; i++) {
    const c = i === rel.length ? SLASH : rel.charCodeAt(i);
    if (c === SLASH) {
      const len = i - start;
      if (len === 0) return false;
      if (len <= 2 && rel.charCodeAt(start) === DOT && (len === 1 || rel.charCodeAt(start + 1) === DOT)) return false;
      start = i + 1;
    } else if (windows && c === BACKSLASH) return false;
  }
  return true;
}

/**
 * `folder` joined with the '/'-separated `rel`: path.join's answer. For a normalised absolute
 * `folder` (path.resolve's) and a rel as relOf makes it (plain names between single '/'),
 * that is the folder, a separator and the rel, without the copies join makes while
 * normalising (issue #12: several such paths per outbox file).
 */
export function below(folder: string, rel: string, p: path.PlatformPath = path): string {
  if (!isPlainRel(rel, p.sep === '\\')) return p.join(folder, ...rel.split('/'));
  const r = p.sep === '/' ? rel : rel.replaceAll('/', p.sep);
  return folder.endsWith(p.sep) ? folder + r : folder + p.sep + r;
}

const resolvedFolders = new Map<string, string>();

/**
 * path.resolve of a folder, remembered when it is absolute (the outbox roots, resolved for
 * every file otherwise). At most 256 are remembered; a relative one is resolved each time
 * (it follows the working folder).
 */
export function resolvedFolder(folder: string): string {
  let r = resolvedFolders.get(folder);
  if (r !== undefined) return r;
  r = path.resolve(folder);
  if (path.isAbsolute(folder) && resolvedFolders.size < 256) resolvedFolders.set(folder, r);
  return r;
}

/**
 * `dir` + separator + `name`, for a normalised absolute `dir` (path.resolve's, as the native
 * watch keeps them) and an entry name as readdir and fs.watch give it: path.join's answer,
 * without its normalising copies. Any other name goes through path.join.
 */
export function childPath(dir: string, name: string, p: path.PlatformPath = path): string {
  if (isPlainRel(name, p.sep === '\\') && !name.includes('/')) {
    return dir.endsWith(p.sep) ? dir + name : dir + p.sep + name;
  }
  return p.join(dir, name);
}
