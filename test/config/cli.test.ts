import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import path from 'node:path';
import { Command } from 'commander';
import { configCheck, configShow, init, registerConfigCommands, type CliIO } from '../../src/cli/config-cmd.js';
import { decodeKey, loadConfig } from '../../src/config/index.js';
import { KEY, baseConfig, tempDir, writeConfig } from './_helpers.js';

function io(env: NodeJS.ProcessEnv = {}): CliIO & { out: () => string; err: () => string } {
  let out = '';
  let err = '';
  return {
    stdout: { write: (s: string) => (out += s) },
    stderr: { write: (s: string) => (err += s) },
    env,
    out: () => out,
    err: () => err,
  };
}

/** The base64 key printed on its own indented line. */
function printedKey(text: string): string {
  const m = /^ {2}([A-Za-z0-9+/]{43}=)$/m.exec(text);
  assert.ok(m, `no key printed in:\n${text}`);
  return m[1]!;
}

describe('tdxfer config check', () => {
  test('valid config: exit 0 and a summary of what the agent would do', async () => {
    const dir = await tempDir();
    const cfg = baseConfig();
    cfg.peers.push({ name: 'oldbox', host: '127.0.0.1', port: 7000, protocol: 'legacy' });
    cfg.outboxes[0].to.push({ peer: 'oldbox' });
    cfg.outboxes[0].include = ['**/*.png'];
    const file = await writeConfig(dir, cfg);
    const t = io();
    assert.equal(await configCheck({ config: file }, t), 0);
    const out = t.out();
    for (const part of [
      'Config OK.',
      file,
      'render-1, listening on 0.0.0.0:7770',
      `renders: ${path.join(dir, 'in')}`,
      `${path.join(dir, 'out')} -> playback-1/renders, oldbox (then archive, settle 1000 ms, only **/*.png)`,
      'playback-1: 127.0.0.1:7770 (tdxfer)',
      'oldbox: 127.0.0.1:7000 (legacy)',
      'discovery off',
      'encrypted (TLS-PSK); key set in the config',
    ]) {
      assert.ok(out.includes(part), `summary lacks ${JSON.stringify(part)}:\n${out}`);
    }
    assert.ok(!out.includes(KEY), 'the key must not be printed');
    assert.equal(t.err(), '');
  });

  test('invalid config: exit 2, the message on stderr', async () => {
    const dir = await tempDir();
    const cfg = baseConfig();
    cfg.listen = { port: 'abc' };
    const file = await writeConfig(dir, cfg);
    const t = io();
    assert.equal(await configCheck({ config: file }, t), 2);
    assert.equal(t.out(), '');
    assert.match(t.err(), /`listen\.port` must be an integer from 0 to 65535 \(0 = any free port\), got "abc" \(string\)/);
  });

  test('zero-config check creates no key and says where it will be', async () => {
    const dir = await tempDir();
    const dataDir = path.join(dir, 'data');
    const t = io({ TDXFER_DATA_DIR: dataDir });
    assert.equal(await configCheck({}, t), 0);
    assert.ok(t.out().includes(`no key yet: the agent creates ${path.join(dataDir, 'key')}`), t.out());
    assert.ok(t.out().includes(`default: ${path.join(dataDir, 'inbox')}`), t.out());
    assert.deepEqual(await fs.readdir(dir), []);
  });

  test('uses TDXFER_CONFIG when --config is not given', async () => {
    const dir = await tempDir();
    const file = await writeConfig(dir, { listen: { port: -1 } });
    const t = io({ TDXFER_CONFIG: file });
    assert.equal(await configCheck({}, t), 2);
    assert.ok(t.err().includes(file));
  });
});

describe('tdxfer config show', () => {
  test('prints the resolved config with secrets redacted', async () => {
    const dir = await tempDir();
    const cfg = baseConfig();
    cfg.status = { token: 'a-very-secret-token' };
    const file = await writeConfig(dir, cfg);
    const t = io();
    assert.equal(await configShow({ config: file }, t), 0);
    const shown = JSON.parse(t.out());
    assert.equal(shown.security.key, '<redacted>');
    assert.equal(shown.status.token, '<redacted>');
    assert.equal(shown.inboxes[0].staging, path.join(dir, '.in.tdxfer-staging'));
    assert.equal(shown.transfer.chunkBytes, 1024 * 1024);
    assert.ok(!t.out().includes(KEY) && !t.out().includes('a-very-secret-token'));
  });
});

