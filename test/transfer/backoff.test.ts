import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Backoff } from '../../src/transfer/backoff.js';

// The retry spacing on the agent's own clock (the end-to-end legacy test checks only that
// retries happen: arrival gaps measured there are bunched by a loaded machine).
test('Backoff: delays double from retryInitialMs with ±20 % jitter, capped at retryMaxMs; a failure before the next attempt time does not double', () => {
  for (let round = 0; round < 50; round++) {
    const b = new Backoff(100, 1000);
    let now = 0;
    let nominal = 100;
    for (let i = 0; i < 8; i++) {
      const d = b.failed(now);
      assert.ok(d >= nominal * 0.8 - 1 && d <= nominal * 1.2 + 1, `attempt ${i + 1}: ${d} ms, nominal ${nominal}`);
      // Other jobs failing in the meantime share the same wait.
      assert.equal(b.failed(now + 1), d - 1);
      now += d;
      nominal = Math.min(nominal * 2, 1000);
    }
    b.succeeded();
    const d = b.failed(now);
    assert.ok(d >= 80 && d <= 120, `after a success the delay starts again at retryInitialMs: ${d}`);
  }
});

// wait(): the three ways out, without relying on any sleep being long enough: the delay is
// far longer than any test deadline, so only wake() or the abort can end these waits.
test('Backoff.wait: resolves at once when due, on wake() (which also resets the delay), and on abort', async () => {
  const b = new Backoff(10 * 60_000, 60 * 60_000);
  await b.wait(); // nothing failed yet: due now
  b.failed();
  let woke = false;
  const waiting = b.wait().then(() => (woke = true));
  await Promise.resolve();
  assert.equal(woke, false, 'still waiting after a failure');
  b.wake();
  await waiting;
  const first = b.failed(0);
  assert.ok(first >= 8 * 60_000 && first <= 12 * 60_000, `wake() reset the delay to the initial one (got ${first})`);
  b.failed();
  const ac = new AbortController();
  const aborted = b.wait(ac.signal);
  ac.abort();
  await aborted;
  const pre = new AbortController();
  pre.abort();
  await b.wait(pre.signal); // an already aborted signal does not wait
  b.wake(); // no timer left behind (the test process would otherwise hang for minutes)
});
