import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { chmod, mkdir, mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { portHolderHint, probePort, runDoctor, writeAccessFix } from '../../src/cli/doctor.js';
import { memoryLogger } from '../../src/log.js';
import { StatusServer } from '../../src/status/server.js';
import { FakeView } from '../helpers/fake-view.js';
import { reservedPort } from '../helpers/ports.js';

const win = process.platform === 'win32';
/** Windows keeps access in NTFS ACLs, not in mode bits: doctor names the key without judging its mode. */
const keyLine = (keyFile: string): string => (win ? `✓ key: ${keyFile} present (access not checked on Windows: ` : `✓ key: ${keyFile} present, private`);

class Capture extends Writable {
  text = '';
  override _write(chunk: Buffer, _enc: BufferEncoding, cb: () => void): void {
    this.text += chunk.toString('utf8');
    cb();
  }
}

async function hold(port: number): Promise<net.Server> {
  const srv = net.createServer((s) => s.destroy());
  await new Promise<void>((r) => srv.listen(port, '127.0.0.1', r));
  return srv;
}

interface Setup {
  dir: string;
  cfgFile: string;
  inbox: string;
  outbox: string;
  keyFile: string;
  ports: { listen: number; status: number; legacy: number };
}

async function setup(t: { after: (fn: () => Promise<void>) => void }, patch: (cfg: Record<string, unknown>, s: Omit<Setup, 'cfgFile'>) => void = () => {}): Promise<Setup> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'tdxfer-doctor-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const inbox = path.join(dir, 'inbox');
  const outbox = path.join(dir, 'outbox');
  await mkdir(inbox);
  await mkdir(outbox);
  const keyFile = path.join(dir, 'tdxfer.key');
  await writeFile(keyFile, Buffer.alloc(32, 7).toString('base64') + '\n', { mode: 0o600 });
  await chmod(keyFile, 0o600);
  // Reserved (helpers/ports.ts): doctor must find them free unless this test holds them,
  // so no other test process may take them between here and the probe.
  const ports = { listen: await reservedPort(), status: await reservedPort(), legacy: await reservedPort() };
  const cfg: Record<string, unknown> = {
    name: 'doc-test',
    dataDir: path.join(dir, 'data'),
    listen: { host: '127.0.0.1', port: ports.listen },
    inboxes: [{ name: 'renders', path: inbox }],
    outboxes: [{ path: outbox, to: [{ peer: 'doc-test', inbox: 'renders' }] }],
    security: { keyFile },
    legacy: { listen: { host: '127.0.0.1', port: ports.legacy }, inbox: 'renders' },
    status: { host: '127.0.0.1', port: ports.status },
  };
  patch(cfg, { dir, inbox, outbox, keyFile, ports });
  const cfgFile = path.join(dir, 'config.json');
  await writeFile(cfgFile, JSON.stringify(cfg, null, 2));
  return { dir, cfgFile, inbox, outbox, keyFile, ports };
}

