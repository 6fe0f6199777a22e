/**
 * PURE: wire path -> safe relative path for an inbox. No file system access here.
 *
 * The input is untrusted ('/'-separated, from the network). The result must be a
 * relative path that stays inside any root on Windows, macOS and Linux, is NFC, and is
 * stable: sanitising a sanitised `rel` returns it unchanged. Every silent change is
 * listed in `changes` so the caller can log it once.
 *
 * Decisions (kept consistent by the tests in test/names/names.test.ts):
 * - A backslash anywhere is rejected (INVALID): it is a separator on Windows, so
 *   `a\b` would mean different files on different receivers. `..` hidden behind
 *   backslashes (`a\..\..\x`) is reported as TRAVERSAL first.
 * - A component made only of dots and spaces (`...`, `.. `) is rejected (INVALID):
 *   Windows strips trailing dots/spaces, so such names collapse to `.`/empty there.
 * - Look-alikes (U+FF0E fullwidth full stop, U+2215 division slash, U+FF0F) are
 *   ordinary characters, not separators, and are kept as they are.
 */
import path from 'node:path';

export type NameErrorCode = 'EMPTY' | 'ABSOLUTE' | 'TRAVERSAL' | 'NUL' | 'TOO_LONG' | 'TOO_DEEP' | 'INVALID';

export type NameResult =
  | { ok: true; parts: string[]; rel: string; changes: string[] }
  | { ok: false; code: NameErrorCode; reason: string };

export interface NameLimits {
  /** Whole relative path, UTF-8 bytes. Default 1024. */
  maxBytes?: number;
  /** Number of components. Default 32. */
  maxDepth?: number;
  /** One component, UTF-8 bytes. Default 255 (NTFS, APFS and ext4 limit). */
  maxComponentBytes?: number;
}

export const NAME_DEFAULTS = { maxBytes: 1024, maxDepth: 32, maxComponentBytes: 255 } as const;

/**
 * Characters replaced by `_`: C0/C1 controls and DEL, Windows-invalid `<>:"|?*`,
 * bidi embeddings/overrides/isolates (U+202A-202E, U+2066-2069), zero-width and
 * direction marks (U+200B-200F), BOM (U+FEFF), and lone surrogates (not encodable).
 * NUL and the separators are rejected before this runs.
 */
