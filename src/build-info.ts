/**
 * What this program is: version, commit, platform, and whether it runs as a single
 * executable. A bundle made by scripts/package.ts sets globalThis.__TDXFER_BUILD__ (its first
 * line) with the version, the commit and the package files it needs at run time; a source
 * run reads package.json and the checkout's .git instead.
 */
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export interface BundleInfo {
  version: string;
  commit: string;
  /** Package files by their path in the checkout (config/example.json, systemd/tdxfer.service). */
  files: Record<string, string>;
}

export function bundleInfo(): BundleInfo | null {
  const b = (globalThis as { __TDXFER_BUILD__?: BundleInfo }).__TDXFER_BUILD__;
  return b && typeof b.version === 'string' ? b : null;
}

/** The package folder (package.json, config/, systemd/), from src or dist/src; null in a bundle. */
export function sourceRoot(): string | null {
  if (bundleInfo()) return null;
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const pkg = path.join(dir, 'package.json');
    if (existsSync(pkg)) {
      try {
        if ((JSON.parse(readFileSync(pkg, 'utf8')) as { name?: string }).name === 'tdxfer') return dir;
      } catch {
        /* not ours */
      }
    }
    const up = path.dirname(dir);
    if (up === dir) return null;
    dir = up;
  }
}

/** A package file's text (e.g. 'systemd/tdxfer.service'), from the bundle or the checkout. */
export function packageFile(rel: string): string {
  const b = bundleInfo();
  if (b) {
    const text = b.files[rel];
    if (text === undefined) throw new Error(`${rel} is not in this build (scripts/package.ts must embed it)`);
    return text;
  }
  const root = sourceRoot();
  if (!root) throw new Error(`cannot find the tdxfer package folder (with ${rel})`);
  return readFileSync(path.join(root, rel), 'utf8');
}

/** A binary package file (e.g. WinSW's exe): base64 in the bundle, read from the checkout otherwise. */
export function packageBinary(rel: string): Buffer {
  const b = bundleInfo();
  if (b) {
    const text = b.files[rel];
    if (text === undefined) throw new Error(`${rel} is not in this build (scripts/package.ts must embed it)`);
    return Buffer.from(text, 'base64');
  }
  const root = sourceRoot();
  if (!root) throw new Error(`cannot find the tdxfer package folder (with ${rel})`);
  const file = path.join(root, rel);
  if (!existsSync(file)) throw new Error(`${file} is missing: run \`npm ci\` in ${root} (it comes with the node-windows dev dependency)`);
  return readFileSync(file);
}

export function softwareVersionOf(): string {
  const b = bundleInfo();
  if (b) return b.version;
  const root = sourceRoot();
  if (!root) return '0.0.0';
  try {
    return (JSON.parse(readFileSync(path.join(root, 'package.json'), 'utf8')) as { version?: string }).version ?? '0.0.0';
  } catch {
    return '0.0.0';
  }
}

/** The checkout's HEAD commit (12 hex digits) read from .git without running git; null if none. */
export function gitCommit(root: string): string | null {
  try {
    let gitDir = path.join(root, '.git');
    if (!existsSync(gitDir)) return null;
    if (!existsSync(path.join(gitDir, 'HEAD'))) {
      // A worktree: .git is a file "gitdir: <path>".
      const m = /^gitdir: (.+)$/m.exec(readFileSync(gitDir, 'utf8'));
      if (!m?.[1]) return null;
      gitDir = path.resolve(root, m[1].trim());
    }
    const head = readFileSync(path.join(gitDir, 'HEAD'), 'utf8').trim();
    const ref = /^ref: (.+)$/.exec(head)?.[1];
    if (!ref) return /^[0-9a-f]{40}$/.test(head) ? head.slice(0, 12) : null;
    const common = existsSync(path.join(gitDir, 'commondir'))
      ? path.resolve(gitDir, readFileSync(path.join(gitDir, 'commondir'), 'utf8').trim())
      : gitDir;
    for (const dir of [gitDir, common]) {
      const f = path.join(dir, ref);
      if (existsSync(f)) return readFileSync(f, 'utf8').trim().slice(0, 12);
    }
    const packed = path.join(common, 'packed-refs');
    if (existsSync(packed)) {
      for (const line of readFileSync(packed, 'utf8').split('\n')) {
        const [sha, name] = line.split(' ');
        if (name === ref && sha && /^[0-9a-f]{40}$/.test(sha)) return sha.slice(0, 12);
      }
    }
    return null;
  } catch {
    return null;
  }
}

/** The platform name used in release file names: linux-x64, win-x64, macos-arm64, … */
export function platformName(platform: string = process.platform, arch: string = process.arch): string {
  const os = platform === 'win32' ? 'win' : platform === 'darwin' ? 'macos' : platform;
  return `${os}-${arch}`;
}

/** `tdxfer --version`: "0.2.0 (commit 0123456789ab, linux-x64, single executable, Node v20.20.2)". */
export function versionLine(): string {
  const b = bundleInfo();
  const root = b ? null : sourceRoot();
  const commit = b ? b.commit : root ? (gitCommit(root) ?? 'unknown') : 'unknown';
  const kind = b ? 'single executable' : 'from source';
  return `${softwareVersionOf()} (commit ${commit}, ${platformName()}, ${kind}, Node ${process.version})`;
}
