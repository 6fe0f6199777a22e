import { test } from 'node:test';
import assert from 'node:assert/strict';
import { loadConfig } from '../../src/config/index.js';
import { ConfigError } from '../../src/errors.js';
import { ConfigErrors } from '../../src/config/messages.js';
import { CONFIG_VERSION, migrateConfig } from '../../src/config/migrate.js';
import { baseConfig, rejectsConfig, tempDir, writeConfig } from './_helpers.js';

const make = new ConfigErrors('config.json');

test('migrateConfig: a file without version, or at the current one, is returned as is', () => {
  const a = { name: 'a' };
  assert.equal(migrateConfig(a, make), a);
  const b = { version: CONFIG_VERSION, name: 'b' };
  assert.equal(migrateConfig(b, make), b);
});

test('migrateConfig: non-objects and malformed versions are left for the schema to name', () => {
  for (const d of [null, 3, 'x', [1], { version: 'one' }, { version: 0 }, { version: 1.5 }]) assert.equal(migrateConfig(d, make), d);
});

test('migrateConfig: older versions go through every step in order, and end at the current version', () => {
  const seen: number[] = [];
  const steps = {
    1: (c: Record<string, unknown>) => (seen.push(1), { ...c, renamed: c.old, old: undefined }),
    2: (c: Record<string, unknown>) => (seen.push(2), { ...c, added: true }),
  };
  const out = migrateConfig({ version: 1, old: 'x' }, make, 3, steps);
  assert.deepEqual(seen, [1, 2]);
  assert.deepEqual(out, { version: 3, renamed: 'x', old: undefined, added: true });
});

test('migrateConfig: a missing step is a bug, reported as such', () => {
  assert.throws(() => migrateConfig({ version: 1 }, make, 2, {}), /migration from version 1 to 2 is missing/);
});

test('migrateConfig: a version newer than this build is a clear field error', () => {
  assert.throws(
    () => migrateConfig({ version: CONFIG_VERSION + 1 }, make),
    (err: unknown) =>
      err instanceof ConfigError &&
      err.field === 'version' &&
      err.message.includes(`\`version\` is ${CONFIG_VERSION + 1}, but this tdxfer reads config versions up to ${CONFIG_VERSION}`) &&
      err.message.includes('Upgrade tdxfer'),
  );
});

test('loadConfig: "version" is accepted at the current version and refused from the future, naming the field', async () => {
  const dir = await tempDir();
  const ok = await writeConfig(dir, { ...baseConfig(), version: CONFIG_VERSION }, 'ok.json');
  await loadConfig(ok);
  const future = await writeConfig(dir, { ...baseConfig(), version: CONFIG_VERSION + 7 }, 'future.json');
  await rejectsConfig(loadConfig(future), 'version', ['newer tdxfer', 'Upgrade tdxfer']);
  const bad = await writeConfig(dir, { ...baseConfig(), version: 'two' }, 'bad.json');
  await rejectsConfig(loadConfig(bad), 'version', ['positive integer']);
});
