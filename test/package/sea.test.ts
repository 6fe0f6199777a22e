/**
 * `npm run package` for real: bundles, makes the SEA blob and injects it into the npm
 * registry's Node builds (cached in ~/.cache/tdxfer, so only the first run on a machine
 * downloads them). Then:
 *   - the Linux executable runs with no `node` anywhere on PATH, names version, commit and
 *     platform, and two processes of it move a file outbox → inbox;
 *   - the macOS file is an x86-64 Mach-O with the NODE_SEA segment, the blob in it and the
 *     fuse flipped, and (as the README says) no code signature;
 *   - the Windows .exe is a PE with the blob and the fuse, and runs under wine through
 *     scripts/wine-env.sh (the Windows test lane's setup) when the checkout has it;
 *   - SHA256SUMS lists every file with its digest.
 */
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { TEST_KEY, waitUntil, writeAgentConfig } from '../helpers/agents.js';
import { CPU_TYPE_X86_64, formatOf, fuseState, LC_CODE_SIGNATURE, parseMacho, SEA_BLOB_MAGIC } from './binfmt.js';

function repoRoot(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const pkg = path.join(dir, 'package.json');
    if (existsSync(pkg) && (JSON.parse(readFileSync(pkg, 'utf8')) as { name?: string }).name === 'tdxfer') return dir;
    const up = path.dirname(dir);
    if (up === dir) throw new Error('tdxfer checkout root not found above the test file');
    dir = up;
  }
}

const ROOT = repoRoot();
const VERSION = (JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { version: string }).version;
const onLinuxX64 = process.platform === 'linux' && process.arch === 'x64';
const skip = onLinuxX64 ? false : 'the packaging check runs on linux-x64 (it runs the Linux executable)';
const WINE_ENV = path.join(ROOT, 'scripts', 'wine-env.sh');

