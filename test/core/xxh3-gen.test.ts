/**
 * src/xxh3/xxh3-wasm.gen.ts is src/xxh3/xxh3.wat assembled ahead of time
 * (scripts/gen-xxh3-wasm.ts): it must be exactly what the generator makes of today's .wat.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { GENERATED_FILE, xxh3WasmSource } from '../../scripts/gen-xxh3-wasm.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');

test('xxh3-wasm.gen.ts is what the generator makes of the current xxh3.wat (regenerate: node dist/scripts/gen-xxh3-wasm.js)', async () => {
  assert.equal(readFileSync(path.join(ROOT, GENERATED_FILE), 'utf8'), await xxh3WasmSource(ROOT));
});
