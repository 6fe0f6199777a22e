import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import path from 'node:path';
import { memoryLogger } from '../../src/log.js';
import { ConfigErrors } from '../../src/config/messages.js';
import { decodeKey, encodeKey, loadConfig, obtainKey, writeKeyFile } from '../../src/config/index.js';
import { KEY, baseConfig, rejectsConfig, tempDir, writeConfig } from './_helpers.js';

const posix = process.platform !== 'win32';

describe('installation key', () => {
  test('generated once on first start (0600), the same key on every later load', async () => {
    const dir = await tempDir();
    const env = { TDXFER_DATA_DIR: path.join(dir, 'data') };
    const log = memoryLogger();
    const first = await loadConfig(null, { env, createKey: true, log });
    const keyFile = path.join(dir, 'data', 'key');
    assert.equal(first.security.keySource, `generated:${keyFile}`);
    assert.equal(first.security.key.length, 32);
    const text = await fs.readFile(keyFile, 'utf8');
    assert.equal(text, `${first.security.key.toString('base64')}\n`);
    if (posix) assert.equal((await fs.stat(keyFile)).mode & 0o777, 0o600);
    assert.deepEqual(await fs.readdir(path.join(dir, 'data')), ['key'], 'no temp files left behind');

    const second = await loadConfig(null, { env, createKey: true, log });
    assert.equal(second.security.keySource, keyFile);
    assert.deepEqual(second.security.key, first.security.key);
    // Never logged.
    const b64 = first.security.key.toString('base64');
    assert.ok(!log.records.some((r) => JSON.stringify(r).includes(b64)));
  });

  test('obtainKey reports created only for the call that made the file', async () => {
    const dir = await tempDir();
    const spec = { kind: 'file' as const, path: path.join(dir, 'k'), explicit: false };
    const make = new ConfigErrors('test');
    const a = await obtainKey(spec, { createKey: true, make });
    const b = await obtainKey(spec, { createKey: true, make });
    assert.deepEqual([a.created, b.created], [true, false]);
    assert.deepEqual(a.key, b.key);
  });

  test('two concurrent first starts end with one key', async () => {
    const dir = await tempDir();
    const file = path.join(dir, 'key');
    const results = await Promise.all([writeKeyFile(file), writeKeyFile(file), writeKeyFile(file)]);
    assert.equal(results.filter((r) => r.created).length, 1);
    const onDisk = decodeKey(await fs.readFile(file, 'utf8'));
    for (const r of results) assert.deepEqual(r.key, onDisk);
  });

  test('keyFile: relative to the config folder, read as base64, whitespace ignored', async () => {
    const dir = await tempDir();
    const cfg = baseConfig();
    cfg.security = { keyFile: 'keys/tdxfer.key' };
    const file = await writeConfig(dir, cfg);
    await fs.mkdir(path.join(dir, 'keys'));
    await fs.writeFile(path.join(dir, 'keys', 'tdxfer.key'), `  ${KEY}\r\n`, { mode: 0o600 });
    const loaded = await loadConfig(file, { createKey: true });
    assert.deepEqual(loaded.security.key, Buffer.from(KEY, 'base64'));
    assert.equal(loaded.security.keySource, path.join(dir, 'keys', 'tdxfer.key'));
  });

  test('a missing keyFile is an error, never silently replaced by a new key', async () => {
    const dir = await tempDir();
    const cfg = baseConfig();
    cfg.security = { keyFile: 'tdxfer.key' };
    const file = await writeConfig(dir, cfg);
    await rejectsConfig(loadConfig(file, { createKey: true }), 'security.keyFile', [path.join(dir, 'tdxfer.key'), 'does not exist']);
    await assert.rejects(fs.stat(path.join(dir, 'tdxfer.key')));
  });

  test('key file with wrong content names security.keyFile and the file', async () => {
    const dir = await tempDir();
    const cfg = baseConfig();
    cfg.security = { keyFile: 'tdxfer.key' };
    const file = await writeConfig(dir, cfg);
    const keyFile = path.join(dir, 'tdxfer.key');
    await fs.writeFile(keyFile, Buffer.alloc(31).toString('base64'), { mode: 0o600 });
    await rejectsConfig(loadConfig(file), 'security.keyFile', [keyFile, 'decodes to 31 bytes, not 32', 'openssl rand -base64 32']);
    await fs.writeFile(keyFile, 'hello world');
    await rejectsConfig(loadConfig(file), 'security.keyFile', [keyFile, 'is not base64 text']);
  });

  test('a key file readable by others gives a warning, without the key', { skip: !posix }, async () => {
    const dir = await tempDir();
    const cfg = baseConfig();
    cfg.security = { keyFile: 'tdxfer.key' };
    const file = await writeConfig(dir, cfg);
    const keyFile = path.join(dir, 'tdxfer.key');
    await fs.writeFile(keyFile, KEY);
    await fs.chmod(keyFile, 0o644);
    const log = memoryLogger();
    await loadConfig(file, { log });
    const warns = log.records.filter((r) => r.level === 'warn');
    assert.equal(warns.length, 1);
    assert.match(warns[0]!.msg, /readable by other users \(mode 644\).*chmod 600/);
    assert.ok(!JSON.stringify(warns).includes(KEY));
    await fs.chmod(keyFile, 0o600);
    const quiet = memoryLogger();
    await loadConfig(file, { log: quiet });
    assert.equal(quiet.records.length, 0);
  });

  test('decodeKey accepts base64 and base64url of 32 bytes only', () => {
    const raw = Buffer.from(Array.from({ length: 32 }, (_, i) => 250 - i));
    assert.deepEqual(decodeKey(encodeKey(raw)), raw);
    assert.deepEqual(decodeKey(raw.toString('base64url')), raw);
    assert.deepEqual(decodeKey(''), { problem: 'is empty' });
    assert.deepEqual(decodeKey(Buffer.alloc(33).toString('base64')), { problem: 'decodes to 33 bytes, not 32' });
    assert.deepEqual(decodeKey(`${KEY}!`), { problem: 'is not base64 text' });
  });

  test('writeKeyFile with overwrite replaces the key', async () => {
    const dir = await tempDir();
    const file = path.join(dir, 'key');
    const a = await writeKeyFile(file);
    const b = await writeKeyFile(file, { overwrite: true });
    assert.equal(b.created, true);
    assert.notDeepEqual(a.key, b.key);
    assert.deepEqual(decodeKey(await fs.readFile(file, 'utf8')), b.key);
  });
});
