import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ProgressThrottle } from '../../src/progress.js';
import { FakeClock } from '../helpers/clock.js';

/** A trailing-edge throttle on a fake clock, recording what it delivers and when (ms from the start). */
function trailing(intervalMs = 100) {
  const clock = new FakeClock();
  const start = clock.now();
  const out: Array<{ id: string; value: number; at: number }> = [];
  const t = new ProgressThrottle<number>(intervalMs, { clock, deliver: (id, value) => out.push({ id, value, at: clock.now() - start }) });
  return { clock, out, t };
}

test('due (leading edge): true at most once per interval; what comes in between is dropped; ids are independent', () => {
  const t = new ProgressThrottle(100);
  assert.equal(t.due('a', 1000), true, 'the first update goes out');
  assert.equal(t.due('a', 1050), false);
  assert.equal(t.due('a', 1099), false);
  assert.equal(t.due('b', 1099), true, 'another id has its own interval');
  assert.equal(t.due('a', 1100), true, 'a full interval later');
  assert.equal(t.due('a', 1150), false);
  t.forget('a');
  assert.equal(t.due('a', 1150), true, 'a forgotten id starts afresh');
});

test('offer (trailing edge): the first goes out at once; a burst inside the interval yields only its latest value, when the interval ends', async () => {
  const { clock, out, t } = trailing();
  t.offer('a', 1);
  assert.deepEqual(out, [{ id: 'a', value: 1, at: 0 }]);
  await clock.advance(10);
  t.offer('a', 2);
  await clock.advance(10);
  t.offer('a', 3);
  t.offer('a', 4);
  assert.equal(clock.pending, 1, 'one timer per id, however many values are held');
  await clock.advance(79);
  assert.equal(out.length, 1, 'nothing more before the interval ends');
  await clock.advance(1);
  assert.deepEqual(out, [{ id: 'a', value: 1, at: 0 }, { id: 'a', value: 4, at: 100 }], 'the latest value, at the end of the interval');
  assert.equal(clock.pending, 0);
  // The next interval counts from that delivery: an offer 50 ms later is held for 50 ms.
  await clock.advance(50);
  t.offer('a', 5);
  assert.equal(out.length, 2);
  await clock.advance(50);
  assert.deepEqual(out.at(-1), { id: 'a', value: 5, at: 200 });
  // Quiet for longer than the interval: the next offer goes out at once.
  await clock.advance(500);
  t.offer('a', 6);
  assert.deepEqual(out.at(-1), { id: 'a', value: 6, at: 700 });
});

test('offer: each id keeps its own interval and held value', async () => {
  const { clock, out, t } = trailing();
  t.offer('a', 1);
  await clock.advance(30);
  t.offer('b', 10);
  t.offer('a', 2);
  t.offer('b', 11);
  await clock.advance(200);
  assert.deepEqual(out, [
    { id: 'a', value: 1, at: 0 },
    { id: 'b', value: 10, at: 30 },
    { id: 'a', value: 2, at: 100 },
    { id: 'b', value: 11, at: 130 },
  ]);
});

test('drop discards the held value (its interval goes on); forget and clear also cancel the timers', async () => {
  const { clock, out, t } = trailing();
  t.offer('a', 1);
  t.offer('a', 2);
  t.drop('a');
  assert.equal(clock.pending, 0, 'the timer is cancelled');
  await clock.advance(200);
  assert.deepEqual(out.map((o) => o.value), [1], 'the dropped value never goes out');
  t.offer('a', 3);
  t.offer('a', 4);
  await clock.advance(50);
  t.drop('a');
  t.offer('a', 5);
  assert.deepEqual(out.map((o) => o.value), [1, 3], 'after a drop the interval still counts from the last delivery');
  await clock.advance(50);
  assert.deepEqual(out.map((o) => o.value), [1, 3, 5]);

  t.offer('a', 6);
  t.offer('b', 20);
  t.offer('b', 21);
  t.forget('a');
  t.offer('a', 7);
  assert.deepEqual(out.map((o) => o.value), [1, 3, 5, 20, 7], 'a forgotten id is due at once');
  t.offer('a', 8);
  assert.equal(clock.pending, 2);
  t.clear();
  assert.equal(clock.pending, 0, 'clear cancels every held value');
  await clock.advance(1000);
  assert.deepEqual(out.map((o) => o.value), [1, 3, 5, 20, 7]);
  t.drop('nobody'); // unknown ids are fine
});

test('offer without a trailing edge is a programming error; rate smooths bytes per second', () => {
  assert.throws(() => new ProgressThrottle<number>(100).offer('a', 1), /trailing edge/);
  const t = new ProgressThrottle(100);
  assert.equal(t.rate('a', 0, 0), 0);
  assert.equal(t.rate('a', 500, 100), 0, 'under 250 ms: no new sample yet');
  assert.equal(t.rate('a', 1000, 500), 2000, 'the first sample is taken as it is');
  assert.equal(t.rate('a', 2000, 1000), 2000 * 0.5 + 2000 * 0.5);
  assert.equal(t.rate('a', 2000, 1500), 1000, 'a stall halves the smoothed rate');
});
