/** Shared bits of the config tests: temp folders, config files, error assertions. */
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import path from 'node:path';
import { ConfigError } from '../../src/errors.js';
import { tempDirForFile } from '../helpers/tmp.js';

/** A fresh temp dir, removed when the test file ends. */
export const tempDir = (): Promise<string> => tempDirForFile('tdxfer-config-');

/** A valid 32-byte key, base64. */
export const KEY = Buffer.alloc(32, 7).toString('base64');

/** A valid two-machine config; tests change one thing at a time, into invalid shapes too. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- deliberately untyped: tests write invalid configs
export function baseConfig(): Record<string, any> {
  return {
    name: 'render-1',
    inboxes: [{ name: 'renders', path: 'in' }],
    outboxes: [{ path: 'out', to: [{ peer: 'playback-1', inbox: 'renders' }] }],
    peers: [{ name: 'playback-1', host: '127.0.0.1' }],
    security: { key: KEY },
  };
}

export async function writeConfig(dir: string, data: unknown, name = 'config.json'): Promise<string> {
  const file = path.join(dir, name);
  await fs.writeFile(file, typeof data === 'string' ? data : JSON.stringify(data, null, 2));
  return file;
}

/** Awaits `p`, asserts it rejects with a ConfigError for `field` whose message contains every string in `parts`. */
export async function rejectsConfig(p: Promise<unknown>, field: string, parts: string[]): Promise<ConfigError> {
  let caught: unknown;
  try {
    await p;
  } catch (err) {
    caught = err;
  }
  assert.ok(caught instanceof ConfigError, `expected a ConfigError, got ${String(caught)}`);
  assert.equal(caught.field, field, caught.message);
  for (const part of parts) assert.ok(caught.message.includes(part), `message lacks ${JSON.stringify(part)}:\n${caught.message}`);
  return caught;
}