describe('tdxfer init', () => {
  test('creates the key in the data folder once, prints it, refuses to overwrite without --force', async () => {
    const dir = await tempDir();
    const dataDir = path.join(dir, 'data');
    const t = io();
    assert.equal(await init({ dataDir }, t), 0);
    const key = printedKey(t.out());
    assert.ok(t.out().includes('Copy this same key to every machine'));
    assert.deepEqual(decodeKey(await fs.readFile(path.join(dataDir, 'key'), 'utf8')), Buffer.from(key, 'base64'));
    // The agent started later uses that key.
    const cfg = await loadConfig(null, { env: { TDXFER_DATA_DIR: dataDir }, createKey: true });
    assert.equal(cfg.security.key.toString('base64'), key);

    const again = io();
    assert.equal(await init({ dataDir }, again), 1);
    assert.match(again.err(), /already exists.*Nothing changed[\s\S]*--force/);
    assert.equal(again.out(), '');
    assert.equal(await fs.readFile(path.join(dataDir, 'key'), 'utf8'), `${key}\n`);

    const forced = io();
    assert.equal(await init({ dataDir, force: true }, forced), 0);
    const newKey = printedKey(forced.out());
    assert.notEqual(newKey, key);
    assert.equal(await fs.readFile(path.join(dataDir, 'key'), 'utf8'), `${newKey}\n`);
  });

  test('--config naming a missing file writes a valid starter config holding the new key', async () => {
    const dir = await tempDir();
    const file = path.join(dir, 'etc', 'tdxfer.json');
    const t = io();
    assert.equal(await init({ config: file, dataDir: path.join(dir, 'data') }, t), 0);
    const key = printedKey(t.out());
    assert.ok(t.out().includes(`Wrote a starter config to ${file}`));
    if (process.platform !== 'win32') assert.equal((await fs.stat(file)).mode & 0o777, 0o600);
    const cfg = await loadConfig(file);
    assert.equal(cfg.security.key.toString('base64'), key);
    assert.equal(cfg.dataDir, path.join(dir, 'data'));
    assert.equal(cfg.outboxes.length, 1);

    // An existing config file is never rewritten.
    const before = await fs.readFile(file, 'utf8');
    const again = io();
    assert.equal(await init({ config: file, force: true }, again), 0);
    assert.ok(again.out().includes('already set'));
    assert.equal(await fs.readFile(file, 'utf8'), before);
  });

  test('--config of an existing config with a keyFile creates that file', async () => {
    const dir = await tempDir();
    const cfg = baseConfig();
    cfg.security = { keyFile: 'tdxfer.key' };
    const file = await writeConfig(dir, cfg);
    const t = io();
    assert.equal(await init({ config: file }, t), 0);
    const key = printedKey(t.out());
    assert.equal((await loadConfig(file)).security.key.toString('base64'), key);
  });

  test('an invalid config is reported, not acted on', async () => {
    const dir = await tempDir();
    const file = await writeConfig(dir, { security: { keyFile: 'k', key: KEY } });
    const t = io();
    assert.equal(await init({ config: file }, t), 2);
    assert.match(t.err(), /`security\.keyFile` is set together with `security\.key`/);
    assert.deepEqual((await fs.readdir(dir)).sort(), ['config.json']);
  });
});

describe('commander wiring', () => {
  function program(t: ReturnType<typeof io>, codes: number[]): Command {
    const p = new Command('tdxfer').exitOverride().configureOutput({ writeOut: (s) => void t.stdout.write(s), writeErr: (s) => void t.stderr.write(s) });
    registerConfigCommands(p, { stdout: t.stdout, stderr: t.stderr, env: t.env, setExitCode: (c) => void codes.push(c) });
    return p;
  }

  test('config check --config FILE and init --data-dir DIR run the handlers', async () => {
    const dir = await tempDir();
    const file = await writeConfig(dir, baseConfig());
    const t = io();
    const codes: number[] = [];
    await program(t, codes).parseAsync(['node', 'tdxfer', 'config', 'check', '--config', file]);
    await program(t, codes).parseAsync(['node', 'tdxfer', 'init', '--data-dir', path.join(dir, 'data')]);
    await program(t, codes).parseAsync(['node', 'tdxfer', 'init', '-d', path.join(dir, 'data')]);
    assert.deepEqual(codes, [0, 0, 1]);
    assert.ok(t.out().includes('Config OK.'));
    printedKey(t.out());
  });

  test('a --config given on the parent program is honoured', async () => {
    const dir = await tempDir();
    const file = await writeConfig(dir, { listen: { port: 'x' } });
    const t = io();
    const codes: number[] = [];
    const p = program(t, codes).option('-c, --config <file>');
    await p.parseAsync(['node', 'tdxfer', '--config', file, 'config', 'show']);
    assert.deepEqual(codes, [2]);
    assert.ok(t.err().includes('`listen.port`'));
  });

  test('--help describes each command', async () => {
    for (const args of [['config', 'check'], ['config', 'show'], ['init']]) {
      const t = io();
      await assert.rejects(program(t, []).parseAsync(['node', 'tdxfer', ...args, '--help']), { code: 'commander.helpDisplayed' });
      assert.match(t.out(), /--config <file>/);
      if (args[0] === 'init') assert.match(t.out(), /--data-dir <dir>[\s\S]*--force/);
    }
  });
});