// eslint-disable-next-line no-control-regex -- matching control characters is the point
const UNSAFE = /[\u0000-\u001f\u007f-\u009f<>:"|?*\u200b-\u200f\u202a-\u202e\u2066-\u2069\ufeff\ud800-\udfff]/gu;

/** Windows device names, with or without extension (`con.txt`, `NUL.tar.gz`), any case. */
const RESERVED = /^(con|prn|aux|nul|com[0-9¹²³]|lpt[0-9¹²³])$/iu;

const DRIVE = /^[a-z]:/i;

function fail(code: NameErrorCode, reason: string): NameResult {
  return { ok: false, code, reason };
}

function show(s: string): string {
  return JSON.stringify(s);
}

export function utf8Bytes(s: string): number {
  return Buffer.byteLength(s, 'utf8');
}

/** True when Windows treats `component` as a device name (stem before the first dot, trailing spaces ignored). */
export function isReservedName(component: string): boolean {
  const dot = component.indexOf('.');
  const stem = (dot === -1 ? component : component.slice(0, dot)).replace(/ +$/u, '');
  return RESERVED.test(stem);
}

export function sanitizeRelPath(input: string, opts: NameLimits = {}): NameResult {
  const maxBytes = opts.maxBytes ?? NAME_DEFAULTS.maxBytes;
  const maxDepth = opts.maxDepth ?? NAME_DEFAULTS.maxDepth;
  const maxComponentBytes = opts.maxComponentBytes ?? NAME_DEFAULTS.maxComponentBytes;

  if (typeof input !== 'string' || input.length === 0) return fail('EMPTY', 'the path is empty');
  if (input.includes('\u0000')) return fail('NUL', `the path ${show(input)} contains a NUL character`);
  // Cheap guard before normalising attacker-sized strings (NFC can grow a string at most ~3x).
  if (input.length > maxBytes * 4) return fail('TOO_LONG', `the path is ${utf8Bytes(input)} bytes long, the limit is ${maxBytes}`);

  const changes: string[] = [];
  const nfc = input.normalize('NFC');
  if (nfc !== input) changes.push(`normalised ${show(input)} to Unicode NFC`);

  if (nfc.startsWith('/') || nfc.startsWith('\\')) {
    return fail('ABSOLUTE', `the path ${show(input)} is absolute (or a UNC/device path); only relative paths are accepted`);
  }
  if (DRIVE.test(nfc)) return fail('ABSOLUTE', `the path ${show(input)} starts with a drive letter; only relative paths are accepted`);
  if (nfc.split(/[/\\]/u).some((c) => c === '..')) {
    return fail('TRAVERSAL', `the path ${show(input)} contains a ".." component`);
  }
  if (nfc.includes('\\')) {
    return fail('INVALID', `the path ${show(input)} contains a backslash, which is a folder separator on Windows; use "/" between folders`);
  }

  const raw = nfc.split('/');
  const kept = raw.filter((c) => c !== '' && c !== '.');
  if (kept.length !== raw.length) changes.push(`dropped empty and "." components from ${show(input)}`);
  if (kept.length === 0) return fail('EMPTY', `the path ${show(input)} names no file`);
  if (kept.length > maxDepth) return fail('TOO_DEEP', `the path ${show(input)} has ${kept.length} levels, the limit is ${maxDepth}`);

  const parts: string[] = [];
  for (const original of kept) {
    let c = original.replace(/[. ]+$/u, '');
    if (c === '') {
      return fail('INVALID', `the path component ${show(original)} in ${show(input)} consists only of dots and spaces`);
    }
    if (c !== original) changes.push(`stripped trailing dots/spaces from ${show(original)} (Windows drops them)`);
    const replaced = c.replace(UNSAFE, '_');
    if (replaced !== c) changes.push(`replaced control, invisible or Windows-invalid characters in ${show(c)} with "_"`);
    c = replaced;
    if (isReservedName(c)) {
      changes.push(`prefixed Windows device name ${show(c)} with "_"`);
      c = `_${c}`;
    }
    const bytes = utf8Bytes(c);
    if (bytes > maxComponentBytes) {
      return fail('TOO_LONG', `the name ${show(c.slice(0, 40) + '…')} is ${bytes} bytes long, the limit per name is ${maxComponentBytes}`);
    }
    parts.push(c);
  }
  const rel = parts.join('/');
  const bytes = utf8Bytes(rel);
  if (bytes > maxBytes) return fail('TOO_LONG', `the path is ${bytes} bytes long, the limit is ${maxBytes}`);
  return { ok: true, parts, rel, changes };
}

/** Sender side: a path relative to the outbox in native form -> wire form ('/'-separated). */
export function toWirePath(relNative: string, sep: string = path.sep): string {
  return sep === '/' ? relNative : relNative.split(sep).join('/');
}

/**
 * Key under which two names are "the same file" on a case-insensitive volume
 * (NTFS, APFS default): NFC, then `String.prototype.toLowerCase()` (Unicode default
 * case mapping, locale-independent, so identical on every machine). Not exactly
 * NTFS's upcase table nor APFS folding, but it agrees on everything outside exotic
 * scripts, and erring towards "same" only causes a rename, never a lost file.
 */
export function collisionKey(name: string): string {
  return name.normalize('NFC').toLowerCase();
}

/**
 * The n-th alternative name: `shot.0001.png` -> `shot.0001 (1).png`, `README` -> `README (1)`,
 * `.env` -> `.env (1)` (a leading dot is not an extension). The stem is shortened (by whole
 * code points) when the result would exceed `maxComponentBytes`.
 */
export function renameCandidate(name: string, n: number, maxComponentBytes: number = NAME_DEFAULTS.maxComponentBytes): string {
  const dot = name.lastIndexOf('.');
  const ext = dot <= 0 ? '' : name.slice(dot);
  const suffix = ` (${n})${ext}`;
  const stem = Array.from(dot <= 0 ? name : name.slice(0, dot));
  while (stem.length > 1 && utf8Bytes(stem.join('') + suffix) > maxComponentBytes) stem.pop();
  return stem.join('') + suffix;
}
