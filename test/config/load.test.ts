import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import envPaths from 'env-paths';
import { DEFAULTS, loadConfig, prepareConfig, resolveConfigPath } from '../../src/config/index.js';
import { KEY, baseConfig, rejectsConfig, tempDir, writeConfig } from './_helpers.js';

describe('the user file is never modified', () => {
  async function assertUntouched(dir: string, text: string, run: (file: string) => Promise<unknown>): Promise<void> {
    const file = await writeConfig(dir, text);
    const old = new Date(Date.now() - 60_000);
    await fs.utimes(file, old, old);
    const before = await fs.stat(file);
    const entriesBefore = (await fs.readdir(dir)).sort();
    await run(file).catch(() => undefined);
    const after = await fs.stat(file);
    assert.equal(await fs.readFile(file, 'utf8'), text);
    assert.equal(after.mtimeMs, before.mtimeMs);
    assert.equal(after.ino, before.ino, 'file replaced (atomic rewrite)');
    assert.deepEqual((await fs.readdir(dir)).sort(), entriesBefore, 'files appeared next to the config');
  }

  test('valid file with most fields left to defaults', async () => {
    const dir = await tempDir();
    // Unusual formatting on purpose: any rewrite would change it.
    const text = `{"name":"render-1",   "inboxes":[{"name":"renders","path":"in"}],\n"security":{"key":"${KEY}"}}`;
    await assertUntouched(dir, text, async (file) => {
      const cfg = await loadConfig(file, { env: { TDXFER_DATA_DIR: path.join(dir, 'data') } });
      assert.equal(cfg.listen.port, 7770);
    });
  });

  test('invalid file (schema error) is neither wiped nor fixed', async () => {
    const dir = await tempDir();
    await assertUntouched(dir, '{ "listen": { "port": "abc" } }', (file) => loadConfig(file));
  });

  test('file with a syntax error is left as it is', async () => {
    const dir = await tempDir();
    await assertUntouched(dir, '{ "name": "x", }', (file) => loadConfig(file));
  });
});

describe('reading', () => {
  test('missing file is an error and nothing is created', async () => {
    const dir = await tempDir();
    const file = path.join(dir, 'sub', 'config.json');
    const err = await rejectsConfig(loadConfig(file), '', [`config file not found: ${file}`, 'pass another --config']);
    assert.ok(!err.message.includes('undefined'));
    assert.deepEqual(await fs.readdir(dir), [], 'conf must not create the folder');
  });

  test('a folder instead of a file', async () => {
    const dir = await tempDir();
    await rejectsConfig(loadConfig(dir), '', ['not a regular file']);
  });

  test('JSON syntax error names the file, line and column and shows the spot', async () => {
    const dir = await tempDir();
    const file = await writeConfig(dir, '{\n  "name": "render-1"\n  "listen": {}\n}\n');
    const err = await rejectsConfig(loadConfig(file), '', [`Config error in ${file}: invalid JSON at line 3, column 3`, '"listen": {}', '^']);
    assert.ok(err.message.includes("Expected ',' or '}'"), err.message);
  });

  test('trailing comma and comments get a hint', async () => {
    const dir = await tempDir();
    const trailing = await writeConfig(dir, '{\n  "name": "a",\n}', 'a.json');
    await rejectsConfig(loadConfig(trailing), '', ['line 3, column 1', 'no trailing comma']);
    const commented = await writeConfig(dir, '{\n  // the agent\n  "name": "a"\n}', 'b.json');
    await rejectsConfig(loadConfig(commented), '', ['line 2, column 3', 'no comments', '"$comment"']);
  });

  test('a Windows path with single backslashes gets the escaping hint', async () => {
    const dir = await tempDir();
    const file = await writeConfig(dir, '{\n  "name": "a",\n  "inboxes": [{ "name": "renders", "path": "D:\\show\\inbox" }]\n}', 'win.json');
    await rejectsConfig(loadConfig(file), '', ['line 3', 'Bad escaped character', '"D:/show/inbox"', '"D:\\\\show\\\\inbox"']);
  });

  test('empty file and a UTF-8 BOM', async () => {
    const dir = await tempDir();
    await rejectsConfig(loadConfig(await writeConfig(dir, '  \n', 'empty.json')), '', ['the file is empty']);
    const bom = await writeConfig(dir, `\uFEFF${JSON.stringify(baseConfig())}`, 'bom.json');
    assert.equal((await loadConfig(bom, { env: { TDXFER_DATA_DIR: dir } })).name, 'render-1');
  });

  test('a config file name without .json works too', async () => {
    const dir = await tempDir();
    const file = await writeConfig(dir, baseConfig(), 'tdxfer.conf');
    assert.equal((await loadConfig(file)).configFile, file);
  });

  test('resolveConfigPath: --config, then TDXFER_CONFIG, then null', () => {
    assert.equal(resolveConfigPath('a.json', { TDXFER_CONFIG: '/x/b.json' }), path.resolve('a.json'));
    assert.equal(resolveConfigPath(undefined, { TDXFER_CONFIG: '/x/b.json' }), path.resolve('/x/b.json'));
    assert.equal(resolveConfigPath(undefined, {}), null);
    assert.equal(resolveConfigPath('', { TDXFER_CONFIG: '' }), null);
  });
});

