/**
 * The shared read window (src/transfer/read-window.ts) alone, in memory: readers at their
 * own pace, attach mid-file, leave, a slow reader falling out, all readers gone, resume
 * offsets, the shared hash covering each chunk once, buffers given back only when no
 * reader holds them.
 */
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { ReadWindow, type Take } from '../../src/transfer/read-window.js';

const C = 4; // chunk bytes
/** A file of `size` bytes whose byte i is i % 251. */
const fileBytes = (size: number): Uint8Array => Uint8Array.from({ length: size }, (_, i) => i % 251);

/** Pushes chunks from `src` while the window takes them; returns the buffers pushed. */
function fill(w: ReadWindow<Uint8Array>, src: Uint8Array, pushed: Uint8Array[] = []): Uint8Array[] {
  while (w.canPush()) {
    const i = w.head;
    const buf = new Uint8Array(C); // a pool buffer: chunk-sized, the last one partly used
    const n = w.chunkLength(i);
    buf.set(src.subarray(i * C, i * C + n));
    w.push(buf, n);
    pushed.push(buf);
  }
  return pushed;
}

function chunk(t: Take<Uint8Array>): Extract<Take<Uint8Array>, { kind: 'chunk' }> {
  assert.equal(t.kind, 'chunk', `expected a chunk, got ${JSON.stringify(t)}`);
  return t as Extract<Take<Uint8Array>, { kind: 'chunk' }>;
}

/** Reads a reader to the end (producer keeping up, takes done at once); returns its bytes and hashed chunk starts. */
function drain(w: ReadWindow<Uint8Array>, id: number, src: Uint8Array): { bytes: number[]; hashed: number[] } {
  const bytes: number[] = [];
  const hashed: number[] = [];
  for (;;) {
    fill(w, src);
    const t = w.take(id);
    if (t.kind === 'end') return { bytes, hashed };
    if (t.kind === 'wait') {
      if (w.head === w.count && !w.finished) w.finish();
      else assert.fail(`reader ${id} waits with nothing to wait for`);
      continue;
    }
    const c = chunk(t);
    bytes.push(...c.view);
    if (c.hashAlg) hashed.push(c.start);
    w.done(c.token);
  }
}

