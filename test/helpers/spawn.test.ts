/** retryUnknownSpawn (helpers/spawn.ts): a wine allowance that must not hide other errors. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { retryUnknownSpawn, type SpawnFn } from './spawn.js';

const unknown = (): Error => Object.assign(new Error('spawn UNKNOWN'), { code: 'UNKNOWN', errno: -4094, syscall: 'spawn' });

test('UNKNOWN thrown at once is tried again, each retry said, and the child is the real one', async () => {
  let calls = 0;
  const lines: string[] = [];
  const flaky: SpawnFn = (cmd, args, opts) => {
    calls++;
    if (calls <= 2) throw unknown();
    return spawn(cmd, args, opts);
  };
  const child = retryUnknownSpawn(flaky, 5, (l) => lines.push(l), 1)(process.execPath, ['-e', 'process.exit(7)'], { stdio: 'ignore' });
  const [code] = (await once(child, 'exit')) as [number];
  assert.equal(code, 7);
  assert.equal(calls, 3);
  assert.equal(lines.length, 2);
  assert.match(lines[0]!, /threw UNKNOWN \(try 1 of 5/);
});

test('after the last try the UNKNOWN error is thrown; any other error is thrown at once', () => {
  let calls = 0;
  const always: SpawnFn = () => {
    calls++;
    throw unknown();
  };
  assert.throws(() => retryUnknownSpawn(always, 3, () => undefined, 1)('x', [], {}), /spawn UNKNOWN/);
  assert.equal(calls, 3);

  calls = 0;
  const other: SpawnFn = () => {
    calls++;
    throw Object.assign(new Error('spawn EINVAL'), { code: 'EINVAL' });
  };
  assert.throws(() => retryUnknownSpawn(other, 5, () => undefined, 1)('x', [], {}), /EINVAL/);
  assert.equal(calls, 1);
});
