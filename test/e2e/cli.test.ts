/**
 * The command line as users run it: zero-config `tdxfer run`, `tdxfer send`, start-up
 * errors. Every case spawns the real CLI.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import type { Agent } from '../../src/agent/agent.js';
import { cliCommand, hashTree, runCli, listFiles, spawnCli, startAgent, tempDir, waitUntil, writeAgentConfig, writeRandomFile, verboseLogger } from '../helpers/agents.js';
import { holdFixedPorts, reservedPort } from '../helpers/ports.js';
import { EXIT_AFTER_KILL } from '../helpers/platform.js';
import { spawnChild } from '../helpers/spawn.js';

const cleanup: Array<() => Promise<unknown>> = [];
after(async () => {
  for (const c of cleanup.reverse()) await c().catch(() => undefined);
});

async function root(): Promise<string> {
  const r = await tempDir('tdx-cli-');
  cleanup.push(() => fs.rm(r, { recursive: true, force: true }));
  return r;
}


test('zero config: `tdxfer run` creates its data folder, prints it, and a file dropped into the outbox arrives in the inbox over TCP', async () => {
  const dir = path.join(await root(), 'data');
  // Built-in defaults listen on 7770 and serve status on 7771: this case holds them (another
  // suite on this machine, or the Windows lane, waits for them rather than failing to bind).
  const release = await holdFixedPorts([7770, 7771]);
  cleanup.push(async () => release());
  const s = spawnCli(['run'], { TDXFER_DATA_DIR: dir, TDXFER_CONFIG: '' });
  cleanup.push(() => s.stop());
  await s.waitFor(/Drop files into\s+(\S+)/);
  const out = s.output();
  const outbox = /Drop files into\s+(\S+)/.exec(out)![1]!;
  const inbox = /They arrive in\s+(\S+)/.exec(out)![1]!;
  assert.equal(outbox, path.join(dir, 'outbox'));
  assert.equal(inbox, path.join(dir, 'inbox'));
  assert.match(out, /A new installation key was created/);
  const body = randomBytes(123_456);
  await fs.mkdir(path.join(outbox, 'shot'), { recursive: true });
  await fs.writeFile(path.join(outbox, 'shot', 'frame.0001.png'), body);
  await waitUntil(async () => (await listFiles(inbox)).includes('shot/frame.0001.png'), 15_000, () => s.output());
  assert.deepEqual(await fs.readFile(path.join(inbox, 'shot', 'frame.0001.png')), body);
  assert.equal(await s.stop('SIGINT'), EXIT_AFTER_KILL);
  // The key is shown once: a second start does not print it again.
  const again = spawnCli(['run'], { TDXFER_DATA_DIR: dir, TDXFER_CONFIG: '' });
  await again.waitFor(/Drop files into/);
  assert.doesNotMatch(again.output(), /new installation key/);
  assert.equal(await again.stop('SIGTERM'), EXIT_AFTER_KILL);
});

test('`tdxfer send` sends files over one connection, waits for each confirmation, and exits 0', async () => {
  const r = await root();
  const bCfg = await writeAgentConfig({ name: 'playback', dir: path.join(r, 'b'), port: 0 });
  const b: Agent = await startAgent(bCfg, verboseLogger());
  cleanup.push(() => b.stop());
  const port = b.listenAddress.port;
  const aCfg = await writeAgentConfig({ name: 'render', dir: path.join(r, 'a'), port: 0, extra: { peers: [{ name: 'playback', host: '127.0.0.1', port }] } });
  const files = [];
  for (let i = 0; i < 3; i++) {
    const f = path.join(r, 'src', `clip${i}.mov`);
    await writeRandomFile(f, 200_000 * (i + 1));
    files.push(f);
  }
  const res = await runCli(['send', ...files, '--to', 'playback/renders', '--config', aCfg]);
  assert.equal(res.code, 0, res.out);
  assert.match(res.out, /3 of 3 file\(s\) confirmed/);
  assert.deepEqual(await hashTree(path.join(r, 'b', 'inbox')), await hashTree(path.join(r, 'src')));
  // --as renames at the receiver (folders allowed).
  const one = await runCli(['send', files[0]!, '--to', 'playback/renders', '--as', 'takes/take1.mov', '--config', aCfg]);
  assert.equal(one.code, 0, one.out);
  assert.ok((await listFiles(path.join(r, 'b', 'inbox'))).includes('takes/take1.mov'));
});

test('`tdxfer send` on a terminal draws its progress bar (loaded only then) and still confirms the file', { skip: process.platform === 'win32' ? 'a POSIX pseudo-terminal (python3 pty)' : false }, async () => {
  const r = await root();
  const bCfg = await writeAgentConfig({ name: 'playback', dir: path.join(r, 'b'), port: 0 });
  const b: Agent = await startAgent(bCfg, verboseLogger());
  cleanup.push(() => b.stop());
  const aCfg = await writeAgentConfig({ name: 'render', dir: path.join(r, 'a'), port: 0, extra: { peers: [{ name: 'playback', host: '127.0.0.1', port: b.listenAddress.port }] } });
  const f = path.join(r, 'src', 'clip.mov');
  await writeRandomFile(f, 3_000_000);
  // Real CPython's pty gives the command a terminal on stdout and stderr.
  const { cmd, args } = cliCommand();
  const py = 'import os, pty, sys; sys.exit(os.waitstatus_to_exitcode(pty.spawn(sys.argv[1:])))';
  const child = spawnChild('python3', ['-c', py, cmd, ...args, 'send', f, '--to', 'playback/renders', '--config', aCfg], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  const code = await new Promise<number | null>((resolve) => child.once('close', resolve));
  assert.equal(code, 0, out);
  assert.match(out, /clip\.mov \|[█░]+\| 100% 3000000\/3000000 B/, `no finished progress bar in:\n${out}`);
  assert.match(out, /1 of 1 file\(s\) confirmed/);
  assert.deepEqual(await fs.readFile(path.join(r, 'b', 'inbox', 'clip.mov')), await fs.readFile(f));
});

test('`tdxfer send` exit codes: unknown peer and missing inbox are usage errors (2), an unreachable peer or refused file is a failure (1)', async () => {
  const r = await root();
  // reservedPort: "ghost" needs a port where nothing listens.
  const dead = await reservedPort();
  const bCfg = await writeAgentConfig({ name: 'playback', dir: path.join(r, 'b'), port: 0 });
  const b: Agent = await startAgent(bCfg, verboseLogger());
  cleanup.push(() => b.stop());
  const port = b.listenAddress.port;
  const aCfg = await writeAgentConfig({
    name: 'render', dir: path.join(r, 'a'), port: 0,
    extra: { peers: [{ name: 'playback', host: '127.0.0.1', port }, { name: 'ghost', host: '127.0.0.1', port: dead }] },
  });
  const f = path.join(r, 'x.png');
  await fs.writeFile(f, 'x');
  const otherKey = await writeAgentConfig({
    name: 'render', dir: path.join(r, 'k'), port: 0,
    extra: { peers: [{ name: 'playback', host: '127.0.0.1', port }], security: { key: randomBytes(32).toString('base64') } },
  });
  // Six separate CLI processes, started together: each is its own `tdxfer send` (a node.exe
  // start costs 1-3 s under wine), none depends on another.
  const [unknown, noInbox, unreachable, wrongInbox, wrongKey, missing] = await Promise.all([
    runCli(['send', f, '--to', 'nobody/renders', '--config', aCfg]),
    runCli(['send', f, '--to', 'playback', '--config', aCfg]),
    runCli(['send', f, '--to', 'ghost/renders', '--config', aCfg]),
    runCli(['send', f, '--to', 'playback/nope', '--config', aCfg]),
    runCli(['send', f, '--to', 'playback/renders', '--config', otherKey]),
    runCli(['send', path.join(r, 'missing.png'), '--to', 'playback/renders', '--config', aCfg]),
  ]);
  assert.equal(unknown.code, 2);
  assert.match(unknown.out, /unknown peer "nobody".*add it to "peers"/s);
  assert.equal(noInbox.code, 2);
  assert.match(noInbox.out, /name the inbox too/);
  assert.equal(unreachable.code, 1);
  assert.match(unreachable.out, /cannot reach ghost/);
  assert.equal(wrongInbox.code, 1);
  assert.match(wrongInbox.out, /no inbox named "nope"/);
  assert.equal(wrongKey.code, 1, wrongKey.out);
  assert.match(wrongKey.out, /does not hold the same installation key/);
  assert.doesNotMatch(wrongKey.out, /SSL routines|alert/i);
  assert.equal(missing.code, 2);
  assert.match(missing.out, /cannot send .*missing\.png/);
});

test('an invalid config stops `tdxfer run` at start with the field, the value and what is allowed', async () => {
  const r = await root();
  const cfg = path.join(r, 'bad.json');
  await fs.writeFile(cfg, JSON.stringify({ name: 'x', listen: { port: 'abc' }, outboxes: [{ path: 'o', to: [{ peer: 'x', inbox: 'i' }], after: 'shred' }] }));
  const res = await runCli(['run', '--config', cfg]);
  assert.equal(res.code, 2);
  assert.match(res.out, /listen\.port/);
  assert.match(res.out, /"abc"/);
  assert.match(res.out, /outboxes\[0\]\.after/);
  assert.match(res.out, /archive/);
});

test('an inbox that cannot be created is a clear start-up error naming the folder', async () => {
  const r = await root();
  await fs.writeFile(path.join(r, 'blocker'), 'a file where a folder should be');
  const cfg = await writeAgentConfig({ name: 'x', dir: r, port: 0, extra: { inboxes: [{ name: 'renders', path: 'blocker/inbox' }] } });
  const res = await runCli(['run', '--config', cfg]);
  assert.equal(res.code, 2, res.out);
  assert.match(res.out, /a file stands where a folder is needed/);
  assert.match(res.out, /blocker/);
  assert.match(res.out, /cannot start/);
});

test('a busy transfer port is a clear start-up error', async () => {
  const r = await root();
  const cfgA = await writeAgentConfig({ name: 'a', dir: path.join(r, 'a'), port: 0 });
  const a = await startAgent(cfgA, verboseLogger());
  cleanup.push(() => a.stop());
  const port = a.listenAddress.port;
  const cfgB = await writeAgentConfig({ name: 'b', dir: path.join(r, 'b'), port });
  const res = await runCli(['run', '--config', cfgB]);
  assert.equal(res.code, 1);
  assert.match(res.out, new RegExp(`cannot listen on 127\\.0\\.0\\.1:${port}.*listen\\.port`));
});

test('--help works on every command', async () => {
  const cmds = [[], ['run'], ['send'], ['config', 'check'], ['init'], ['status'], ['peers'], ['doctor']];
  // One process per command, as a user runs them; started together (each node.exe start costs 1-3 s under wine).
  const results = await Promise.all(cmds.map((cmd) => runCli([...cmd, '--help'])));
  cmds.forEach((cmd, i) => {
    const res = results[i]!;
    assert.equal(res.code, 0, `${cmd.join(' ')} --help: ${res.out}`);
    assert.match(res.out, /Usage: tdxfer/);
  });
});