describe('resolving', () => {
  test('relative paths resolve against the config file folder', async () => {
    const dir = await tempDir();
    const cfg = baseConfig();
    cfg.dataDir = 'state';
    cfg.inboxes[0].staging = '../stage';
    cfg.log = { file: 'logs/agent.jsonl' };
    delete cfg.security.key;
    cfg.security.keyFile = 'secret/tdxfer.key';
    const file = await writeConfig(await fs.mkdir(path.join(dir, 'etc'), { recursive: true }).then(() => path.join(dir, 'etc')), cfg);
    await fs.mkdir(path.join(dir, 'etc', 'secret'));
    await fs.writeFile(path.join(dir, 'etc', 'secret', 'tdxfer.key'), KEY, { mode: 0o600 });
    const loaded = await loadConfig(file);
    const etc = path.join(dir, 'etc');
    assert.equal(loaded.dataDir, path.join(etc, 'state'));
    assert.equal(loaded.inboxes[0]!.path, path.join(etc, 'in'));
    assert.equal(loaded.inboxes[0]!.staging, path.join(dir, 'stage'));
    assert.equal(loaded.outboxes[0]!.path, path.join(etc, 'out'));
    assert.equal(loaded.log.file, path.join(etc, 'logs', 'agent.jsonl'));
    assert.equal(loaded.security.keySource, path.join(etc, 'secret', 'tdxfer.key'));
    assert.deepEqual(loaded.security.key, Buffer.from(KEY, 'base64'));
  });

  test('"~/" means the home folder', async () => {
    const dir = await tempDir();
    const cfg = baseConfig();
    cfg.inboxes[0].path = '~/tdxfer-inbox';
    const loaded = await loadConfig(await writeConfig(dir, cfg));
    assert.equal(loaded.inboxes[0]!.path, path.join(os.homedir(), 'tdxfer-inbox'));
  });

  test('defaults fill every field the file leaves out', async () => {
    const dir = await tempDir();
    const loaded = await loadConfig(await writeConfig(dir, baseConfig()), { env: { TDXFER_DATA_DIR: path.join(dir, 'data') } });
    assert.equal(loaded.dataDir, path.join(dir, 'data'));
    assert.deepEqual(loaded.listen, { host: '0.0.0.0', port: 7770 });
    assert.deepEqual(loaded.inboxes, [{ name: 'renders', path: path.join(dir, 'in'), onCollision: 'overwrite', heldMaxSeconds: 600, staging: path.join(dir, '.in.tdxfer-staging') }]);
    assert.deepEqual(loaded.outboxes, [
      { path: path.join(dir, 'out'), to: [{ peer: 'playback-1', inbox: 'renders', flatten: false }], include: [], exclude: [], after: 'archive', settleMs: 1000 },
    ]);
    assert.deepEqual(loaded.peers, [{ name: 'playback-1', host: '127.0.0.1', port: 7770, protocol: 'tdxfer', maxBytesPerSecond: 0 }]);
    assert.deepEqual(loaded.discovery, { enabled: false, interfaces: [] });
    assert.equal(loaded.security.encrypt, true);
    assert.equal(loaded.security.keySource, 'config');
    assert.deepEqual(loaded.legacy, { listen: null, inbox: null, allow: [], maxFileBytes: 64 * 1024 ** 3 });
    assert.deepEqual(loaded.status, { enabled: true, host: '127.0.0.1', port: 7771, token: null });
    assert.deepEqual(loaded.osc, { targets: [], heartbeatSeconds: 5, progress: false });
    assert.deepEqual(loaded.limits, { maxFileBytes: 2 ** 40, maxConnections: 64, maxConnectionsPerPeer: 8, idleTimeoutMs: 30_000, handshakeTimeoutMs: 10_000, reserveBytes: 64 * 2 ** 20, eagerMaxBytes: 2 ** 20, maxIncomingBytesPerSecond: 0 });
    assert.deepEqual(loaded.transfer, { window: 32, connections: 1, retryInitialMs: 500, retryMaxMs: 30_000, chunkBytes: 1024 ** 2, maxBytesPerSecond: 0, readBufferBytes: 32 * 1024 ** 2, eagerBufferBytes: 8 * 1024 ** 2, fanoutLagBytes: 16 * 1024 ** 2, peerMaxBytesPerSecond: {} });
    assert.deepEqual(loaded.log, { level: 'info', file: null, maxSizeBytes: 10 * 1024 * 1024, maxFiles: 10 });
  });

  test('networkDrive on an inbox and an outbox is passed on (no synchronous file calls there)', async () => {
    const dir = await tempDir();
    const cfg = baseConfig();
    cfg.inboxes[0].networkDrive = true;
    cfg.outboxes[0].networkDrive = true;
    const loaded = await loadConfig(await writeConfig(dir, cfg), { env: { TDXFER_DATA_DIR: path.join(dir, 'data') } });
    assert.equal(loaded.inboxes[0]!.networkDrive, true);
    assert.equal(loaded.outboxes[0]!.networkDrive, true);
    const bad = baseConfig();
    bad.outboxes[0].networkDrive = 'yes';
    await assert.rejects(loadConfig(await writeConfig(dir, bad), {}), /outboxes\[0\]\.networkDrive/);
  });

  test('with a config file, no inboxes/outboxes means none; name defaults to the host name', async () => {
    const dir = await tempDir();
    const loaded = await loadConfig(await writeConfig(dir, { security: { key: KEY } }), { hostname: 'Render PC #1' });
    assert.deepEqual(loaded.inboxes, []);
    assert.deepEqual(loaded.outboxes, []);
    assert.equal(loaded.name, 'Render-PC--1');
  });

  test('zero-config: the agent sends its own outbox to its own inbox', async () => {
    const dir = await tempDir();
    const dataDir = path.join(dir, 'data');
    const cfg = await loadConfig(null, { env: { TDXFER_DATA_DIR: dataDir }, hostname: 'stage-pc', createKey: true });
    assert.equal(cfg.configFile, null);
    assert.equal(cfg.name, 'stage-pc');
    assert.equal(cfg.dataDir, dataDir);
    assert.deepEqual(cfg.inboxes, [{ name: 'default', path: path.join(dataDir, 'inbox'), onCollision: 'overwrite', heldMaxSeconds: 600, staging: path.join(dataDir, '.inbox.tdxfer-staging') }]);
    assert.deepEqual(cfg.outboxes, [
      { path: path.join(dataDir, 'outbox'), to: [{ peer: 'stage-pc', inbox: 'default', flatten: false }], include: [], exclude: [], after: 'archive', settleMs: 1000 },
    ]);
    assert.equal(cfg.security.keySource, `generated:${path.join(dataDir, 'key')}`);
    assert.equal(cfg.security.key.length, 32);
    assert.deepEqual(cfg.listen, DEFAULTS.listen);
  });

  test('zero-config without TDXFER_DATA_DIR uses the per-user data folder, and creates nothing without createKey', async () => {
    const expected = envPaths('tdxfer', { suffix: '' }).data;
    const { config, key } = await prepareConfig(null, { env: {} });
    assert.equal(config.dataDir, expected);
    assert.deepEqual(key, { kind: 'file', path: path.join(expected, 'key'), explicit: false });
    const dir = await tempDir();
    const dataDir = path.join(dir, 'data');
    await rejectsConfig(loadConfig(null, { env: { TDXFER_DATA_DIR: dataDir } }), 'security.keyFile', [path.join(dataDir, 'key'), 'does not exist yet', 'tdxfer init']);
    assert.deepEqual(await fs.readdir(dir), []);
  });
});
