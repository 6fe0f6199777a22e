/**
 * The receiving side's per-file rules (src/transfer/files.ts) in memory: every legal
 * sequence (streamed, resumed, eager, refused, aborted, short) and every illegal frame in
 * every state.
 */
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { ReceivingFiles, type FileState } from '../../src/transfer/files.js';
import type { TdxError } from '../../src/errors.js';

const EAGER_MAX = 1000;
const offer = (id: number, size: number, eager = false) => ({ id, path: `f${id}.bin`, size, eager });
const code = (c: string, re?: RegExp) => (e: TdxError) => e.code === c && (re === undefined || re.test(e.message));

/** A machine brought into each state the tests need. */
const IN: Record<FileState['kind'], () => ReceivingFiles> = {
  idle: () => new ReceivingFiles(EAGER_MAX),
  admitting: () => {
    const m = new ReceivingFiles(EAGER_MAX);
    m.offer(offer(1, 10));
    return m;
  },
  streaming: () => {
    const m = IN.admitting();
    m.accepted(1, 0);
    return m;
  },
  gathering: () => {
    const m = new ReceivingFiles(EAGER_MAX);
    m.offer(offer(1, 10, true));
    return m;
  },
};

describe('legal sequences', () => {
  test('streamed: OFFER, ACCEPT, DATA…, END commits; the id is free again after the ACK', () => {
    const m = new ReceivingFiles(EAGER_MAX);
    assert.deepEqual(m.offer(offer(1, 10)), { kind: 'admit' });
    assert.equal(m.state.kind, 'admitting');
    m.accepted(1, 0);
    assert.deepEqual(m.data(4), { kind: 'write', received: 4 });
    assert.deepEqual(m.data(6), { kind: 'write', received: 10 });
    assert.deepEqual(m.end(1), { kind: 'commit', eager: false });
    assert.equal(m.busy, false);
    assert.ok(m.isUnfinished(1), 'taken until answered');
    assert.throws(() => m.offer(offer(1, 5)), code('OUT_OF_ORDER', /reuses id 1/));
    m.answered(1);
    assert.ok(!m.isUnfinished(1));
    assert.deepEqual(m.offer(offer(1, 5)), { kind: 'admit' });
  });

  test('resumed: ACCEPT at an offset counts the kept bytes', () => {
    const m = IN.admitting();
    m.accepted(1, 7);
    assert.deepEqual(m.data(3), { kind: 'write', received: 10 });
    assert.throws(() => m.data(1), code('SIZE_MISMATCH', /11 > 10/));
  });

  test('a refused or duplicate offer is answered at once and leaves the connection idle', () => {
    const m = IN.admitting();
    m.answered(1);
    assert.equal(m.state.kind, 'idle');
    assert.throws(() => m.data(1), code('OUT_OF_ORDER', /DATA frame without an accepted OFFER/));
  });

  test('eager: OFFER eager, DATA…, END commits without ACCEPT; zero bytes too', () => {
    const m = new ReceivingFiles(EAGER_MAX);
    assert.deepEqual(m.offer(offer(2, 10, true)), { kind: 'gather' });
    assert.deepEqual(m.data(10), { kind: 'gather' });
    assert.deepEqual(m.end(2), { kind: 'commit', eager: true });
    assert.deepEqual(m.offer(offer(3, 0, true)), { kind: 'gather' });
    assert.deepEqual(m.end(3), { kind: 'commit', eager: true });
    assert.deepEqual(m.offer(offer(4, EAGER_MAX, true)), { kind: 'gather' }, 'exactly eagerMaxBytes is allowed');
  });

  test('short END: NACK SIZE_MISMATCH, streamed and eager', () => {
    const s = IN.streaming();
    s.data(3);
    assert.deepEqual(s.end(1), { kind: 'short', eager: false, received: 3, size: 10 });
    const g = IN.gathering();
    assert.deepEqual(g.end(1), { kind: 'short', eager: true, received: 0, size: 10 });
  });

  test('ABORT drops what is in progress, frees the id, and is ignored for anything else', () => {
    const s = IN.streaming();
    assert.deepEqual(s.abort(2), { kind: 'ignore' });
    assert.equal(s.state.kind, 'streaming');
    assert.deepEqual(s.abort(1), { kind: 'drop', eager: false });
    assert.equal(s.state.kind, 'idle');
    assert.ok(!s.isUnfinished(1));
    const g = IN.gathering();
    assert.deepEqual(g.abort(1), { kind: 'drop', eager: true });
    assert.deepEqual(IN.idle().abort(9), { kind: 'ignore' });
  });

  test('a failed write and a closed connection end the file in progress', () => {
    const s = IN.streaming();
    s.data(2);
    s.writeFailed();
    assert.equal(s.state.kind, 'idle');
    const c = IN.streaming();
    c.data(4);
    assert.deepEqual(c.closed(), { kind: 'streaming', id: 1, path: 'f1.bin', size: 10, received: 4 });
    assert.equal(c.state.kind, 'idle');
  });
});

describe('illegal transitions', () => {
  for (const kind of ['admitting', 'streaming', 'gathering'] as const) {
    test(`OFFER while ${kind}`, () => {
      assert.throws(() => IN[kind]().offer(offer(2, 1)), code('OUT_OF_ORDER', /expected DATA or END for the file being received/));
      assert.throws(() => IN[kind]().offer(offer(2, 1, true)), code('OUT_OF_ORDER'));
    });
  }
  for (const kind of ['idle', 'admitting'] as const) {
    test(`DATA while ${kind}`, () => {
      assert.throws(() => IN[kind]().data(1), code('OUT_OF_ORDER', /DATA frame without an accepted OFFER/));
    });
    test(`END while ${kind}`, () => {
      assert.throws(() => IN[kind]().end(1), code('OUT_OF_ORDER', /END for file 1 which is not being received/));
    });
  }
  for (const kind of ['streaming', 'gathering'] as const) {
    test(`END for another id while ${kind}`, () => {
      const m = IN[kind]();
      assert.throws(() => m.end(2), code('OUT_OF_ORDER', /END for file 2/));
    });
    test(`more DATA than offered while ${kind}`, () => {
      const m = IN[kind]();
      m.data(9);
      assert.throws(() => m.data(2), code('SIZE_MISMATCH', /more DATA than offered for f1\.bin: 11 > 10 bytes/));
    });
  }
  test('an eager OFFER over the announced eagerMaxBytes', () => {
    assert.throws(() => IN.idle().offer(offer(1, EAGER_MAX + 1, true)), code('OUT_OF_ORDER', /over the announced eagerMaxBytes 1000/));
    const off = new ReceivingFiles(0);
    assert.throws(() => off.offer(offer(1, 1, true)), code('OUT_OF_ORDER'), 'eager off: any eager OFFER with bytes');
  });
  test('an OFFER reusing an id not answered yet (also after the file ended)', () => {
    const m = IN.streaming();
    m.end(1);
    assert.throws(() => m.offer(offer(1, 1)), code('OUT_OF_ORDER', /reuses id 1/));
    assert.throws(() => m.offer(offer(1, 1, true)), code('OUT_OF_ORDER', /reuses id 1/));
  });
  test('accepted() for a file not admitting is a bug', () => {
    for (const kind of ['idle', 'streaming', 'gathering'] as const) {
      assert.throws(() => IN[kind]().accepted(1, 0), code('INTERNAL'), kind);
    }
    assert.throws(() => IN.admitting().accepted(2, 0), code('INTERNAL'));
  });
});
