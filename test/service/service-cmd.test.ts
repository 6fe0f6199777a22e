/**
 * `tdxfer service` through the built CLI: the Linux unit written into a DESTDIR (hardening
 * kept, `systemd-analyze verify`, idempotent, uninstall), every platform's --dry-run (files
 * and commands, nothing changed), the WinSW definition pinned, the LaunchDaemon plist read
 * back with Python's plistlib, and the errors for bad options.
 */
import { test, describe, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { renderUnit } from '../../src/service/linux.js';
import { firewallCommand, windowsPaths, winswXml } from '../../src/service/windows.js';
import { launchdPlist } from '../../src/service/macos.js';

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
const MAIN = path.join(ROOT, 'dist/src/cli/main.js');
const TEMPLATE = readFileSync(path.join(ROOT, 'systemd/tdxfer.service'), 'utf8');
const analyze = spawnSync('systemd-analyze', ['--version']).status === 0 && existsSync('/usr/lib/systemd/system/sysinit.target');
const hasPython = spawnSync('python3', ['-c', 'import plistlib, xml.etree.ElementTree']).status === 0;

const temps: string[] = [];
after(async () => {
  for (const t of temps) await fs.rm(t, { recursive: true, force: true });
});
async function temp(): Promise<string> {
  const t = await fs.mkdtemp(path.join(os.tmpdir(), 'tdx-svc-'));
  temps.push(t);
  return t;
}

function cli(args: string[], env: Record<string, string> = {}): { code: number | null; out: string; err: string } {
  const r = spawnSync(process.execPath, [MAIN, 'service', ...args], { env: { ...process.env, DESTDIR: '', ...env }, encoding: 'utf8', timeout: 60_000 });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

/** The `write PATH` block of a --dry-run listing, as file content. */
function shownFile(out: string, file: string): string {
  const lines = out.split('\n');
  const at = lines.findIndex((l) => l.startsWith(`  write ${file} `));
  assert.ok(at >= 0, `no write ${file} in:\n${out}`);
  const body: string[] = [];
  for (const l of lines.slice(at + 1)) {
    const m = /^ {6}\| ?(.*)$/.exec(l);
    if (!m) break;
    body.push(m[1]!);
  }
  return body.join('\n');
}

function python(code: string, input: string): { code: number | null; out: string; err: string } {
  const r = spawnSync('python3', ['-c', code], { input, encoding: 'utf8', timeout: 30_000 });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

describe('Linux: the systemd unit', { skip: process.platform === 'linux' ? false : 'Linux only' }, () => {
  test('renderUnit keeps every line of systemd/tdxfer.service but ExecStart, User, Group and Documentation', () => {
    const unit = renderUnit(TEMPLATE, { program: ['/usr/bin/node', '/srv/app/dist/src/cli/main.js'], config: '/etc/tdxfer/show.json', user: 'showrunner', docs: 'file:/srv/app/README.md' });
    assert.match(unit, /^ExecStart=\/usr\/bin\/node \/srv\/app\/dist\/src\/cli\/main\.js run --config \/etc\/tdxfer\/show\.json$/m);
    assert.match(unit, /^User=showrunner$/m);
    assert.doesNotMatch(unit, /^Group=/m, 'another account keeps its own primary group');
    const changed = /^(ExecStart|User|Group|Documentation)=/;
    assert.deepEqual(
      unit.split('\n').filter((l) => !changed.test(l)),
      TEMPLATE.split('\n').filter((l) => !changed.test(l)),
    );
    for (const hardening of ['NoNewPrivileges=yes', 'ProtectSystem=strict', 'ProtectHome=yes', 'PrivateTmp=yes', 'CapabilityBoundingSet=', 'RestartPreventExitStatus=2']) {
      assert.ok(unit.split('\n').includes(hardening), hardening);
    }
    assert.throws(() => renderUnit(TEMPLATE, { program: ['/opt/x;rm -rf /'], config: '/etc/c.json', user: 'tdxfer', docs: '' }), /cannot carry safely/);
    assert.throws(() => renderUnit(TEMPLATE, { program: ['/opt/x'], config: '/etc/c.json', user: 'bad user', docs: '' }), /not a valid account name/);
  });

  test('install into DESTDIR writes the unit and folders, passes systemd-analyze verify, is idempotent; uninstall removes the unit', async (t) => {
    const dest = await temp();
    const launcher = '/opt/tdx-svc/bin/tdxfer';
    await fs.mkdir(path.join(dest, path.dirname(launcher)), { recursive: true });
    await fs.writeFile(path.join(dest, launcher), '#!/bin/sh\nexit 0\n', { mode: 0o755 });
    const first = cli(['install', '--program', launcher, '--config', '/etc/tdxfer/config.json'], { DESTDIR: dest });
    assert.equal(first.code, 0, first.err);
    const unitFile = path.join(dest, 'etc/systemd/system/tdxfer.service');
    const unit = await fs.readFile(unitFile, 'utf8');
    assert.equal(unit, TEMPLATE.replaceAll('/opt/tdxfer', '/opt/tdx-svc'), 'the template with the launcher');
    assert.equal((await fs.stat(unitFile)).mode & 0o7777, 0o644);
    assert.equal((await fs.stat(path.join(dest, 'etc/tdxfer'))).mode & 0o7777, 0o750);
    assert.ok((await fs.stat(path.join(dest, 'srv/tdxfer'))).isDirectory());
    assert.doesNotMatch(first.out, /systemctl|useradd/, 'no users and no systemctl under DESTDIR');

    const mtime = (await fs.stat(unitFile)).mtimeMs;
    const second = cli(['install', '--program', launcher], { DESTDIR: dest });
    assert.equal(second.code, 0, second.err);
    assert.equal((await fs.stat(unitFile)).mtimeMs, mtime, 'the same unit is not rewritten');
    assert.doesNotMatch(second.out, /^wrote /m);

    if (analyze) {
      await fs.cp('/usr/lib/systemd/system', path.join(dest, 'usr/lib/systemd/system'), { recursive: true });
      const r = spawnSync('systemd-analyze', ['verify', `--root=${dest}`, '--man=no', '--generators=no', 'tdxfer.service'], { encoding: 'utf8' });
      assert.equal(r.status, 0, r.stderr);
      assert.equal(r.stderr.trim(), '', `systemd-analyze warnings:\n${r.stderr}`);
      await fs.rm(path.join(dest, 'usr'), { recursive: true, force: true });
    } else t.diagnostic('systemd-analyze missing: verify not run (scripts/test-deps.sh installs it)');

    const un = cli(['uninstall'], { DESTDIR: dest });
    assert.equal(un.code, 0, un.err);
    assert.equal(existsSync(unitFile), false);
    assert.ok(existsSync(path.join(dest, 'etc/tdxfer')), 'config folder kept');
  });

  test('--dry-run prints every file and command and changes nothing', async () => {
    const dest = await temp();
    const r = cli(['install', '--dry-run', '--user', 'showrunner', '--config', '/etc/tdxfer/show.json']);
    assert.equal(r.code, 0, r.err);
    assert.match(r.out, /--dry-run: nothing is changed/);
    const unit = shownFile(r.out, '/etc/systemd/system/tdxfer.service');
    assert.match(unit, new RegExp(`^ExecStart=${process.execPath.replaceAll('/', '\\/')} ${MAIN.replaceAll('/', '\\/').replaceAll('.', '\\.')} run --config /etc/tdxfer/show\\.json$`, 'm'));
    assert.match(unit, /^User=showrunner$/m);
    assert.match(r.out, /^ {2}run systemctl daemon-reload$/m);
    assert.match(r.out, /^ {2}run systemctl enable tdxfer\.service$/m);
    assert.doesNotMatch(r.out, /useradd/, 'a named account is not created');
    const own = cli(['install', '--dry-run']);
    assert.match(own.out, /^ {2}run useradd --system .* tdxfer {3}\(only if tdxfer does not exist\)$/m);
    const d = cli(['install', '--dry-run'], { DESTDIR: dest });
    assert.equal(d.code, 0, d.err);
    assert.deepEqual(await fs.readdir(dest), [], 'nothing written');
    for (const [action, cmd] of [['start', 'systemctl start tdxfer.service'], ['stop', 'systemctl stop tdxfer.service'], ['status', 'systemctl status --no-pager tdxfer.service'], ['uninstall', 'systemctl disable --now tdxfer.service']]) {
      const a = cli([action!, '--dry-run']);
      assert.equal(a.code, 0, a.err);
      assert.ok(a.out.includes(`run ${cmd}`), `${action}: ${a.out}`);
    }
  });
});

describe('Windows: WinSW service definition', () => {
  const env = { ProgramData: 'D:\\Data', ProgramFiles: 'C:\\Program Files' };

  test('the WinSW XML is pinned: Ctrl-C stop with a timeout, recovery, start at boot, logs beside the data folder, named account', () => {
    const p = windowsPaths(env);
    const xml = winswXml({ program: [`${p.programDir}\\tdxfer.exe`], config: 'D:\\Data\\tdxfer\\config.json', paths: p, user: 'showrunner', password: null });
    assert.equal(
      xml,
      [
        '<!-- tdxfer service, written by `tdxfer service install` (WinSW 1.x from node-windows). Reinstall to change it. -->',
        '<service>',
        '  <id>tdxfer</id>',
        '  <name>tdxfer</name>',
        '  <description>tdxfer hot-folder transfer agent (outbox folders to inbox folders)</description>',
        '  <executable>C:\\Program Files\\tdxfer\\tdxfer.exe</executable>',
        '  <arguments>run --config D:\\Data\\tdxfer\\config.json</arguments>',
        '  <workingdirectory>D:\\Data\\tdxfer\\data</workingdirectory>',
        '  <env name="TDXFER_DATA_DIR" value="D:\\Data\\tdxfer\\data"/>',
        '  <env name="NODE_ENV" value="production"/>',
        '  <startmode>Automatic</startmode>',
        '  <stopparentprocessfirst>true</stopparentprocessfirst>',
        '  <stoptimeout>20 sec</stoptimeout>',
        '  <onfailure action="restart" delay="5 sec"/>',
        '  <onfailure action="restart" delay="30 sec"/>',
        '  <onfailure action="restart" delay="2 min"/>',
        '  <resetfailure>1 hour</resetfailure>',
        '  <logpath>D:\\Data\\tdxfer\\logs</logpath>',
        '  <log mode="roll-by-size">',
        '    <sizeThreshold>10240</sizeThreshold>',
        '    <keepFiles>8</keepFiles>',
        '  </log>',
        '  <serviceaccount>',
        '    <domain>.</domain>',
        '    <user>showrunner</user>',
        '    <allowservicelogon>true</allowservicelogon>',
        '  </serviceaccount>',
        '</service>',
        '',
      ].join('\r\n'),
    );
    const spaced = winswXml({ program: ['C:\\Program Files\\nodejs\\node.exe', 'C:\\My Show\\tdxfer\\dist\\src\\cli\\main.js'], config: 'C:\\My Show\\c.json', paths: p, user: null, password: null });
    assert.match(spaced, /<executable>C:\\Program Files\\nodejs\\node\.exe<\/executable>/);
    assert.match(spaced, /<arguments>"C:\\My Show\\tdxfer\\dist\\src\\cli\\main\.js" run --config "C:\\My Show\\c\.json"<\/arguments>/);
    assert.doesNotMatch(spaced, /serviceaccount/, 'LocalSystem without --user');
    assert.deepEqual(firewallCommand('C:\\Program Files\\tdxfer\\tdxfer.exe', 7770), [
      'netsh', 'advfirewall', 'firewall', 'add', 'rule', 'name=tdxfer', 'dir=in', 'action=allow', 'protocol=TCP', 'localport=7770', 'profile=private', 'program=C:\\Program Files\\tdxfer\\tdxfer.exe', 'enable=yes',
    ]);
  });

  test('--dry-run --platform windows: the wrapper, its XML (well-formed), install, firewall; the password never shown or kept', async () => {
    const r = cli(['install', '--dry-run', '--platform', 'windows', '--user', 'showrunner', '--firewall', '--config', 'D:\\Data\\tdxfer\\config.json'], { ...env, TDXFER_SERVICE_PASSWORD: 'hunter2-secret' });
    assert.equal(r.code, 0, r.err);
    assert.match(r.out, /^ {2}write C:\\Program Files\\tdxfer\\tdxfer-service\.exe \(mode 0755\):\n {6}\| \(WinSW \d+ bytes, from node-windows\)$/m);
    assert.match(r.out, /^ {2}write C:\\Program Files\\tdxfer\\tdxfer-service\.exe\.config /m);
    assert.match(r.out, /^ {2}run "C:\\Program Files\\tdxfer\\tdxfer-service\.exe" install$/m);
    assert.match(r.out, /^ {2}run netsh advfirewall firewall add rule name=tdxfer dir=in action=allow protocol=TCP localport=7770 profile=private program=.* enable=yes$/m);
    assert.doesNotMatch(r.out, /hunter2/);
    const xml = shownFile(r.out, 'C:\\Program Files\\tdxfer\\tdxfer-service.xml');
    assert.match(xml, /<password>\*{8}<\/password>/);
    // Written again without the password right after WinSW registered the account.
    const writes = r.out.split('\n').filter((l) => l.startsWith('  write C:\\Program Files\\tdxfer\\tdxfer-service.xml'));
    assert.equal(writes.length, 2);
    const idx = r.out.lastIndexOf('  write C:\\Program Files\\tdxfer\\tdxfer-service.xml');
    assert.ok(idx > r.out.indexOf('tdxfer-service.exe" install'));
    assert.doesNotMatch(r.out.slice(idx).split('\n  run')[0]!, /<password>/);
    if (hasPython) {
      const p = python('import sys, xml.etree.ElementTree as E; r = E.fromstring(sys.stdin.read()); print(r.find("id").text, r.find("startmode").text, r.find("stoptimeout").text, len(r.findall("onfailure")), r.find("serviceaccount/user").text)', xml);
      assert.equal(p.code, 0, p.err);
      assert.equal(p.out.trim(), 'tdxfer Automatic 20 sec 3 showrunner');
    }
    // Without --firewall the rule is printed for the user, not run.
    const plain = cli(['install', '--dry-run', '--platform', 'windows'], env);
    assert.match(plain.out, /^ {2}note: firewall \(run as administrator, or install with --firewall\): netsh advfirewall firewall add rule .* profile=private /m);
    assert.doesNotMatch(plain.out, /^ {2}run netsh/m);
    for (const [action, cmd] of [['start', 'sc.exe start tdxfer'], ['stop', 'sc.exe stop tdxfer'], ['status', 'sc.exe query tdxfer']]) {
      const a = cli([action!, '--dry-run', '--platform', 'windows'], env);
      assert.ok(a.out.includes(`run ${cmd}`), a.out);
    }
  });
});

describe('macOS: LaunchDaemon', () => {
  test('the plist reads back with plistlib: label, program, RunAtLoad, KeepAlive, log file, UserName', { skip: hasPython ? false : 'python3 missing' }, () => {
    const plist = launchdPlist({ program: ['/usr/local/tdxfer/tdxfer'], config: '/Library/Application Support/tdxfer/config.json', user: 'showrunner' });
    const p = python(
      'import sys, json, plistlib; print(json.dumps(plistlib.loads(sys.stdin.buffer.read())))',
      plist,
    );
    assert.equal(p.code, 0, p.err);
    const d = JSON.parse(p.out) as Record<string, unknown>;
    assert.deepEqual(d, {
      Label: 'com.tdxfer.agent',
      ProgramArguments: ['/usr/local/tdxfer/tdxfer', 'run', '--config', '/Library/Application Support/tdxfer/config.json'],
      EnvironmentVariables: { TDXFER_DATA_DIR: '/Library/Application Support/tdxfer/data' },
      WorkingDirectory: '/Library/Application Support/tdxfer/data',
      UserName: 'showrunner',
      RunAtLoad: true,
      KeepAlive: { SuccessfulExit: false },
      ThrottleInterval: 10,
      ExitTimeOut: 20,
      StandardOutPath: '/Library/Logs/tdxfer/tdxfer.log',
      StandardErrorPath: '/Library/Logs/tdxfer/tdxfer.log',
    });
  });

  test('--dry-run --platform macos prints the plist and the launchctl bootstrap/bootout commands', { skip: hasPython ? false : 'python3 missing' }, () => {
    const r = cli(['install', '--dry-run', '--platform', 'macos', '--user', 'showrunner']);
    assert.equal(r.code, 0, r.err);
    const plist = shownFile(r.out, '/Library/LaunchDaemons/com.tdxfer.agent.plist');
    const p = python('import sys, plistlib; d = plistlib.loads(sys.stdin.buffer.read()); print(d["UserName"], d["RunAtLoad"], d["ProgramArguments"][-1])', plist);
    assert.equal(p.code, 0, p.err);
    assert.equal(p.out.trim(), 'showrunner True /Library/Application Support/tdxfer/config.json');
    assert.match(r.out, /^ {2}run launchctl bootstrap system \/Library\/LaunchDaemons\/com\.tdxfer\.agent\.plist$/m);
    const un = cli(['uninstall', '--dry-run', '--platform', 'macos']);
    assert.match(un.out, /^ {2}run launchctl bootout system\/com\.tdxfer\.agent {3}\(failure ignored\)$/m);
    assert.match(un.out, /^ {2}remove \/Library\/LaunchDaemons\/com\.tdxfer\.agent\.plist$/m);
    const stop = cli(['stop', '--dry-run', '--platform', 'macos']);
    assert.match(stop.out, /run launchctl kill SIGTERM system\/com\.tdxfer\.agent/);
  });
});

describe('bad options', () => {
  test('clear errors, exit 2, nothing done', () => {
    const cases: Array<[string[], RegExp]> = [
      [['install', '--platform', 'windows'], /only --dry-run can show it here \[SERVICE_FOREIGN_PLATFORM\]/],
      [['install', '--dry-run', '--platform', 'beos'], /expected linux, windows or macos/],
      [['install', '--dry-run', '--platform', 'linux', '--user', 'no body'], /not a valid account name/],
      [['install', '--dry-run', '--platform', 'linux', '--firewall'], /--firewall is for Windows/],
      [['install', '--dry-run', '--platform', 'macos', '--config', 'relative.json'], /give an absolute path for another platform/],
      [['install', '--dry-run', '--platform', 'linux', '--config', '/etc/tdx"fer.json'], /cannot carry safely/],
    ];
    for (const [args, re] of cases) {
      if (process.platform !== 'linux' && args.includes('linux')) continue;
      const r = cli(args);
      assert.equal(r.code, 2, `${args.join(' ')}: ${r.out}${r.err}`);
      assert.match(r.err, re);
    }
  });
});
