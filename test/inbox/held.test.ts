import { test } from 'node:test';
import assert from 'node:assert/strict';
import { HeldTargets, heldLine, heldTooLong, LIKELY_HOLDER } from '../../src/inbox/held.js';

test('a held target is recorded once per episode, with its start time, until released', () => {
  const h = new HeldTargets();
  const f = { inbox: 'renders', rel: 'loop.mov', path: 'C:\\show\\renders\\loop.mov', code: 'EPERM' };
  assert.equal(h.hold(f, 1000).isNew, true);
  const again = h.hold(f, 5000);
  assert.equal(again.isNew, false, 'a retry is not a new hold (one log line)');
  assert.equal(again.entry.sinceMs, 1000, 'since when: the first failure');
  assert.deepEqual(h.list(), [{ ...f, sinceMs: 1000, likelyHolder: LIKELY_HOLDER }]);
  assert.equal(h.release(f.path), true);
  assert.equal(h.release(f.path), false);
  assert.deepEqual(h.list(), []);
  assert.equal(h.hold(f, 9000).isNew, true, 'a later hold is a new episode');
});

test('heldMaxSeconds bounds the wait; 0 waits forever', () => {
  assert.equal(heldTooLong(0, 599_999, 600), false);
  assert.equal(heldTooLong(0, 600_000, 600), true);
  assert.equal(heldTooLong(0, 10 ** 12, 0), false);
});

test('the status line names the inbox, the file, the likely holder and how long', () => {
  const h = new HeldTargets();
  const { entry } = h.hold({ inbox: 'renders', rel: 'shots/loop.mov', path: 'C:\\x', code: 'EBUSY' }, 1000);
  const line = heldLine(entry, 43_000);
  for (const part of ['"renders"', 'shots/loop.mov', 'Movie File In TOP', '42 s', 'EBUSY']) assert.ok(line.includes(part), `${part} in ${line}`);
});
