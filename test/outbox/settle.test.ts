import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { CROWD_FILES, SettleTracker, sameVersion } from '../../src/outbox/settle.js';

const v = (size: number, mtimeMs: number) => ({ size, mtimeMs });

test('a version is due only after it was seen unchanged over settleMs, and once', () => {
  const t = new SettleTracker(1000);
  t.touch('a.png');
  assert.deepEqual(t.toStat(0), ['a.png']);
  assert.deepEqual(t.due(), [], 'touched but never observed: not due');
  t.observe('a.png', v(10, 1), 0);
  assert.deepEqual(t.due(), [], 'one observation is not enough');
  t.observe('a.png', v(10, 1), 999);
  assert.deepEqual(t.due(), []);
  t.observe('a.png', v(10, 1), 1000);
  assert.deepEqual(t.due(), [{ rel: 'a.png', version: v(10, 1) }]);
  assert.equal(t.markEmitted('a.png', v(10, 1)), true);
  assert.deepEqual(t.due(), []);
  assert.equal(t.pendingCount, 0);
  assert.deepEqual(t.toStat(5000), []);
  assert.equal(t.nextWake(), Infinity);
  // an event without a change does not re-emit
  t.touch('a.png');
  assert.equal(t.nextWake(), -Infinity, 'a touched file wants a stat at once');
  t.observe('a.png', v(10, 1), 6000);
  t.observe('a.png', v(10, 1), 99_999);
  assert.deepEqual(t.due(), []);
  assert.equal(t.pendingCount, 0);
});

test('pending files are re-stat\'ed every pollMs and exactly when they would be due', () => {
  const t = new SettleTracker(1000); // pollMs defaults to min(250, settleMs)
  assert.equal(t.pollMs, 250);
  t.observe('a', v(1, 1), 0);
  assert.deepEqual(t.toStat(100), []);
  assert.deepEqual(t.toStat(250), ['a']);
  assert.equal(t.nextWake(), 250);
  const fast = new SettleTracker(100, 250);
  fast.observe('b', v(1, 1), 0);
  assert.equal(fast.nextWake(), 100, 'due time comes before the next poll');
  assert.deepEqual(fast.toStat(99), []);
  assert.deepEqual(fast.toStat(100), ['b']);
  fast.observe('b', v(1, 1), 100);
  assert.equal(fast.due().length, 1);
});

test('a crowd of pending files (a backlog at start) is re-stat\'ed only when due; a change seen then restarts the wait', () => {
  const t = new SettleTracker(1000);
  const n = CROWD_FILES + 1;
  for (let i = 0; i < n; i++) t.observe(`f${i}`, v(1, 1), 0);
  assert.deepEqual(t.toStat(250), [], 'no re-stat at pollMs');
  assert.equal(t.nextWake(), 1000);
  t.touch('f7'); // an event still asks for a stat at once
  assert.deepEqual(t.toStat(500), ['f7']);
  t.observe('f7', v(1, 1), 500);
  assert.equal(t.toStat(1000).length, n);
  for (let i = 0; i < n; i++) t.observe(`f${i}`, v(1, 1), 1000);
  t.observe('f3', v(2, 2), 1000); // changed since first seen: waits settleMs again
  assert.equal(t.due().length, n - 1);
  for (const d of t.due()) assert.equal(t.markEmitted(d.rel, d.version), true);
  assert.equal(t.pendingCount, 1, 'back below the crowd: the usual polling');
  assert.deepEqual(t.toStat(1200), []);
  assert.deepEqual(t.toStat(1250), ['f3'], 're-stat at pollMs again');
});

test('size or mtime change restarts the wait', () => {
  const t = new SettleTracker(100);
  t.observe('f', v(1, 1), 0);
  t.observe('f', v(2, 1), 90);
  t.observe('f', v(2, 1), 150);
  assert.deepEqual(t.due(), []);
  t.observe('f', v(2, 5), 190); // same size, new mtime
  t.observe('f', v(2, 5), 289);
  assert.deepEqual(t.due(), []);
  t.observe('f', v(2, 5), 290);
  assert.deepEqual(t.due(), [{ rel: 'f', version: v(2, 5) }]);
});

test('a touched file must be re-stat\'ed before it can be due', () => {
  const t = new SettleTracker(100);
  t.observe('f', v(1, 1), 0);
  t.observe('f', v(1, 1), 100);
  t.touch('f');
  assert.deepEqual(t.due(), []);
  t.observe('f', v(1, 1), 500);
  assert.equal(t.due().length, 1);
});

test('settleMs 0: due as soon as observed; empty files too', () => {
  const t = new SettleTracker(0);
  t.observe('e', v(0, 1), 42);
  assert.deepEqual(t.due(), [{ rel: 'e', version: v(0, 1) }]);
});

test('empty file must stay empty for settleMs; growing within it yields one final version', () => {
  const t = new SettleTracker(200);
  t.observe('td.mov', v(0, 1), 0);
  t.observe('td.mov', v(0, 1), 150);
  t.observe('td.mov', v(4096, 2), 190);
  t.observe('td.mov', v(4096, 2), 250);
  assert.deepEqual(t.due(), []);
  t.observe('td.mov', v(4096, 2), 390);
  assert.deepEqual(t.due(), [{ rel: 'td.mov', version: v(4096, 2) }]);
});