describe('ReadWindow', () => {
  test('one reader gets every byte in order, then end once the producer finished', () => {
    const src = fileBytes(10);
    const w = new ReadWindow<Uint8Array>(10, C, 2);
    const a = w.attach(0, 'sha256')!;
    assert.equal(a.sharedHash, true);
    const { bytes, hashed } = drain(w, a.id, src);
    assert.deepEqual(bytes, [...src]);
    assert.deepEqual(hashed, [0, 4, 8], 'the shared hash sees each chunk once, in order');
  });

  test('an empty file ends as soon as it is finished', () => {
    const w = new ReadWindow<Uint8Array>(0, C, 2);
    const a = w.attach(0, 'sha256')!;
    assert.equal(w.canPush(), false);
    assert.equal(w.take(a.id).kind, 'wait');
    w.finish();
    assert.equal(w.take(a.id).kind, 'end');
  });

  test('the producer stops at capacity and goes on as the slowest reader moves', () => {
    const src = fileBytes(40);
    const w = new ReadWindow<Uint8Array>(40, C, 3);
    const fast = w.attach(0, 'x')!;
    const slow = w.attach(0, 'x')!;
    fill(w, src);
    assert.equal(w.head, 3);
    assert.equal(w.canPush(), false);
    for (let i = 0; i < 3; i++) w.done(chunk(w.take(fast.id)).token);
    assert.equal(w.canPush(), false, 'the slow reader still needs chunk 0');
    assert.equal(w.take(fast.id).kind, 'wait');
    assert.equal(w.stalled(), true);
    assert.deepEqual(w.laggards(), [slow.id]);
    w.done(chunk(w.take(slow.id)).token);
    assert.equal(w.canPush(), true);
    assert.equal(w.stalled(), false);
    assert.equal(w.base, 1);
  });

  test('read-ahead: the producer stays at most readAhead chunks ahead of the fastest reader', () => {
    const src = fileBytes(40);
    const w = new ReadWindow<Uint8Array>(40, C, 6, 1);
    const a = w.attach(0, 'x')!;
    const b = w.attach(0, 'x')!;
    fill(w, src);
    assert.equal(w.head, 1, 'only the chunk the leader takes next');
    w.done(chunk(w.take(a.id)).token);
    fill(w, src);
    assert.equal(w.head, 2);
    w.done(chunk(w.take(a.id)).token);
    fill(w, src);
    assert.equal(w.head, 3, 'b lags: the window still holds chunk 0 for it');
    assert.equal(w.base, 0);
    assert.equal(w.stalled(), false);
    w.leave(a.id);
    const { bytes } = drain(w, b.id, src);
    assert.deepEqual(bytes, [...src]);
    assert.throws(() => new ReadWindow<Uint8Array>(4, C, 2, 0), RangeError);
  });

  test('each chunk is hashed once per algorithm, by whichever reader of it takes it first', () => {
    const src = fileBytes(16);
    const w = new ReadWindow<Uint8Array>(16, C, 4);
    const a = w.attach(0, 'sha256')!;
    const b = w.attach(0, 'sha256')!;
    const x = w.attach(0, 'xxh3-128')!;
    fill(w, src);
    const hashedBy = new Map<string, number[]>();
    const takeOne = (id: number): void => {
      const c = chunk(w.take(id));
      if (c.hashAlg) hashedBy.set(`${c.hashAlg}@${c.start}`, [...(hashedBy.get(`${c.hashAlg}@${c.start}`) ?? []), id]);
      w.done(c.token);
    };
    // b leads for chunks 0-1, a overtakes for 2-3; x alone hashes xxh.
    takeOne(b.id);
    takeOne(b.id);
    for (let i = 0; i < 4; i++) takeOne(a.id);
    takeOne(b.id);
    takeOne(b.id);
    for (let i = 0; i < 4; i++) takeOne(x.id);
    assert.deepEqual(Object.fromEntries(hashedBy), {
      'sha256@0': [b.id],
      'sha256@4': [b.id],
      'sha256@8': [a.id],
      'sha256@12': [a.id],
      'xxh3-128@0': [x.id],
      'xxh3-128@4': [x.id],
      'xxh3-128@8': [x.id],
      'xxh3-128@12': [x.id],
    });
  });

  test('a reader attaches mid-file while its start is held, and not once it left the window', () => {
    const src = fileBytes(20);
    const w = new ReadWindow<Uint8Array>(20, C, 2);
    const a = w.attach(0, 'sha256')!;
    fill(w, src);
    w.done(chunk(w.take(a.id)).token); // chunk 0 leaves: base 1
    assert.equal(w.base, 1);
    assert.equal(w.attach(0, 'sha256'), null, 'byte 0 is gone: read it yourself');
    assert.equal(w.attach(3, 'sha256'), null);
    const late = w.attach(6, 'sha256')!;
    assert.equal(late.sharedHash, false, 'not from byte 0: it hashes on its own (after its prefix)');
    const c = chunk(w.take(late.id));
    assert.equal(c.start, 6);
    assert.deepEqual([...c.view], [6, 7], 'from its cursor to the end of the chunk');
    assert.equal(c.hashAlg, null);
    w.done(c.token);
    assert.equal(w.attach(21, 'sha256'), null, 'past the end');
  });

  test('a reader attached at 0 while chunk 0 is held shares the hash even if others are ahead', () => {
    const src = fileBytes(12);
    const w = new ReadWindow<Uint8Array>(12, C, 3);
    const a = w.attach(0, 'sha256')!;
    fill(w, src);
    const slow = w.attach(0, 'sha256')!; // holds chunk 0
    w.done(chunk(w.take(a.id)).token);
    w.done(chunk(w.take(a.id)).token);
    const b = w.attach(0, 'sha256')!;
    assert.equal(b.sharedHash, true);
    const c0 = chunk(w.take(b.id));
    assert.equal(c0.hashAlg, null, 'chunk 0 was hashed by a');
    w.done(c0.token);
    w.done(chunk(w.take(b.id)).token);
    const c2 = chunk(w.take(b.id));
    assert.equal(c2.hashAlg, 'sha256', 'b is first at chunk 2');
    w.done(c2.token);
    w.leave(slow.id);
  });

  test('seek (a resumed destination): forward only, then the reader hashes on its own', () => {
    const src = fileBytes(20);
    const w = new ReadWindow<Uint8Array>(20, C, 2);
    const a = w.attach(0, 'sha256')!;
    const r = w.attach(0, 'sha256')!;
    assert.equal(w.seek(r.id, 9), true);
    assert.equal(w.seek(r.id, 5), false, 'never backwards');
    assert.equal(w.seek(r.id, 21), false, 'never past the end');
    fill(w, src);
    w.done(chunk(w.take(a.id)).token);
    w.done(chunk(w.take(a.id)).token);
    fill(w, src);
    const c = chunk(w.take(r.id));
    assert.equal(c.start, 9);
    assert.deepEqual([...c.view], [9, 10, 11]);
    assert.equal(c.hashAlg, null);
    w.done(c.token);
  });

  test('a lone resumed reader: the chunks before its offset are never read', () => {
    const w = new ReadWindow<Uint8Array>(40, C, 2);
    const r = w.attach(0, 'sha256')!;
    w.seek(r.id, 17);
    assert.equal(w.head, 4, 'the producer starts at the chunk holding byte 17');
    const src = fileBytes(40);
    const { bytes } = drain(w, r.id, src);
    assert.deepEqual(bytes, [...src.subarray(17)]);
  });

  test('a slow reader falls out: detached once, told its cursor, and the others go on', () => {
    const src = fileBytes(40);
    const w = new ReadWindow<Uint8Array>(40, C, 2);
    const fast = w.attach(0, 'sha256')!;
    const slow = w.attach(0, 'sha256')!;
    fill(w, src);
    w.done(chunk(w.take(slow.id)).token); // slow got chunk 0 and stops (cursor 4)
    w.done(chunk(w.take(fast.id)).token);
    fill(w, src);
    w.done(chunk(w.take(fast.id)).token);
    w.done(chunk(w.take(fast.id)).token);
    assert.equal(w.take(fast.id).kind, 'wait');
    assert.equal(w.stalled(), true);
    assert.deepEqual(w.laggards(), [slow.id]);
    w.detach(slow.id);
    assert.equal(w.stalled(), false);
    assert.equal(w.cursorOf(slow.id), 4);
    assert.deepEqual(w.take(slow.id), { kind: 'detached', cursor: 4 });
    assert.throws(() => w.take(slow.id), /not attached/, 'told once; it reads on its own now');
    const { bytes } = drain(w, fast.id, src);
    assert.deepEqual(bytes, [...src.subarray(12)]);
  });

  test('laggards are judged by distance: below capacity nobody stalls the others, however long; short of buffers, the base holders do', () => {
    const src = fileBytes(64);
    const w = new ReadWindow<Uint8Array>(64, C, 6, 1);
    const fast = w.attach(0, 'xxh3-128')!;
    const slow = w.attach(0, 'xxh3-128')!;
    fill(w, src);
    w.done(chunk(w.take(slow.id)).token); // slow at 4, then it pauses
    // fast goes 4 chunks ahead of slow: within the distance, so the window is never stalled
    // (no grace runs out, whatever the time), and the producer keeps up with fast.
    for (let i = 0; i < 4; i++) {
      fill(w, src);
      w.done(chunk(w.take(fast.id)).token);
      assert.equal(w.stalled(), false, `fast at ${w.cursorOf(fast.id)}, slow at 4: within the distance`);
    }
    fill(w, src);
    assert.equal(w.take(fast.id).kind, 'chunk');
    // The producer has no buffer for the next chunk (memory is short): fast waits at the
    // head, so slow, holding the base, stalls the window although the distance is not reached.
    assert.equal(w.take(fast.id).kind, 'wait');
    assert.equal(w.stalled(true), false, 'room for another chunk: not stalled');
    assert.equal(w.stalled(false), true, 'no room: stalled by the base holder');
    assert.deepEqual(w.laggards(), [slow.id]);
    // slow moves again: the base goes with it; at the distance (capacity) it stalls even with room.
    w.done(chunk(w.take(slow.id)).token);
    assert.equal(w.freed().length, 2, 'chunks 0 and 1 left the window: their buffers are room again');
    assert.equal(w.stalled(true), false);
    for (let t = (fill(w, src), w.take(fast.id)); t.kind === 'chunk'; t = (fill(w, src), w.take(fast.id))) w.done(t.token);
    assert.equal(w.cursorOf(fast.id), 32, 'fast got 6 chunks ahead of slow (at 8), no further');
    assert.equal(w.head - w.base, 6, 'the window holds the whole distance');
    assert.equal(w.stalled(true), true, 'at the distance: stalled whatever the room');
    // An empty window is never stalled by anyone (the buffers are short elsewhere).
    const e = new ReadWindow<Uint8Array>(64, C, 6, 1);
    const r = e.attach(0)!;
    assert.equal(e.take(r.id).kind, 'wait');
    assert.equal(e.stalled(false), false);
  });

  test('buffers come back only when out of the window and every take is done', () => {
    const src = fileBytes(12);
    const w = new ReadWindow<Uint8Array>(12, C, 3);
    const a = w.attach(0, 'x')!;
    const b = w.attach(0, 'x')!;
    const pushed = fill(w, src);
    const ta = chunk(w.take(a.id));
    assert.deepEqual(w.freed(), []);
    const tb = chunk(w.take(b.id));
    assert.deepEqual(w.freed(), [], 'out of the window but a socket still holds it twice');
    w.done(ta.token);
    assert.deepEqual(w.freed(), []);
    w.done(tb.token);
    assert.deepEqual(w.freed(), [pushed[0]]);
    assert.throws(() => w.done(tb.token), /more often than taken/);
  });

  test('all readers gone: every chunk leaves; close gives back the rest once written', () => {
    const src = fileBytes(12);
    const w = new ReadWindow<Uint8Array>(12, C, 3);
    const a = w.attach(0, 'x')!;
    const pushed = fill(w, src);
    const t = chunk(w.take(a.id));
    w.leave(a.id);
    assert.equal(w.readers, 0);
    assert.deepEqual(w.freed(), [pushed[1], pushed[2]], 'unlent chunks at once');
    w.close();
    assert.equal(w.canPush(), false);
    assert.equal(w.attach(0, 'x'), null, 'closed: nobody attaches any more');
    w.done(t.token);
    assert.deepEqual(w.freed(), [pushed[0]], 'the lent one when its socket wrote it');
  });

  test('a failed read reaches every reader, and nobody attaches any more', () => {
    const w = new ReadWindow<Uint8Array>(12, C, 3);
    const a = w.attach(0, 'x')!;
    const b = w.attach(4, 'x')!;
    const err = new Error('EIO');
    w.fail(err);
    assert.deepEqual(w.take(a.id), { kind: 'failed', error: err });
    assert.deepEqual(w.take(b.id), { kind: 'failed', error: err });
    assert.equal(w.canPush(), false);
    assert.equal(w.attach(0, 'x'), null);
  });

  test('the end is not announced before the producer finished (source check)', () => {
    const src = fileBytes(8);
    const w = new ReadWindow<Uint8Array>(8, C, 4);
    const a = w.attach(0, 'x')!;
    fill(w, src);
    w.done(chunk(w.take(a.id)).token);
    w.done(chunk(w.take(a.id)).token);
    assert.equal(w.take(a.id).kind, 'wait');
    assert.equal(w.stalled(), false, 'waiting for the end is no stall');
    assert.throws(() => new ReadWindow<Uint8Array>(8, C, 4).finish(), /before every chunk/);
    w.finish();
    assert.equal(w.take(a.id).kind, 'end');
  });

  test('push checks the chunk length and the room', () => {
    const w = new ReadWindow<Uint8Array>(6, C, 1);
    w.attach(0, 'x');
    assert.throws(() => w.push(new Uint8Array(C), 3), /must hold 4 bytes/);
    w.push(new Uint8Array(C), 4);
    assert.throws(() => w.push(new Uint8Array(C), 2), /full/);
    assert.throws(() => new ReadWindow<Uint8Array>(6, 0, 1), RangeError);
  });

  test('many readers at random paces: each gets exactly its bytes, memory stays within capacity', () => {
    let seed = 7;
    const rnd = (n: number): number => ((seed = (seed * 1103515245 + 12345) % 2 ** 31), seed % n);
    const size = 203;
    const src = fileBytes(size);
    const w = new ReadWindow<Uint8Array>(size, C, 5);
    const starts = [0, 0, 0, 9, 0];
    const readers = starts.map((s) => ({ id: w.attach(s, 'h')!.id, start: s, got: [] as number[], lent: [] as Array<{ index: number }>, end: false, out: false }));
    let live = 0;
    for (let step = 0; step < 20_000 && readers.some((r) => !r.end && !r.out); step++) {
      if (w.canPush() && rnd(2) === 0) fill(w, src);
      if (w.head === w.count && !w.finished) w.finish();
      const r = readers[rnd(readers.length)]!;
      if (r.end || r.out) continue;
      if (r.lent.length > 0 && rnd(2) === 0) w.done(r.lent.shift()!);
      const t = w.take(r.id);
      if (t.kind === 'chunk') {
        r.got.push(...t.view);
        r.lent.push(t.token);
      } else if (t.kind === 'end') r.end = true;
      else if (t.kind === 'detached') r.out = true;
      if (w.stalled() && rnd(50) === 0) for (const id of w.laggards()) w.detach(id);
      live = Math.max(live, w.head - w.base);
    }
    for (const r of readers) {
      assert.ok(r.end || r.out);
      const want = [...src.subarray(r.start, r.start + r.got.length)];
      assert.deepEqual(r.got, want, 'a prefix of its bytes, in order, nothing twice');
      if (r.end) assert.equal(r.got.length, size - r.start);
    }
    assert.ok(live <= 5);
  });
});
