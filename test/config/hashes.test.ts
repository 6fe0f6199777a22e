/** security.hashes: the file hashes an agent offers and accepts (protocol v1.1, PROTOCOL.md 4.4). */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { loadConfig } from '../../src/config/index.js';
import { baseConfig, rejectsConfig, tempDir, writeConfig } from './_helpers.js';

test('default: XXH3-128 preferred, SHA-256 kept', async () => {
  const cfg = await loadConfig(await writeConfig(await tempDir(), baseConfig()));
  assert.deepEqual(cfg.security.hashes, ['xxh3-128', 'sha256']);
});

test('["sha256"] forces SHA-256 (an auditor); the order is kept', async () => {
  for (const hashes of [['sha256'], ['sha256', 'xxh3-128']]) {
    const raw = baseConfig();
    raw.security.hashes = hashes;
    const cfg = await loadConfig(await writeConfig(await tempDir(), raw));
    assert.deepEqual(cfg.security.hashes, hashes);
  }
});

test('a list without "sha256", an unknown name, an empty list or a repeat is refused, naming the field and the fix', async () => {
  const withHashes = async (hashes: unknown): Promise<string> => {
    const raw = baseConfig();
    raw.security.hashes = hashes;
    return writeConfig(await tempDir(), raw);
  };
  await rejectsConfig(loadConfig(await withHashes(['xxh3-128'])), 'security.hashes', ['without "sha256"', '["xxh3-128", "sha256"]', '["sha256"]']);
  await rejectsConfig(loadConfig(await withHashes(['md5', 'sha256'])), 'security.hashes[0]', ['"xxh3-128" or "sha256"']);
  await rejectsConfig(loadConfig(await withHashes([])), 'security.hashes', ['that includes "sha256"']);
  await rejectsConfig(loadConfig(await withHashes(['sha256', 'sha256'])), 'security.hashes', ['that includes "sha256"']);
});
