/**
 * src/config/validate.gen.ts is the config schema compiled ahead of time
 * (scripts/gen-config-validator.ts). It must be exactly what the generator makes of
 * today's schema.ts, and behave like ajv compiling the schema at run time.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Ajv2020 } from 'ajv/dist/2020.js';
import { GENERATED_FILE, configValidatorSource } from '../../scripts/gen-config-validator.js';
import { configSchema } from '../../src/config/schema.js';
import { AJV_OPTIONS } from '../../src/config/ajv-options.js';
import { validate } from '../../src/config/validate.gen.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');

test('validate.gen.ts is what the generator makes of the current schema (regenerate: node dist/scripts/gen-config-validator.js)', () => {
  assert.equal(readFileSync(path.join(ROOT, GENERATED_FILE), 'utf8'), configValidatorSource());
});

test('the generated validator accepts and rejects like ajv compiling the schema at run time, with the same errors', () => {
  const runtime = new Ajv2020(AJV_OPTIONS).compile(configSchema);
  const generated = validate as unknown as ((d: unknown) => boolean) & { errors?: unknown[] | null };
  const cases: unknown[] = [
    {},
    { name: 'render', peers: [{ name: 'playback', host: '10.0.0.2', port: 7070 }], outboxes: [{ path: 'out', to: ['playback/renders'] }] },
    { name: 'bad name!', peers: [{ name: 'playback', addresses: ['x'] }], listen: { port: 'abc' } },
    { version: 1, unknownField: true, limits: { idleTimeoutMs: -1 } },
    [],
    'text',
  ];
  for (const c of cases) {
    const ok = runtime(c);
    assert.equal(generated(c), ok, JSON.stringify(c));
    assert.deepEqual(JSON.parse(JSON.stringify(generated.errors ?? null)), JSON.parse(JSON.stringify(runtime.errors ?? null)), JSON.stringify(c));
  }
});
