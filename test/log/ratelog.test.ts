/**
 * RepeatBook (the pure part of RateLimitedLog), with an injected clock: one line per
 * (kind, address), repeats summarised per interval, quiet keys forgotten, bounded keys.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { RepeatBook } from '../../src/ratelog.js';

const book = (): RepeatBook => new RepeatBook({ burst: 5, maxKeys: 4, forgetMs: 600_000 });

test('one line per (kind, address); repeats become one summary per interval', () => {
  const b = book();
  assert.equal(b.note('peers without TLS', 'refused A #1', '10.0.0.1', 0), true);
  for (let i = 2; i <= 6; i++) assert.equal(b.note('peers without TLS', `refused A #${i}`, '10.0.0.1', i * 2500), false);
  assert.equal(b.note('TLS handshake failures', 'other key', '10.0.0.1', 3000), true, 'another cause from the same address is named');
  assert.equal(b.note('peers without TLS', 'refused B', '10.0.0.2', 3000), true, 'another address is named');
  assert.deepEqual(b.take(60_000), ['repeated 5 more times from 10.0.0.1 in the last 60 s (peers without TLS); the latest: refused A #6']);
  assert.deepEqual(b.take(120_000), [], 'a quiet interval says nothing');
  assert.equal(b.note('peers without TLS', 'refused A #7', '10.0.0.1', 125_000), false, 'still remembered: counted, not repeated in full');
  assert.deepEqual(b.take(180_000), ['repeated 1 more time from 10.0.0.1 in the last 60 s (peers without TLS); the latest: refused A #7']);
});

test('a key quiet for forgetMs is forgotten: the peer is named again in full', () => {
  const b = book();
  assert.equal(b.note('k', 'x', '10.0.0.1', 0), true);
  for (let t = 60_000; t <= 600_000; t += 60_000) b.take(t);
  assert.equal(b.size, 0);
  assert.equal(b.note('k', 'x again', '10.0.0.1', 700_000), true);
});

test('bounded: at most burst new addresses per kind per interval and maxKeys keys; the rest counted as other addresses', () => {
  const b = new RepeatBook({ burst: 2, maxKeys: 4, forgetMs: 600_000 });
  assert.equal(b.note('k', 'a', '10.0.0.1', 0), true);
  assert.equal(b.note('k', 'b', '10.0.0.2', 0), true);
  assert.equal(b.note('k', 'c', '10.0.0.3', 0), false, 'a third new address in one interval is counted');
  assert.equal(b.note('k', 'd', '10.0.0.4', 0), false);
  assert.deepEqual(b.take(60_000), ['repeated 2 more times from other addresses in the last 60 s (k); the latest: d']);
  assert.equal(b.note('j', 'e', '10.0.0.5', 61_000), true, 'a new interval names new addresses again');
  assert.equal(b.note('j', 'f', '10.0.0.6', 61_000), false, 'maxKeys (4) reached: counted');
  for (let i = 6; i < 1000; i++) b.note('j', `x${i}`, `10.0.${i >> 8}.${i & 255}`, 61_000);
  assert.ok(b.size <= 4 + 2, `keys stay bounded: maxKeys plus one overflow key per kind (${b.size})`);
});

test('without an address: burst lines per interval, then summaries until a quiet interval', () => {
  const b = new RepeatBook({ burst: 2, maxKeys: 4, forgetMs: 600_000 });
  assert.deepEqual([1, 2, 3, 4].map((i) => b.note('csrf', `r${i}`, undefined, i)), [true, true, false, false]);
  assert.deepEqual(b.take(60_000), ['repeated 2 more times in the last 60 s (csrf); the latest: r4']);
  assert.equal(b.note('csrf', 'r5', undefined, 61_000), false, 'still flooding: summary only');
  assert.equal(b.take(120_000).length, 1);
  assert.deepEqual(b.take(180_000), []);
  assert.equal(b.note('csrf', 'r6', undefined, 181_000), true, 'after a quiet interval it is logged again');
});
