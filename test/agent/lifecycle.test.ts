/** agent/lifecycle.ts: start in order, stop in reverse, each stop bounded, a failed start undone. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { memoryLogger } from '../../src/log.js';
import { Lifecycle } from '../../src/agent/lifecycle.js';

test('parts start in order and stop in reverse; stop() is idempotent', async () => {
  const seen: string[] = [];
  const lc = new Lifecycle(memoryLogger());
  await lc.startAll(['a', 'b', 'c'].map((name) => ({ name, start: () => (seen.push(`start ${name}`), () => void seen.push(`stop ${name}`)) })));
  await Promise.all([lc.stop(), lc.stop()]);
  await lc.stop();
  assert.deepEqual(seen, ['start a', 'start b', 'start c', 'stop c', 'stop b', 'stop a']);
});

test('a part that fails to start: the started ones are stopped in reverse, the error is rethrown', async () => {
  const seen: string[] = [];
  const lc = new Lifecycle(memoryLogger());
  const part = (name: string) => ({ name, start: async () => (seen.push(`start ${name}`), () => void seen.push(`stop ${name}`)) });
  await assert.rejects(
    lc.startAll([part('a'), part('b'), { name: 'bad', start: () => Promise.reject(new Error('boom')) }, part('never')]),
    /boom/,
  );
  assert.deepEqual(seen, ['start a', 'start b', 'stop b', 'stop a']);
  await assert.rejects(lc.start(part('late')), /already stopped/);
});

test('a stop that throws or hangs does not keep the others from stopping', async () => {
  const seen: string[] = [];
  const log = memoryLogger();
  const lc = new Lifecycle(log);
  await lc.startAll([
    { name: 'first', start: () => () => void seen.push('first') },
    { name: 'hangs', start: () => () => new Promise<void>(() => undefined) },
    { name: 'throws', start: () => () => Promise.reject(new Error('nope')) },
  ]);
  await lc.stop(50);
  assert.deepEqual(seen, ['first']);
  assert.ok(log.records.some((r) => r.level === 'warn' && r.msg.includes('stopping hangs')), 'the hanging stop is logged');
  assert.ok(log.records.some((r) => r.level === 'warn' && r.msg.includes('stopping throws: nope')), 'the failed stop is logged');
});
