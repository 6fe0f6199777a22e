/** FreeSpace (inbox/space.ts): one statfs per burst of admitted files, on a driven clock and reader. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FreeSpace } from '../../src/inbox/space.js';

const MiB = 1024 * 1024;

function gauge(free: number | null) {
  const state = { free, reads: 0, now: 0 };
  const space = new FreeSpace({
    read: async () => {
      state.reads++;
      return state.free;
    },
    now: () => state.now,
    ttlMs: 1000,
    marginBytes: 100 * MiB,
  });
  return { space, state };
}

test('a burst of small files within the TTL costs one reading; the estimate subtracts what was admitted', async () => {
  const { space, state } = gauge(10_000 * MiB);
  assert.equal(await space.free('/d', 10 * MiB), 10_000 * MiB);
  for (let i = 0; i < 50; i++) {
    state.now += 10;
    space.admit(10 * MiB);
    const free = await space.free('/d', 10 * MiB);
    assert.equal(free, 10_000 * MiB - (i + 1) * 10 * MiB);
  }
  assert.equal(state.reads, 1);
});

test('read afresh once the reading is older than the TTL', async () => {
  const { space, state } = gauge(10_000 * MiB);
  await space.free('/d', MiB);
  state.now = 999;
  await space.free('/d', MiB);
  assert.equal(state.reads, 1);
  state.now = 1000;
  state.free = 5000 * MiB; // someone else filled the disk meanwhile
  assert.equal(await space.free('/d', MiB), 5000 * MiB);
  assert.equal(state.reads, 2);
});

test('an estimate within the margin of what is needed is never trusted: a refusal rests on a fresh reading', async () => {
  const { space, state } = gauge(1000 * MiB);
  await space.free('/d', MiB);
  space.admit(850 * MiB);
  state.free = 900 * MiB; // the writes went elsewhere: more is free than estimated
  // estimate 150 MiB, need 60 MiB + 100 MiB margin: read again.
  assert.equal(await space.free('/d', 60 * MiB), 900 * MiB);
  assert.equal(state.reads, 2);
});

test('an unknown reading (null) is never reused', async () => {
  const { space, state } = gauge(null);
  assert.equal(await space.free('/d', 1), null);
  assert.equal(await space.free('/d', 1), null);
  assert.equal(state.reads, 2);
});
