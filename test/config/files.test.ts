/** config/default.json and config/example.json stay in step with the code. */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import path from 'node:path';
import { loadConfig, prepareConfig } from '../../src/config/index.js';
import { topLevelProperties, type SchemaNode } from '../../src/config/schema.js';
import { packageRoot } from '../../src/cli/config-cmd.js';
import { KEY, tempDir } from './_helpers.js';

const root = packageRoot();
const defaultJson = path.join(root, 'config', 'default.json');
const exampleJson = path.join(root, 'config', 'example.json');

describe('config/default.json', () => {
  test('loads to the same resolved values as the built-in defaults (apart from the zero-config inbox/outbox)', async () => {
    const dir = await tempDir();
    const opts = { env: { TDXFER_DATA_DIR: path.join(dir, 'data') }, hostname: 'host-a' };
    const fromFile = await prepareConfig(defaultJson, opts);
    const builtIn = await prepareConfig(null, opts);
    // Documented in its $comment: with a config file, inboxes/outboxes are exactly those listed.
    assert.deepEqual(fromFile.config.inboxes, []);
    assert.deepEqual(fromFile.config.outboxes, []);
    assert.equal(builtIn.config.inboxes.length, 1);
    assert.equal(builtIn.config.outboxes.length, 1);
    const strip = (c: typeof builtIn.config) => ({ ...c, configFile: null, inboxes: [], outboxes: [] });
    assert.deepEqual(strip(fromFile.config), strip(builtIn.config));
    assert.deepEqual(fromFile.key, builtIn.key);
  });

  test('spells out every field of every section (except name, dataDir and the key itself)', async () => {
    const doc = JSON.parse(await fs.readFile(defaultJson, 'utf8')) as Record<string, unknown>;
    const leftOut = new Set(['$schema', '$comment', 'name', 'dataDir', 'security.key', 'security.keyFile']);
    const missing: string[] = [];
    for (const [key, node] of Object.entries(topLevelProperties)) {
      if (leftOut.has(key)) continue;
      if (!(key in doc)) missing.push(key);
      const props = (node as SchemaNode).properties as Record<string, unknown> | undefined;
      if (node.type !== 'object' || !props) continue;
      for (const sub of Object.keys(props)) {
        if (leftOut.has(`${key}.${sub}`) || sub === '$comment') continue;
        if (!(sub in ((doc[key] ?? {}) as object))) missing.push(`${key}.${sub}`);
      }
    }
    assert.deepEqual(missing, []);
  });
});

describe('config/example.json', () => {
  test('is valid and means what its comment says', async () => {
    const dir = await tempDir();
    const file = path.join(dir, 'config.json');
    await fs.copyFile(exampleJson, file);
    await fs.writeFile(path.join(dir, 'tdxfer.key'), `${KEY}\n`, { mode: 0o600 });
    const cfg = await loadConfig(file);
    assert.equal(cfg.name, 'render-1');
    assert.deepEqual(cfg.outboxes[0]!.to, [
      { peer: 'playback-1', inbox: 'renders', flatten: false },
      { peer: 'oldbox', flatten: true },
    ]);
    assert.equal(cfg.outboxes[0]!.after, 'archive');
    assert.deepEqual(
      cfg.peers.map((p) => [p.name, p.protocol]),
      [
        ['playback-1', 'tdxfer'],
        ['oldbox', 'legacy'],
      ],
    );
    assert.equal(cfg.legacy.inbox, 'cues');
    assert.equal(cfg.security.keySource, path.join(dir, 'tdxfer.key'));
    assert.equal(cfg.security.encrypt, true);
  });
});
