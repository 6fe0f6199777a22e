/**
 * scripts/install.sh and uninstall.sh into a temporary DESTDIR: every file laid down,
 * idempotence, the config never overwritten, the installed agent runs on its own
 * node_modules, `systemd-analyze verify` accepts the installed unit, uninstall reverses.
 * Needs the build (dist/src); builds it with tsc when missing.
 */
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** The checkout root, from test/service or dist/test/service alike. */
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
const PREFIX = '/opt/tdx-test';
const hasTools = process.platform === 'linux' && spawnSync('tar', ['--version']).status === 0 && spawnSync('bash', ['--version']).status === 0;
const skip = hasTools ? false : 'install.sh needs Linux with bash and GNU tar';
const analyze = spawnSync('systemd-analyze', ['--version']).status === 0 && existsSync('/usr/lib/systemd/system/sysinit.target');
const skipVerify = analyze ? false : 'systemd-analyze or /usr/lib/systemd/system missing: run scripts/test-deps.sh as root (apt-get install systemd)';

function run(script: string, dest: string, args: string[] = []): { code: number | null; stdout: string; stderr: string } {
  const r = spawnSync('bash', [path.join(ROOT, 'scripts', script), ...args], {
    env: { ...process.env, DESTDIR: dest, TDXFER_NODE: process.execPath },
    encoding: 'utf8',
    timeout: 120_000,
  });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

interface Entry {
  mode: string;
  kind: 'f' | 'd' | 'l';
  hash: string;
  mtimeMs: number;
}

/** path → mode, kind, content hash (or link target), mtime; for every entry under dir. */
async function manifest(dir: string): Promise<Map<string, Entry>> {
  const out = new Map<string, Entry>();
  async function walk(rel: string): Promise<void> {
    const abs = path.join(dir, rel);
    const st = await fs.lstat(abs);
    const mode = (st.mode & 0o7777).toString(8).padStart(4, '0');
    if (st.isSymbolicLink()) out.set(rel, { mode, kind: 'l', hash: await fs.readlink(abs), mtimeMs: 0 });
    else if (st.isDirectory()) {
      if (rel !== '') out.set(rel, { mode, kind: 'd', hash: '', mtimeMs: 0 });
      for (const name of (await fs.readdir(abs)).sort()) await walk(path.join(rel, name));
    } else out.set(rel, { mode, kind: 'f', hash: createHash('sha256').update(await fs.readFile(abs)).digest('hex'), mtimeMs: st.mtimeMs });
  }
  await walk('');
  return out;
}

function modeOf(m: Map<string, Entry>, rel: string): string | undefined {
  return m.get(rel)?.mode;
}

describe('install.sh / uninstall.sh into DESTDIR', { skip }, () => {
  let dest = '';
  let first: ReturnType<typeof run>;
  let m1: Map<string, Entry>;

  before(async () => {
    if (!existsSync(path.join(ROOT, 'dist', 'src', 'cli', 'main.js'))) {
      // Type errors elsewhere must not hide the build: tsc emits anyway.
      spawnSync(process.execPath, [path.join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', path.join(ROOT, 'tsconfig.json')], { stdio: 'ignore' });
      assert.ok(existsSync(path.join(ROOT, 'dist', 'src', 'cli', 'main.js')), 'build failed: run `npm run build`');
    }
    dest = await fs.mkdtemp(path.join(os.tmpdir(), 'tdxfer-install-'));
    first = run('install.sh', dest, ['--prefix', PREFIX]);
    m1 = await manifest(dest);
  });
  after(async () => {
    if (dest) await fs.rm(dest, { recursive: true, force: true });
  });

  test('lays down the app, launcher, unit, config, state and show folders with the right modes', async () => {
    assert.equal(first.code, 0, first.stderr);
    assert.match(first.stdout, /DESTDIR is set: not creating the tdxfer user/);
    assert.match(first.stdout, /DESTDIR is set: not enabling the unit/);
    const rel = (p: string): string => p.replace(/^\//, '');
    const app = rel(`${PREFIX}/app`);

    // Launcher: the node the installer ran with, the prefix, argv passed through.
    assert.equal(modeOf(m1, rel(`${PREFIX}/bin/tdxfer`)), '0755');
    const launcher = await fs.readFile(path.join(dest, PREFIX, 'bin', 'tdxfer'), 'utf8');
    assert.ok(launcher.startsWith('#!/bin/sh\n'));
    assert.ok(launcher.includes(`exec "\${TDXFER_NODE:-${process.execPath}}" "${PREFIX}/app/dist/src/cli/main.js" "$@"`), launcher);
    assert.deepEqual(m1.get('usr/local/bin/tdxfer'), { mode: '0777', kind: 'l', hash: `${PREFIX}/bin/tdxfer`, mtimeMs: 0 });

    // App: the build, manifests, production dependencies only, no source maps.
    for (const f of ['dist/src/cli/main.js', 'package.json', 'package-lock.json', 'config/example.json', 'node_modules/commander/package.json', 'node_modules/prom-client/package.json', 'node_modules/node-osc/package.json']) {
      assert.equal(modeOf(m1, `${app}/${f}`), '0644', f);
    }
    for (const dev of ['typescript', 'playwright-core', 'eslint', 'tsx', '@types/node', 'fast-check']) assert.equal(m1.has(`${app}/node_modules/${dev}`), false, `dev dependency ${dev} installed`);
    assert.equal([...m1.keys()].filter((k) => k.startsWith(`${app}/dist/`) && k.endsWith('.map')).length, 0);
    assert.equal(modeOf(m1, app), '0755');

    // The unit, prefix substituted.
    assert.equal(modeOf(m1, 'etc/systemd/system/tdxfer.service'), '0644');
    const unit = await fs.readFile(path.join(dest, 'etc/systemd/system/tdxfer.service'), 'utf8');
    const source = await fs.readFile(path.join(ROOT, 'systemd/tdxfer.service'), 'utf8');
    assert.equal(unit, source.replaceAll('/opt/tdxfer', PREFIX));
    assert.match(unit, new RegExp(`^ExecStart=${PREFIX}/bin/tdxfer run --config /etc/tdxfer/config\\.json$`, 'm'));
    assert.doesNotMatch(unit, /\/opt\/tdxfer\b/);

    // Config private; state 0750; show folder.
    assert.equal(modeOf(m1, 'etc/tdxfer'), '0750');
    assert.equal(modeOf(m1, 'etc/tdxfer/config.json'), '0640');
    // The minimal starter (not the full example): state in /var/lib/tdxfer, folders in /srv/tdxfer,
    // no legacy listener, no hooks, no log file, a new key inline.
    const starter = JSON.parse(await fs.readFile(path.join(dest, 'etc/tdxfer/config.json'), 'utf8')) as {
      dataDir: string; inboxes: Array<Record<string, unknown>>; outboxes: Array<{ path: string }>; security: { key: string }; legacy?: unknown; log?: unknown;
    };
    assert.equal(starter.dataDir, '/var/lib/tdxfer');
    assert.deepEqual(starter.inboxes.map((i) => [i.path, i.onReceive]), [['/srv/tdxfer/inbox', undefined]]);
    assert.deepEqual(starter.outboxes.map((o) => o.path), ['/srv/tdxfer/outbox']);
    assert.equal(starter.legacy, undefined);
    assert.equal(starter.log, undefined);
    assert.match(starter.security.key, /^[A-Za-z0-9+/]{43}=$/);
    assert.doesNotMatch(first.stdout, new RegExp(starter.security.key.replace(/[+/]/g, '\\$&')), 'the key is not echoed');
    assert.match(first.stdout, /minimal starter/);
    assert.equal(modeOf(m1, 'var/lib/tdxfer'), '0750');
    assert.equal(modeOf(m1, 'srv/tdxfer'), '0755');

    // Nothing else at the top level, no leftovers of the staging copy.
    assert.deepEqual((await fs.readdir(dest)).sort(), ['etc', 'opt', 'srv', 'usr', 'var']);
    assert.deepEqual((await fs.readdir(path.join(dest, PREFIX))).sort(), ['app', 'bin']);
  });

  test('the installed agent runs on its own node_modules', () => {
    const pkg = JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { version: string };
    const out = execFileSync(process.execPath, [path.join(dest, PREFIX, 'app/dist/src/cli/main.js'), '--version'], { cwd: dest, encoding: 'utf8', timeout: 30_000 });
    assert.match(out.trim(), new RegExp(`^${pkg.version.replaceAll('.', '\\.')} \\(commit (?:[0-9a-f]+|unknown), linux-x64, from source, Node v`));
  });

  test('systemd-analyze verify accepts the installed unit without warnings', { skip: skipVerify }, async () => {
    // verify resolves dependencies (sysinit.target, …) inside --root: give it the host's unit library.
    await fs.cp('/usr/lib/systemd/system', path.join(dest, 'usr/lib/systemd/system'), { recursive: true });
    try {
      const r = spawnSync('systemd-analyze', ['verify', `--root=${dest}`, '--man=no', '--generators=no', 'tdxfer.service'], { encoding: 'utf8' });
      assert.equal(r.status, 0, r.stderr);
      assert.equal(r.stderr.trim(), '', `systemd-analyze warnings:\n${r.stderr}`);
      // And it does catch a broken unit: a launcher that is not executable.
      await fs.chmod(path.join(dest, PREFIX, 'bin/tdxfer'), 0o644);
      const broken = spawnSync('systemd-analyze', ['verify', `--root=${dest}`, '--man=no', '--generators=no', 'tdxfer.service'], { encoding: 'utf8' });
      assert.notEqual(broken.status, 0);
      assert.match(broken.stderr, /not executable/);
    } finally {
      await fs.chmod(path.join(dest, PREFIX, 'bin/tdxfer'), 0o755);
      await fs.rm(path.join(dest, 'usr/lib'), { recursive: true, force: true });
    }
  });

  test('a second run succeeds, changes nothing and keeps an edited config', async () => {
    const cfg = path.join(dest, 'etc/tdxfer/config.json');
    await fs.writeFile(cfg, '{ "name": "edited-by-operator" }\n');
    const before = await manifest(dest);
    const second = run('install.sh', dest, ['--prefix', PREFIX]);
    assert.equal(second.code, 0, second.stderr);
    assert.match(second.stdout, /config\.json exists: kept as is/);
    assert.doesNotMatch(second.stdout, /installed the agent/);
    assert.equal(await fs.readFile(cfg, 'utf8'), '{ "name": "edited-by-operator" }\n');
    const afterRun = await manifest(dest);
    assert.deepEqual([...afterRun.entries()], [...before.entries()]);
  });

  test('uninstall removes the program and unit, keeps config and state; --purge removes those too', async () => {
    const r = run('uninstall.sh', dest, ['--prefix', PREFIX]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(existsSync(path.join(dest, 'etc/systemd/system/tdxfer.service')), false);
    assert.equal(existsSync(path.join(dest, PREFIX)), false);
    assert.equal(existsSync(path.join(dest, 'usr/local/bin/tdxfer')), false);
    assert.equal(existsSync(path.join(dest, 'etc/tdxfer/config.json')), true);
    assert.equal(existsSync(path.join(dest, 'var/lib/tdxfer')), true);
    assert.match(r.stdout, /kept \/etc\/tdxfer/);

    const p = run('uninstall.sh', dest, ['--prefix', PREFIX, '--purge']);
    assert.equal(p.code, 0, p.stderr);
    assert.equal(existsSync(path.join(dest, 'etc/tdxfer')), false);
    assert.equal(existsSync(path.join(dest, 'var/lib/tdxfer')), false);
    assert.equal(existsSync(path.join(dest, 'srv/tdxfer')), true, 'show media must never be purged');
  });

  test('uninstall refuses to delete an app folder that is not tdxfer', async () => {
    const other = path.join(dest, 'opt/other/app');
    await fs.mkdir(other, { recursive: true });
    await fs.writeFile(path.join(other, 'package.json'), '{ "name": "something-else" }');
    const r = run('uninstall.sh', dest, ['--prefix', '/opt/other']);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /does not look like a tdxfer install/);
    assert.equal(existsSync(path.join(other, 'package.json')), true);
  });

  test('bad arguments are refused with a message', () => {
    const rel = run('install.sh', dest, ['--prefix', 'relative/path']);
    assert.equal(rel.code, 1);
    assert.match(rel.stderr, /--prefix must be an absolute path/);
    const unknown = run('install.sh', dest, ['--frobnicate']);
    assert.equal(unknown.code, 1);
    assert.match(unknown.stderr, /unknown option --frobnicate/);
  });
});

describe('systemd/tdxfer.service hardening', () => {
  test('has every required directive and no MemoryDenyWriteExecute (V8 JIT)', async () => {
    const unit = await fs.readFile(path.join(ROOT, 'systemd/tdxfer.service'), 'utf8');
    const directives = new Map<string, string>();
    for (const line of unit.split('\n')) {
      const m = /^([A-Za-z]+)=(.*)$/.exec(line);
      if (m) directives.set(m[1]!, m[2]!);
    }
    const expected: Record<string, string> = {
      User: 'tdxfer',
      ExecStart: '/opt/tdxfer/bin/tdxfer run --config /etc/tdxfer/config.json',
      Restart: 'on-failure',
      NoNewPrivileges: 'yes',
      ProtectSystem: 'strict',
      ProtectHome: 'yes',
      PrivateTmp: 'yes',
      ProtectKernelTunables: 'yes',
      ProtectControlGroups: 'yes',
      RestrictAddressFamilies: 'AF_INET AF_INET6 AF_UNIX AF_NETLINK',
      LockPersonality: 'yes',
      StandardOutput: 'journal',
      KillSignal: 'SIGTERM',
      TimeoutStopSec: '20',
      AmbientCapabilities: '',
    };
    for (const [k, v] of Object.entries(expected)) assert.equal(directives.get(k), v, k);
    assert.ok(directives.has('RestartSec'));
    assert.match(directives.get('ReadWritePaths') ?? '', /\/var\/lib\/tdxfer .*\/srv\/tdxfer/);
    assert.equal(directives.has('MemoryDenyWriteExecute'), false);
    assert.match(unit, /^#.*MemoryDenyWriteExecute.*V8/m);
    // Every hardening directive is explained by a comment right above it (or its group).
    const lines = unit.split('\n');
    for (const key of ['NoNewPrivileges', 'ProtectSystem', 'ProtectHome', 'PrivateTmp', 'ProtectKernelTunables', 'ProtectControlGroups', 'RestrictAddressFamilies', 'LockPersonality']) {
      const i = lines.findIndex((l) => l.startsWith(`${key}=`));
      const above = lines.slice(Math.max(0, i - 3), i);
      assert.ok(above.some((l) => l.startsWith('#')), `${key} has no comment above it`);
    }
  });
});