test('a new version after emit is emitted again, released or not', () => {
  for (const released of [false, true]) {
    const t = new SettleTracker(10);
    t.observe('a', v(1, 1), 0);
    t.observe('a', v(1, 1), 10);
    assert.equal(t.markEmitted('a', v(1, 1)), true);
    if (released) t.release('a');
    t.touch('a');
    t.observe('a', v(2, 2), 20);
    t.observe('a', v(2, 2), 30);
    assert.deepEqual(t.due(), [{ rel: 'a', version: v(2, 2) }]);
    assert.equal(t.markEmitted('a', v(1, 1)), false, 'stale version is refused');
    assert.equal(t.markEmitted('a', v(2, 2)), true);
  }
});

test('remove tells whether the agent should hear "gone"', () => {
  const t = new SettleTracker(10);
  assert.equal(t.remove('unknown'), false);
  t.touch('touched');
  assert.equal(t.remove('touched'), true);
  t.observe('pending', v(1, 1), 0);
  assert.equal(t.remove('pending'), true);
  t.observe('emitted', v(1, 1), 0);
  t.observe('emitted', v(1, 1), 10);
  assert.equal(t.markEmitted('emitted', v(1, 1)), true);
  assert.equal(t.remove('emitted'), true);
  t.observe('released', v(1, 1), 0);
  t.markEmitted('released', v(1, 1));
  t.release('released');
  assert.equal(t.has('released'), true, 'kept so the same version is not re-emitted');
  assert.equal(t.remove('released'), false);
  assert.equal(t.has('released'), false);
});

test('forgetReleased drops only a released version with nothing newer seen (the after-action moved it)', () => {
  const t = new SettleTracker(10);
  const emit = (rel: string) => {
    t.observe(rel, v(1, 1), 0);
    t.observe(rel, v(1, 1), 10);
    assert.equal(t.markEmitted(rel, v(1, 1)), true);
  };
  assert.equal(t.forgetReleased('unknown'), false);
  emit('sending');
  assert.equal(t.forgetReleased('sending'), false, 'not released: the agent still needs to hear "gone"');
  assert.equal(t.has('sending'), true);
  emit('moved');
  t.release('moved');
  assert.equal(t.forgetReleased('moved'), true);
  assert.equal(t.has('moved'), false);
  assert.equal(t.pendingCount, 0);
  emit('rewritten');
  t.release('rewritten');
  t.touch('rewritten'); // a new file under the name, seen before the after-action ended
  assert.equal(t.forgetReleased('rewritten'), false);
  t.observe('rewritten', v(2, 2), 20);
  assert.equal(t.forgetReleased('rewritten'), false, 'a newer version pending: kept');
  t.observe('rewritten', v(2, 2), 30);
  assert.deepEqual(t.due(), [{ rel: 'rewritten', version: v(2, 2) }]);
});

test('rejects a bad settleMs or pollMs', () => {
  assert.throws(() => new SettleTracker(-1), RangeError);
  assert.throws(() => new SettleTracker(Number.NaN), RangeError);
  assert.throws(() => new SettleTracker(10, 0), RangeError);
});

test('property: bursts with pauses < settleMs are emitted exactly once, with the final version, whatever the loop timing', () => {
  fc.assert(
    fc.property(
      fc.integer({ min: 1, max: 500 }), // settleMs
      fc.array(fc.record({ grow: fc.integer({ min: 0, max: 1000 }), pauseFrac: fc.double({ min: 0, max: 0.99, noNaN: true }) }), { minLength: 1, maxLength: 20 }),
      fc.array(fc.integer({ min: 1, max: 60 }), { minLength: 1, maxLength: 10 }), // gaps between loop turns (cycled)
      (settleMs, bursts, gaps) => {
        const t = new SettleTracker(settleMs);
        // The file on disk as a function of time: each burst writes at time `at`.
        const writes: Array<{ at: number; size: number; mtime: number }> = [];
        let at = 0;
        let size = 0;
        for (const b of bursts) {
          size += b.grow;
          writes.push({ at, size, mtime: at + 1 }); // mtime changes on every write
          at += Math.floor(b.pauseFrac * settleMs);
        }
        const last = writes[writes.length - 1]!;
        const emitted: Array<{ size: number; mtimeMs: number }> = [];
        t.touch('f');
        let turn = 0;
        for (let now = 0; now <= last.at + 3 * settleMs + 300; now += gaps[turn++ % gaps.length]!) {
          const cur = [...writes].reverse().find((w) => w.at <= now)!;
          if (writes.some((w) => w.at === now)) t.touch('f'); // the event of a write
          for (const rel of t.toStat(now)) t.observe(rel, { size: cur.size, mtimeMs: cur.mtime }, now);
          for (const d of t.due()) if (t.markEmitted(d.rel, d.version)) emitted.push(d.version);
        }
        assert.equal(emitted.length, 1, `emitted ${JSON.stringify(emitted)}`);
        assert.ok(sameVersion(emitted[0]!, { size: last.size, mtimeMs: last.mtime }));
      },
    ),
    { numRuns: 300 },
  );
});
