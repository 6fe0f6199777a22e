/**
 * The starter config (`tdxfer init --config FILE`, scripts/install.sh): minimal and safe,
 * and accepted by the real loader. The CLI test runs the built tdxfer on real files.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { STARTER_INBOX, starterConfig } from '../../src/cli/starter.js';
import { loadConfig } from '../../src/config/index.js';
import { CONFIG_VERSION } from '../../src/config/migrate.js';
import { KEY, tempDir } from './_helpers.js';

const MAIN = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../src/cli/main.js');

const under = (dir: string, p: string): boolean => !path.relative(dir, p).startsWith('..') && !path.isAbsolute(path.relative(dir, p));

/** What makes a starter safe, checked on the loaded config and on the raw JSON. */
async function assertSafeStarter(file: string, dataDir: string, folder: string): Promise<void> {
  const raw = JSON.parse(await fs.readFile(file, 'utf8')) as Record<string, unknown>;
  for (const k of ['legacy', 'log', 'osc', 'listen']) assert.equal(raw[k], undefined, `starter sets ${k}`);
  assert.doesNotMatch(JSON.stringify(raw), /\/show\/|onReceive|render-1|playback-1"\s*[,}]/);
  const cfg = await loadConfig(file);
  assert.equal(cfg.dataDir, dataDir);
  assert.equal(cfg.legacy.listen, null, 'no legacy listener');
  assert.equal(cfg.log.file, null, 'no log file');
  assert.equal(cfg.discovery.enabled, false);
  assert.equal(cfg.status.host, '127.0.0.1');
  assert.equal(cfg.security.encrypt, true);
  assert.equal(cfg.inboxes.length, 1);
  assert.equal(cfg.outboxes.length, 1);
  assert.equal(cfg.inboxes[0]!.onReceive, undefined, 'no hook');
  assert.equal(cfg.inboxes[0]!.path, path.join(folder, 'inbox'));
  assert.equal(cfg.outboxes[0]!.path, path.join(folder, 'outbox'));
  assert.ok(under(folder, cfg.inboxes[0]!.staging), cfg.inboxes[0]!.staging);
  assert.deepEqual(cfg.outboxes[0]!.to.map((r) => [r.peer, r.inbox]), [[cfg.name, STARTER_INBOX]]);
}

describe('starter config', () => {
  test('starterConfig(): one inbox and one outbox under the folder, loads with the real loader', async () => {
    const dir = await tempDir();
    const dataDir = path.join(dir, 'data');
    const file = path.join(dir, 'config.json');
    await fs.writeFile(file, JSON.stringify(starterConfig({ name: 'box-1', dataDir, key: KEY })));
    await assertSafeStarter(file, dataDir, dataDir);
    const folder = path.join(dir, 'srv');
    await fs.writeFile(file, JSON.stringify(starterConfig({ name: 'box-1', dataDir, folder, key: KEY })));
    await assertSafeStarter(file, dataDir, folder);
    assert.equal((await loadConfig(file)).security.key.toString('base64'), KEY);
    // A file without a version would be read as whatever version a later tdxfer knows, skipping its migration.
    assert.equal(JSON.parse(await fs.readFile(file, 'utf8')).version, CONFIG_VERSION);
  });

  test('the built `tdxfer init --config FILE` writes the safe starter (data folder from --data-dir, $TDXFER_DATA_DIR, --folder)', async () => {
    const dir = await tempDir();
    const env = { ...process.env, TDXFER_DATA_DIR: path.join(dir, 'envdata') };
    const a = path.join(dir, 'a.json');
    let r = spawnSync(process.execPath, [MAIN, 'init', '--config', a], { env, encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    await assertSafeStarter(a, path.join(dir, 'envdata'), path.join(dir, 'envdata'));
    const b = path.join(dir, 'b.json');
    r = spawnSync(process.execPath, [MAIN, 'init', '--config', b, '--data-dir', path.join(dir, 'd'), '--folder', path.join(dir, 'srv')], { env, encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /Wrote a starter config/);
    await assertSafeStarter(b, path.join(dir, 'd'), path.join(dir, 'srv'));
    // config check accepts it as is.
    r = spawnSync(process.execPath, [MAIN, 'config', 'check', '--config', b], { env, encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    assert.doesNotMatch(r.stdout, /legacy/);
  });
});
