import { test } from 'node:test';
import assert from 'node:assert/strict';
import { forEachLimit } from '../../src/concurrency.js';

/** A call that finishes when the test says so. */
function gate(): { promise: Promise<void>; open: () => void } {
  let open!: () => void;
  const promise = new Promise<void>((r) => (open = r));
  return { promise, open };
}

test('forEachLimit: never more than `limit` in flight, every item once, in order of start', async () => {
  const items = Array.from({ length: 20 }, (_, i) => i);
  const gates = items.map(() => gate());
  const started: number[] = [];
  let inFlight = 0;
  let most = 0;
  const run = forEachLimit(items, 3, async (i) => {
    started.push(i);
    inFlight++;
    most = Math.max(most, inFlight);
    await gates[i]!.promise;
    inFlight--;
  });
  // Release in reverse of start as they come: the limit holds whatever the completion order.
  for (let k = 0; k < items.length; k++) {
    while (started.length <= k) await new Promise((r) => setImmediate(r));
    gates[started[k]!]!.open();
  }
  await run;
  assert.equal(most, 3);
  assert.deepEqual(started, items);
});

test('forEachLimit: the first error rejects, after the calls in flight settled; later items never start', async () => {
  const started: number[] = [];
  await assert.rejects(
    forEachLimit([1, 2, 3, 4, 5, 6], 2, async (i) => {
      started.push(i);
      await new Promise((r) => setImmediate(r));
      if (i === 2) throw new Error('boom 2');
    }),
    /boom 2/,
  );
  assert.ok(!started.includes(6), `started ${started.join(',')}`);
});

test('forEachLimit: empty input resolves; a bad limit is refused', async () => {
  await forEachLimit([], 4, () => Promise.reject(new Error('never')));
  await assert.rejects(forEachLimit([1], 0, async () => undefined), RangeError);
});
