import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { loadConfig } from '../../src/config/index.js';
import { baseConfig, rejectsConfig, tempDir, writeConfig } from '../config/_helpers.js';

async function load(cfg: unknown): Promise<ReturnType<typeof loadConfig>> {
  const dir = await tempDir();
  const file = await writeConfig(dir, cfg);
  return loadConfig(file, { env: { TDXFER_DATA_DIR: dir }, hostname: 'test-host' });
}

describe('bandwidth limit config', () => {
  test('defaults: unlimited everywhere', async () => {
    const cfg = await load(baseConfig());
    assert.equal(cfg.transfer.maxBytesPerSecond, 0);
    assert.equal(cfg.limits.maxIncomingBytesPerSecond, 0);
    assert.deepEqual(cfg.transfer.peerMaxBytesPerSecond, {});
    assert.equal(cfg.peers[0]!.maxBytesPerSecond, 0);
  });

  test('the three fields and the by-name map are read', async () => {
    const raw = baseConfig();
    raw.transfer = { maxBytesPerSecond: 20_000_000, peerMaxBytesPerSecond: { 'wall-3': 1_000_000 } };
    raw.limits = { maxIncomingBytesPerSecond: 5_000_000 };
    raw.peers[0].maxBytesPerSecond = 2_000_000;
    const cfg = await load(raw);
    assert.equal(cfg.transfer.maxBytesPerSecond, 20_000_000);
    assert.equal(cfg.limits.maxIncomingBytesPerSecond, 5_000_000);
    assert.deepEqual(cfg.transfer.peerMaxBytesPerSecond, { 'wall-3': 1_000_000 });
    assert.equal(cfg.peers[0]!.maxBytesPerSecond, 2_000_000);
  });

  test('errors name the field', async () => {
    let raw = baseConfig();
    raw.transfer = { maxBytesPerSecond: '20MB/s' };
    await rejectsConfig(load(raw), 'transfer.maxBytesPerSecond', ['bytes per second', 'got "20MB/s" (string)']);
    raw = baseConfig();
    raw.peers[0].maxBytesPerSecond = -1;
    await rejectsConfig(load(raw), 'peers[0].maxBytesPerSecond', ['0 for unlimited', 'got -1']);
    raw = baseConfig();
    raw.limits = { maxIncomingBytesPerSecond: 1.5 };
    await rejectsConfig(load(raw), 'limits.maxIncomingBytesPerSecond', ['got 1.5']);
    raw = baseConfig();
    raw.transfer = { peerMaxBytesPerSecond: { 'wall-3': 'fast' } };
    await rejectsConfig(load(raw), 'transfer.peerMaxBytesPerSecond["wall-3"]', ['got "fast"']);
  });

  test('one peer limited twice is an error naming both places', async () => {
    const raw = baseConfig();
    const name = raw.peers[0].name as string;
    raw.peers[0].maxBytesPerSecond = 2_000_000;
    raw.transfer = { peerMaxBytesPerSecond: { [name]: 1_000_000 } };
    await rejectsConfig(load(raw), `transfer.peerMaxBytesPerSecond[${JSON.stringify(name)}]`, ['peers[0].maxBytesPerSecond', 'keep one']);
  });
});