describe('tdxfer doctor', () => {
  test('a healthy machine: every line ✓ and exit 0', async (t) => {
    const s = await setup(t);
    const out = new Capture();
    const code = await runDoctor({ config: s.cfgFile, env: {}, minFreeBytes: 1 }, { out });
    assert.equal(code, 0, out.text);
    assert.doesNotMatch(out.text, /✗/);
    for (const expected of [
      `✓ config: ${s.cfgFile} is valid (agent "doc-test")`,
      keyLine(s.keyFile),
      `✓ data folder: ${path.join(s.dir, 'data')} will be created on first start`,
      `✓ inbox "renders": ${s.inbox} exists and is writable`,
      '✓ inbox "renders" staging:',
      '✓ inbox "renders" disk:',
      `✓ outbox 1 (after: archive): ${s.outbox} exists and is writable`,
      `✓ transfer port 127.0.0.1:${s.ports.listen}: free`,
      `✓ status port 127.0.0.1:${s.ports.status}: free`,
      `✓ legacy (TOX) port 127.0.0.1:${s.ports.legacy}: free`,
      '✓ discovery: off',
      'all checks passed',
    ]) {
      assert.ok(out.text.includes(expected), `missing "${expected}" in:\n${out.text}`);
    }
  });

  test('problems are ✗ lines with a fix, warnings ! lines, and the exit code is 1', async (t) => {
    const s = await setup(t, (cfg, x) => {
      // A plain file stands where the folder's parent should be: `run` could not create it.
      (cfg.inboxes as unknown[]).push({ name: 'stills', path: path.join(x.dir, 'plain-file', 'stills') });
      (cfg.inboxes as unknown[]).push({ name: 'clips', path: path.join(x.dir, 'clips'), onReceive: { command: [path.join(x.dir, 'no-such-hook'), '--x'] } });
      cfg.discovery = { enabled: true, interfaces: ['nonexistent-nic0'] };
    });
    await writeFile(path.join(s.dir, 'plain-file'), 'not a folder');
    await chmod(s.keyFile, 0o644);
    const squatter = await hold(s.ports.listen);
    t.after(() => new Promise<void>((r) => squatter.close(() => r())));
    const out = new Capture();
    const code = await runDoctor({ config: s.cfgFile, env: {}, minFreeBytes: Number.MAX_SAFE_INTEGER }, { out });
    assert.equal(code, 1);
    const text = out.text;
    if (win) assert.ok(text.includes(keyLine(s.keyFile)), text);
    else assert.match(text, new RegExp(`! key: ${s.keyFile.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} is readable by other users \\(mode 0644\\).*\\n {4}fix: chmod 600`));
    assert.match(text, /✗ inbox "stills": .*plain-file.stills does not exist and cannot be created\n {4}fix: The inbox "stills" .* cannot be created: a file stands where a folder is needed \(at .*plain-file\)/);
    assert.ok(text.includes(`✓ inbox "clips": ${path.join(s.dir, 'clips')} does not exist yet: will be created by \`tdxfer run\``), text);
    assert.ok(text.includes(`✗ inbox "clips" onReceive: ${path.join(s.dir, 'no-such-hook')} does not exist: the hook would fail on every received file\n    fix: `), text);
    assert.match(text, /✗ inbox "renders" disk: only .* free on the disk of/);
    assert.match(text, new RegExp(`✗ transfer port 127\\.0\\.0\\.1:${s.ports.listen}: in use by another program\\n {4}fix: stop that program`));
    assert.match(text, new RegExp(`✓ status port 127\\.0\\.0\\.1:${s.ports.status}: free`));
    // The names this machine has (Linux: "lo"; Windows: e.g. "Loopback Pseudo-Interface 1"), quoted as the config wants them.
    const nic = JSON.stringify(Object.keys(os.networkInterfaces())[0]);
    assert.ok(text.includes(`✗ discovery interfaces: not on this machine: nonexistent-nic0\n    fix: use interface names or IPv4 addresses of this machine: `) && text.includes(nic), text);
    assert.match(text, win ? /\n6 problems to fix\n$/ : /\n6 problems to fix, 1 warning\n$/);
    assert.ok(text.includes(`fix: stop that program (e.g. ${portHolderHint(s.ports.listen)} shows which)`), text);
    // Advice in the terms of the platform it runs on: no POSIX tools on Windows.
    if (win) assert.doesNotMatch(text, /chmod|chown|ss -ltnp|systemd|mkdir -p/);
  });

  test("ports held by this config's running agent are fine (probed through its /status)", async (t) => {
    const s = await setup(t, (cfg) => {
      cfg.legacy = { listen: null, inbox: null };
    });
    const view = new FakeView({ name: 'doc-test', listen: `127.0.0.1:${s.ports.listen}`, version: '7.7.7' });
    const status = new StatusServer(view, { host: '127.0.0.1', port: s.ports.status, token: null, log: memoryLogger(), version: '7.7.7', defaultMetrics: false });
    await status.start();
    const transfer = await hold(s.ports.listen);
    t.after(async () => {
      await status.stop();
      await new Promise<void>((r) => transfer.close(() => r()));
    });
    const out = new Capture();
    const code = await runDoctor({ config: s.cfgFile, env: {}, minFreeBytes: 1 }, { out });
    assert.equal(code, 0, out.text);
    assert.ok(out.text.includes(`✓ transfer port 127.0.0.1:${s.ports.listen}: held by this config's running agent "doc-test" (7.7.7)`), out.text);
    assert.ok(out.text.includes(`✓ status port 127.0.0.1:${s.ports.status}: held by this config's running agent "doc-test" (7.7.7)`), out.text);
    assert.doesNotMatch(out.text, /legacy/);
  });

  test('ports held by another tdxfer agent are errors naming the port and that agent', async (t) => {
    const s = await setup(t);
    // Another installation's agent runs with this config's status and legacy ports, and its own transfer port.
    const otherListen = await hold(0);
    const otherPort = (otherListen.address() as net.AddressInfo).port;
    const view = new FakeView({ name: 'other-show', listen: `127.0.0.1:${otherPort}`, version: '7.7.7' });
    const status = new StatusServer(view, { host: '127.0.0.1', port: s.ports.status, token: null, log: memoryLogger(), version: '7.7.7', defaultMetrics: false });
    await status.start();
    const legacy = await hold(s.ports.legacy);
    t.after(async () => {
      await status.stop();
      await new Promise<void>((r) => legacy.close(() => r()));
      await new Promise<void>((r) => otherListen.close(() => r()));
    });
    const out = new Capture();
    const code = await runDoctor({ config: s.cfgFile, env: {}, minFreeBytes: 1 }, { out });
    assert.equal(code, 1, out.text);
    assert.ok(out.text.includes(`✓ transfer port 127.0.0.1:${s.ports.listen}: free`), out.text);
    assert.ok(
      out.text.includes(
        `✗ status port 127.0.0.1:${s.ports.status}: held by the running tdxfer agent "other-show" (7.7.7, transfer port 127.0.0.1:${otherPort}), which is not this config's agent (name "doc-test", transfer port ${s.ports.listen}): this config's agent could not start next to it\n    fix: stop that agent`,
      ),
      out.text,
    );
    assert.match(out.text, new RegExp(`✗ legacy \\(TOX\\) port 127\\.0\\.0\\.1:${s.ports.legacy}: in use by another program \\(the tdxfer agent "other-show" .*\\n {4}fix: .*legacy\\.listen\\.port`));
    assert.match(out.text, /\n2 problems to fix\n$/);
  });

  test('missing folders that run creates are "will be created" (and doctor creates nothing)', async (t) => {
    const s = await setup(t, (cfg, x) => {
      cfg.inboxes = [{ name: 'renders', path: path.join(x.dir, 'new', 'inbox') }];
      cfg.outboxes = [{ path: path.join(x.dir, 'new', 'outbox'), to: [{ peer: 'doc-test', inbox: 'renders' }] }];
      cfg.legacy = { listen: null, inbox: null };
    });
    const out = new Capture();
    assert.equal(await runDoctor({ config: s.cfgFile, env: {}, minFreeBytes: 1 }, { out }), 0, out.text);
    assert.ok(out.text.includes(`✓ inbox "renders": ${path.join(s.dir, 'new', 'inbox')} does not exist yet: will be created by \`tdxfer run\``), out.text);
    assert.match(out.text, /✓ inbox "renders" staging: /);
    assert.match(out.text, /✓ inbox "renders" disk: /);
    assert.ok(out.text.includes(`✓ outbox 1 (after: archive): ${path.join(s.dir, 'new', 'outbox')} does not exist yet: will be created by \`tdxfer run\``), out.text);
    await assert.rejects(stat(path.join(s.dir, 'new')), { code: 'ENOENT' }); // doctor created nothing
  });


  test('an invalid config stops at the config check with its message', async (t) => {
    const s = await setup(t, (cfg) => {
      cfg.listen = { host: '127.0.0.1', port: 'seven' };
    });
    const out = new Capture();
    assert.equal(await runDoctor({ config: s.cfgFile, env: {} }, { out }), 1);
    assert.match(out.text, /^✗ config .*config\.json:\n {4}.*listen\.port/);
    assert.doesNotMatch(out.text, /✓/);
  });

  test('the fixes name the tools of the platform doctor runs on', () => {
    assert.match(writeAccessFix('D:\\show\\inbox', 'win32'), /icacls "D:\\show\\inbox" \/grant/);
    assert.doesNotMatch(writeAccessFix('D:\\show\\inbox', 'win32'), /chown|systemd/);
    assert.match(writeAccessFix('/srv/in', 'linux'), /chown tdxfer "\/srv\/in".*ReadWritePaths=/);
    assert.match(writeAccessFix('/Users/td/in', 'darwin'), /chown/);
    assert.doesNotMatch(writeAccessFix('/Users/td/in', 'darwin'), /systemd/);
    assert.match(portHolderHint(7650, 'win32'), /netstat -ano \| findstr :7650/);
    assert.match(portHolderHint(7650, 'darwin'), /lsof -nP -iTCP:7650 -sTCP:LISTEN/);
    assert.match(portHolderHint(7650, 'linux'), /ss -ltnp \| grep :7650/);
  });

  test('probePort tells free, in use and impossible apart', async (t) => {
    const port = await reservedPort();
    assert.deepEqual(await probePort('127.0.0.1', port), { state: 'free' });
    const srv = await hold(port);
    t.after(() => new Promise<void>((r) => srv.close(() => r())));
    assert.deepEqual(await probePort('127.0.0.1', port), { state: 'in-use' });
    const bad = await probePort('192.0.2.123', port); // TEST-NET-1: not an address of this machine
    assert.equal(bad.state, 'error');
    assert.equal((bad as { code: string }).code, 'EADDRNOTAVAIL');
  });
});