describe('npm run package: single executables', { skip }, () => {
  let out = '';
  let files: string[] = [];
  const cleanup: Array<() => Promise<unknown>> = [];

  before(async () => {
    out = await fs.mkdtemp(path.join(os.tmpdir(), 'tdx-release-'));
    cleanup.push(() => fs.rm(out, { recursive: true, force: true }));
    const script = path.join(ROOT, 'dist', 'scripts', 'package.js');
    assert.ok(existsSync(script), `${script} missing: build with tsc first`);
    const r = spawnSync(process.execPath, [script, '--out', out, '--targets', 'linux-x64,win-x64,macos-x64'], { encoding: 'utf8', timeout: 600_000 });
    assert.equal(r.status, 0, `package failed:\n${r.stdout}\n${r.stderr}`);
    files = (await fs.readdir(out)).sort();
  });

  after(async () => {
    for (const c of cleanup.reverse()) await c().catch(() => undefined);
  });

  const file = (t: string): string => path.join(out, `tdxfer-${VERSION}-${t}`);

  test('release/ holds one file per platform and SHA256SUMS with their digests', async () => {
    assert.deepEqual(files, ['SHA256SUMS', `tdxfer-${VERSION}-linux-x64`, `tdxfer-${VERSION}-macos-x64`, `tdxfer-${VERSION}-win-x64.exe`]);
    const sums = (await fs.readFile(path.join(out, 'SHA256SUMS'), 'utf8')).trim().split('\n');
    assert.equal(sums.length, 3);
    for (const line of sums) {
      const m = /^([0-9a-f]{64}) {2}(\S+)$/.exec(line);
      assert.ok(m, `bad SHA256SUMS line ${line}`);
      const digest = createHash('sha256').update(await fs.readFile(path.join(out, m[2]!))).digest('hex');
      assert.equal(digest, m[1], `digest of ${m[2]}`);
    }
    // sha256sum -c accepts it as users will run it.
    const c = spawnSync('sha256sum', ['-c', 'SHA256SUMS'], { cwd: out, encoding: 'utf8' });
    if (c.error === undefined) assert.equal(c.status, 0, c.stdout + c.stderr);
  });

  test('the Linux executable runs without node on PATH and names version, commit and platform', async () => {
    const bin = file('linux-x64');
    assert.equal(formatOf(await fs.readFile(bin)), 'elf-x64');
    const empty = await fs.mkdtemp(path.join(os.tmpdir(), 'tdx-nopath-'));
    cleanup.push(() => fs.rm(empty, { recursive: true, force: true }));
    const r = spawnSync(bin, ['--version'], { env: { PATH: empty, HOME: empty }, encoding: 'utf8', timeout: 60_000 });
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout.trim(), new RegExp(`^${VERSION.replaceAll('.', '\\.')} \\(commit (?:[0-9a-f]{12}|unknown), linux-x64, single executable, Node v${process.versions.node}\\)$`));
    assert.doesNotMatch(r.stderr, /ExperimentalWarning|single executable/i, 'no SEA warning');
  });

  test('two processes of the Linux executable move a file outbox -> inbox (no node on PATH)', async () => {
    const bin = file('linux-x64');
    const r = await fs.mkdtemp(path.join(os.tmpdir(), 'tdx-sea-e2e-'));
    cleanup.push(() => fs.rm(r, { recursive: true, force: true }));
    // The receiver also serves the dashboard: its script is embedded in the executable.
    const recvCfg = await writeAgentConfig({ name: 'playback', dir: path.join(r, 'b'), port: 0, extra: { status: { enabled: true, host: '127.0.0.1', port: 0 } } });
    await fs.mkdir(path.join(r, 'a', 'outbox'), { recursive: true });
    const env = { PATH: path.join(r, 'no-such-dir'), HOME: r };
    const run = (cfg: string) => {
      const child = spawn(bin, ['run', '--config', cfg], { env, cwd: path.dirname(cfg), stdio: ['ignore', 'pipe', 'pipe'] });
      let log = '';
      child.stdout.on('data', (d: Buffer) => (log += d.toString()));
      child.stderr.on('data', (d: Buffer) => (log += d.toString()));
      const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
      return { child, log: () => log, exited };
    };
    // The receiver first, on port 0; the sender's config names the port it got.
    const procs = [run(recvCfg)];
    try {
      const listening = /listening for transfers on \S+:(\d+)/;
      await waitUntil(() => listening.test(procs[0]!.log()), 60_000, () => `the receiver listens:\n${procs[0]!.log().slice(-2000)}`);
      const sendCfg = await writeAgentConfig({
        name: 'render',
        dir: path.join(r, 'a'),
        port: 0,
        extra: {
          peers: [{ name: 'playback', host: '127.0.0.1', port: Number(listening.exec(procs[0]!.log())![1]) }],
          outboxes: [{ path: 'outbox', to: [{ peer: 'playback', inbox: 'renders' }], after: 'keep', settleMs: 150 }],
          security: { key: TEST_KEY },
        },
      });
      procs.push(run(sendCfg));
      const payload = Buffer.from(`frame ${Date.now()} `.repeat(40_000));
      await fs.writeFile(path.join(r, 'a', 'outbox', 'shot_0001.exr'), payload);
      const landed = path.join(r, 'b', 'inbox', 'shot_0001.exr');
      await waitUntil(
        async () => existsSync(landed) && (await fs.stat(landed)).size === payload.length,
        60_000,
        () => `file not landed in the inbox.\nreceiver:\n${procs[0]!.log().slice(-2000)}\nsender:\n${procs[1]!.log().slice(-2000)}`,
      );
      assert.ok((await fs.readFile(landed)).equals(payload));
      const url = /status API and dashboard on (http:\/\/\S+\/)/.exec(procs[0]!.log())?.[1];
      assert.ok(url, `the receiver names its status URL:\n${procs[0]!.log().slice(-1500)}`);
      const js = await fetch(`${url}dashboard.js`);
      assert.equal(js.status, 200);
      assert.match(await js.text(), /new EventSource\('\/events' \+ q\)/);
    } finally {
      for (const p of procs) if (p.child.exitCode === null) p.child.kill('SIGTERM');
      const codes = await Promise.all(procs.map((p) => p.exited));
      // SIGTERM is a graceful stop: exit 0.
      assert.deepEqual(codes, procs.map(() => 0), procs.map((p) => p.log().slice(-1500)).join('\n---\n'));
    }
  });

  test('the macOS file is an x86-64 Mach-O with the blob in a NODE_SEA segment, the fuse set, and no signature', async () => {
    const b = await fs.readFile(file('macos-x64'));
    const m = parseMacho(b);
    assert.equal(m.cputype, CPU_TYPE_X86_64);
    assert.equal(m.filetype, 2, 'MH_EXECUTE');
    assert.ok(m.segments.includes('NODE_SEA'), `segments: ${m.segments.join(', ')}`);
    const sect = m.sections.find((s) => s.segment === 'NODE_SEA' && s.name === '__NODE_SEA_BLOB');
    assert.ok(sect, 'section __NODE_SEA_BLOB in segment NODE_SEA');
    const blob = b.subarray(sect.offset, sect.offset + sect.size);
    assert.equal(blob.readUInt32LE(0), SEA_BLOB_MAGIC, 'the SEA blob magic at the start of the section');
    assert.ok(blob.includes('__TDXFER_BUILD__'), 'the bundle is in the blob');
    assert.equal(fuseState(b), '1');
    // Shipped unsigned (README: the user signs it ad hoc); Node's own, now wrong, signature is gone.
    assert.ok(!m.commands.includes(LC_CODE_SIGNATURE), 'no LC_CODE_SIGNATURE');
  });

  test('the Windows .exe is an x64 PE with the blob and the fuse set', async () => {
    const b = await fs.readFile(file('win-x64.exe'));
    assert.equal(formatOf(b), 'pe-x64');
    assert.equal(fuseState(b), '1');
    const magic = Buffer.alloc(4);
    magic.writeUInt32LE(SEA_BLOB_MAGIC);
    const at = b.indexOf(magic);
    assert.ok(at > 0 && b.indexOf('__TDXFER_BUILD__', at) > at, 'the SEA blob (magic, then the bundle) is in the file');
  });

  test('the Windows .exe runs under wine (scripts/wine-env.sh) and two of its processes move a file', async (t) => {
    if (!existsSync(WINE_ENV)) {
      t.skip('scripts/wine-env.sh is not in this checkout (it comes with the Windows test lane); the .exe was checked as a file only');
      return;
    }
    // The script prints `export` lines (shell-quoted): let bash evaluate them and report the result.
    const setup = spawnSync('bash', ['-c', 'out=$(bash "$0") || exit $?; eval "$out"; env -0', WINE_ENV], { encoding: 'utf8', timeout: 600_000 });
    if (setup.status === 3) {
      t.skip(`wine is not installed and cannot be here: ${setup.stderr.trim()}`);
      return;
    }
    assert.equal(setup.status, 0, `wine-env.sh failed:\n${setup.stderr}`);
    const env: Record<string, string> = {};
    for (const kv of setup.stdout.split('\0')) {
      const eq = kv.indexOf('=');
      if (eq > 0) env[kv.slice(0, eq)] = kv.slice(eq + 1);
    }
    assert.ok(env.WINE, `wine-env.sh exported no WINE:\n${setup.stderr}`);
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'tdx-wine-'));
    cleanup.push(() => fs.rm(dir, { recursive: true, force: true }));
    const exe = path.join(dir, 'tdxfer.exe');
    await fs.copyFile(file('win-x64.exe'), exe);
    // Output to a file: wine's console handles and pipes do not mix well.
    const outFile = path.join(dir, 'version.txt');
    const fd = await fs.open(outFile, 'w');
    try {
      const r = spawnSync(env.WINE, [exe, '--version'], { env, cwd: dir, stdio: ['ignore', fd.fd, fd.fd], timeout: 300_000 });
      assert.equal(r.status, 0, await fs.readFile(outFile, 'utf8'));
    } finally {
      await fd.close();
    }
    assert.match(await fs.readFile(outFile, 'utf8'), new RegExp(`^${VERSION.replaceAll('.', '\\.')} \\(commit [^,]+, win-x64, single executable, Node v${process.versions.node}\\)`, 'm'));

    // Two processes of the .exe move a file outbox -> inbox (relative paths: wine maps / to Z:).
    // The receiver first, on port 0; the sender's config names the port it got.
    await writeAgentConfig({ name: 'playback', dir: path.join(dir, 'b'), port: 0 });
    await fs.mkdir(path.join(dir, 'a', 'outbox'), { recursive: true });
    const payload = Buffer.from(`frame ${Date.now()} `.repeat(20_000));
    const logOf = (name: string): string => readFileSync(path.join(dir, name, 'log.txt'), 'utf8');
    const runExe = async (name: string) => {
      const log = await fs.open(path.join(dir, name, 'log.txt'), 'w');
      const child = spawn(env.WINE!, [exe, 'run', '--config', 'config.json'], { env, cwd: path.join(dir, name), stdio: ['ignore', log.fd, log.fd] });
      const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
      return { child, log, exited, name };
    };
    const agents = [await runExe('b')];
    try {
      const listening = /listening for transfers on \S+:(\d+)/;
      await waitUntil(() => listening.test(logOf('b')), 180_000, () => `b listens: ${logOf('b').slice(-1500)}`);
      await writeAgentConfig({
        name: 'render',
        dir: path.join(dir, 'a'),
        port: 0,
        extra: {
          peers: [{ name: 'playback', host: '127.0.0.1', port: Number(listening.exec(logOf('b'))![1]) }],
          outboxes: [{ path: 'outbox', to: [{ peer: 'playback', inbox: 'renders' }], after: 'keep', settleMs: 150 }],
        },
      });
      await fs.writeFile(path.join(dir, 'a', 'outbox', 'shot_0001.exr'), payload);
      agents.push(await runExe('a'));
      const landed = path.join(dir, 'b', 'inbox', 'shot_0001.exr');
      await waitUntil(
        async () => existsSync(landed) && (await fs.stat(landed)).size === payload.length,
        180_000,
        () => agents.map((a) => `${a.name}: ${logOf(a.name).slice(-1500)}`).join('\n'),
      );
      assert.ok((await fs.readFile(landed)).equals(payload));
    } finally {
      // Our own wine processes, by PID; the prefix's wineserver stays for the other wine tests.
      for (const a of agents) a.child.kill('SIGTERM');
      const late = setTimeout(() => agents.forEach((a) => a.child.kill('SIGKILL')), 30_000);
      await Promise.all(agents.map((a) => a.exited));
      clearTimeout(late);
      for (const a of agents) await a.log.close();
    }
  });
});
