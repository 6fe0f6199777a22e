import { test } from 'node:test';
import assert from 'node:assert/strict';
import { backoffDelay } from '../../src/backoff.js';

test('backoffDelay: initialMs after the first failure, doubling, capped at maxMs; exact without jitter', () => {
  const p = { initialMs: 500, maxMs: 30_000 };
  assert.deepEqual([1, 2, 3, 4, 5, 6, 7, 8].map((n) => backoffDelay(n, p)), [500, 1000, 2000, 4000, 8000, 16_000, 30_000, 30_000]);
  assert.equal(backoffDelay(0, p), 500, 'no failure yet counts as the first');
  assert.equal(backoffDelay(10_000, p), 30_000, 'a long outage stays at the cap (no overflow)');
  assert.equal(backoffDelay(3, { initialMs: 100, maxMs: 100 }), 100, 'a cap equal to the first delay never grows');
});

test('backoffDelay: jitter spreads the delay by ±jitter around the capped value, from the given random source', () => {
  const p = { initialMs: 100, maxMs: 1000, jitter: 0.2 };
  assert.equal(backoffDelay(1, p, () => 0), 80, 'lowest: −20 %');
  assert.equal(backoffDelay(1, p, () => 0.5), 100, 'middle: nominal');
  assert.equal(backoffDelay(1, p, () => 0.999999), 120, 'highest: +20 %');
  assert.equal(backoffDelay(5, p, () => 0), 800, 'the cap applies before the jitter');
  assert.equal(backoffDelay(5, p, () => 0.999999), 1200);
  for (let i = 0; i < 200; i++) {
    const d = backoffDelay(3, p);
    assert.ok(d >= 320 && d <= 480, `${d} within ±20 % of 400`);
  }
});
