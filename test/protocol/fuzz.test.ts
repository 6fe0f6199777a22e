/**
 * Property tests of the frame codec (fast-check). Every input, however hostile, must end
 * in frames or a ProtocolError, never another exception, and never hold more than one
 * header plus one payload limit; results must not depend on how the bytes were split.
 */
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { Buffer } from 'node:buffer';
import fc from 'fast-check';
import {
  DEFAULT_LIMITS,
  FrameDecoder,
  FrameType,
  ProtocolError,
  encodeFrame,
  type DecoderLimits,
  type Frame,
} from '../../src/protocol/index.js';

const RUNS = { numRuns: 400 };

/** Feed `stream` cut at `cuts`; return frames and the error (if any), checking the buffer bound after every push. */
function feed(stream: Uint8Array, cuts: number[], limits?: Partial<DecoderLimits>): { frames: Frame[]; error: unknown } {
  const d = new FrameDecoder(limits);
  const bound = 8 + Math.max(d.limits.maxControlBytes, d.limits.maxDataBytes);
  const points = [...new Set(cuts.map((c) => c % (stream.length + 1)))].sort((a, b) => a - b);
  const frames: Frame[] = [];
  let prev = 0;
  try {
    for (const p of [...points, stream.length]) {
      frames.push(...d.push(Buffer.from(stream.buffer, stream.byteOffset + prev, p - prev)));
      prev = p;
      assert.ok(d.buffered <= bound, `buffered ${d.buffered} > ${bound}`);
    }
  } catch (err) {
    if (err instanceof assert.AssertionError) throw err;
    return { frames, error: err };
  }
  return { frames, error: null };
}

function assertSameOutcome(a: { frames: Frame[]; error: unknown }, b: { frames: Frame[]; error: unknown }): void {
  for (const r of [a, b]) {
    if (r.error !== null) assert.ok(r.error instanceof ProtocolError, `not a ProtocolError: ${String(r.error)}`);
  }
  if (a.error === null && b.error === null) assert.deepEqual(a.frames, b.frames);
  else assert.equal((a.error as Error | null)?.message, (b.error as Error | null)?.message);
}

// ---- arbitraries of valid frames -------------------------------------------------
const notNegZero = (n: number): boolean => !Object.is(n, -0);
const hex64 = fc.stringMatching(/^[0-9a-f]{64}$/);
const agentId = fc.stringMatching(/^[A-Za-z0-9_-]{1,64}$/);
const printable = (min: number, max: number) =>
  fc.string({ unit: 'binary', minLength: min, maxLength: max }).filter((s) => !/[\p{Cc}\p{Cs}]/u.test(s));
const nonce = fc.uint8Array({ minLength: 16, maxLength: 64 }).map((b) => Buffer.from(b).toString('base64'));
const id = fc.integer({ min: 0, max: 2 ** 32 - 1 });
const path = fc.string({ unit: 'binary', minLength: 1, maxLength: 200 }).filter((s) => !s.includes('\0') && Buffer.byteLength(s) <= 1024);
const code = fc.stringMatching(/^[A-Z0-9_]{1,64}$/);
const freeText = fc.oneof(fc.string({ unit: 'binary', maxLength: 200 }), fc.constant('x'.repeat(2048)));
const time = fc.double({ noNaN: true, noDefaultInfinity: true }).filter(notNegZero);

const frameArb: fc.Arbitrary<Frame> = fc.oneof(
  fc.record({ type: fc.constant('hello' as const), protocol: fc.constant(1 as const), agentId, name: printable(1, 128), software: printable(0, 64), nonce }),
  fc.record({
    type: fc.constant('welcome' as const), protocol: fc.constant(1 as const), agentId, name: printable(1, 128), software: printable(0, 64), nonce,
    proof: hex64, inboxes: fc.array(printable(1, 128), { maxLength: 20 }), encrypted: fc.boolean(),
  }),
  fc.record({ type: fc.constant('auth' as const), proof: hex64 }),
  fc.constant<Frame>({ type: 'ready' }),
  fc.record({
    type: fc.constant('offer' as const), id, inbox: printable(1, 128), path,
    size: fc.bigInt({ min: 0n, max: 2n ** 40n }).map(Number),
    mtimeMs: fc.double({ min: 0, max: 1e16, noNaN: true }).filter(notNegZero), resume: fc.boolean(),
  }),
  fc.record({ type: fc.constant('accept' as const), id, offset: fc.bigInt({ min: 0n, max: 2n ** 53n }).map(Number), prefixSha256: fc.option(hex64, { nil: null }) }),
  fc.record({ type: fc.constant('data' as const), data: fc.uint8Array({ maxLength: 3000 }).map((b) => Buffer.from(b)) }),
  fc.record({ type: fc.constant('end' as const), id, sha256: hex64 }),
  fc.record({ type: fc.constant('ack' as const), id, status: fc.constantFrom('stored' as const, 'skipped' as const, 'duplicate' as const), path, sha256: fc.option(hex64, { nil: null }) }),
  fc.record({ type: fc.constant('nack' as const), id, code, message: freeText, retryable: fc.boolean() }),
  fc.record({ type: fc.constant('abort' as const), id, reason: freeText }),
  fc.record({ type: fc.constant('ping' as const), t: time }),
  fc.record({ type: fc.constant('pong' as const), t: time }),
  fc.record({ type: fc.constant('error' as const), code, message: freeText }),
).map((f) => ({ ...f }) as Frame); // fc.record builds null-prototype objects; the decoder returns plain ones

// ---- arbitraries of hostile byte streams ------------------------------------------
const codes = Object.values(FrameType) as number[];
/** A header that passes magic/version (mostly) with a random type and a length near the payload it carries. */
const segment = fc.oneof(
  fc.uint8Array({ maxLength: 64 }),
  fc.record({
    type: fc.oneof(fc.constantFrom(...codes), fc.integer({ min: 0, max: 255 })),
    version: fc.oneof({ weight: 5, arbitrary: fc.constant(1) }, { weight: 1, arbitrary: fc.integer({ min: 0, max: 255 }) }),
    payload: fc.oneof(fc.uint8Array({ maxLength: 80 }), fc.json({ maxDepth: 3 }).map((j) => Buffer.from(j)), fc.object().map((o) => Buffer.from(JSON.stringify(o) ?? 'null'))),
    lengthDelta: fc.oneof({ weight: 4, arbitrary: fc.constant(0) }, { weight: 1, arbitrary: fc.integer({ min: -5, max: 2 ** 32 }) }),
  }).map(({ type, version, payload, lengthDelta }) => {
    const header = Buffer.from([0x54, 0x58, version, type, 0, 0, 0, 0]);
    header.writeUInt32BE(Math.max(0, Math.min(0xffffffff, payload.length + lengthDelta)), 4);
    return new Uint8Array(Buffer.concat([header, payload]));
  }),
);
const hostileStream = fc.array(segment, { maxLength: 8 }).map((parts) => new Uint8Array(Buffer.concat(parts)));
const cuts = fc.array(fc.nat(), { maxLength: 12 });
const smallLimits = fc.oneof(
  fc.constant<Partial<DecoderLimits>>({}),
  fc.record({ maxControlBytes: fc.integer({ min: 0, max: 100 }), maxDataBytes: fc.integer({ min: 0, max: 100 }), maxFileBytes: fc.integer({ min: 0, max: 2 ** 41 }) }),
);

/**
 * A decoded frame is valid: it encodes, and decoding that gives a frame that encodes to the
 * same bytes and round-trips exactly. (Not `decode(encode(f))` equal to `f` itself: JSON
 * numbers are canonicalised on the way, e.g. a received `-1e-348` is -0, sent back as `0`.)
 */
function assertReencodes(f: Frame, limits?: Partial<DecoderLimits>): void {
  const bytes = encodeFrame(f, limits);
  const again = new FrameDecoder(limits).push(bytes);
  assert.equal(again.length, 1);
  assert.deepEqual(encodeFrame(again[0]!, limits), bytes);
  assert.deepEqual(new FrameDecoder(limits).push(encodeFrame(again[0]!, limits)), again);
}

describe('decoder properties', () => {
  test('random bytes in random splits: frames or ProtocolError, bounded buffer, split-independent', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 400 }), cuts, smallLimits, (bytes, c, limits) => {
        assertSameOutcome(feed(bytes, [], limits), feed(bytes, c, limits));
      }),
      RUNS,
    );
  });

  test('header-shaped hostile streams: frames or ProtocolError, bounded buffer, split-independent', () => {
    fc.assert(
      fc.property(hostileStream, cuts, smallLimits, (bytes, c, limits) => {
        const whole = feed(bytes, [], limits);
        assertSameOutcome(whole, feed(bytes, c, limits));
        // Whatever decoded is valid: it re-encodes to itself (canonical JSON may be longer
        // than what arrived, e.g. 1e5 -> 100000, so only maxFileBytes is kept).
        const relaxed = { maxFileBytes: limits.maxFileBytes ?? DEFAULT_LIMITS.maxFileBytes };
        for (const f of whole.frames) assertReencodes(f, relaxed);
      }),
      RUNS,
    );
  });

  test('valid frames round trip, alone and concatenated in random splits', () => {
    fc.assert(
      fc.property(fc.array(frameArb, { minLength: 1, maxLength: 6 }), cuts, (frames, c) => {
        for (const f of frames) assert.deepEqual(new FrameDecoder().push(encodeFrame(f)), [f]);
        const stream = new Uint8Array(Buffer.concat(frames.map((f) => encodeFrame(f))));
        const out = feed(stream, c);
        assert.equal(out.error, null);
        assert.deepEqual(out.frames, frames);
      }),
      RUNS,
    );
  });

  test('one flipped byte in a valid stream: frames or ProtocolError', () => {
    fc.assert(
      fc.property(fc.array(frameArb, { minLength: 1, maxLength: 4 }), fc.nat(), fc.integer({ min: 1, max: 255 }), cuts, (frames, at, xor, c) => {
        const stream = new Uint8Array(Buffer.concat(frames.map((f) => encodeFrame(f))));
        const pos = at % stream.length;
        stream[pos] = stream[pos]! ^ xor;
        const whole = feed(stream, []);
        assertSameOutcome(whole, feed(stream, c));
        for (const f of whole.frames) assertReencodes(f);
      }),
      RUNS,
    );
  });

  test('splitData: the same frames, except DATA payloads cut where the chunks were cut (zero copy, same bytes in order)', () => {
    /** Consecutive DATA frames joined into one: the byte stream the receiver writes. */
    const joinData = (frames: Frame[]): unknown[] => {
      const out: unknown[] = [];
      let data: Buffer[] | null = null;
      for (const f of frames) {
        if (f.type === 'data') {
          (data ??= []).push(f.data);
          continue;
        }
        if (data) out.push({ type: 'data', data: Buffer.concat(data) });
        data = null;
        out.push(f);
      }
      if (data) out.push({ type: 'data', data: Buffer.concat(data) });
      return out;
    };
    fc.assert(
      fc.property(fc.array(frameArb, { minLength: 1, maxLength: 6 }), cuts, (frames, c) => {
        const stream = Buffer.concat(frames.map((f) => encodeFrame(f)));
        const points = [...new Set(c.map((x) => x % (stream.length + 1)))].sort((a, b) => a - b);
        const d = new FrameDecoder({}, { splitData: true });
        const got: Frame[] = [];
        let prev = 0;
        for (const p of [...points, stream.length]) {
          const chunk = stream.subarray(prev, p);
          for (const f of d.push(chunk)) {
            if (f.type === 'data' && f.data.length > 0) assert.equal(f.data.buffer, chunk.buffer, 'a DATA part is a view of the chunk, not a copy');
            got.push(f);
          }
          prev = p;
          assert.equal(d.buffered <= 8 + d.limits.maxControlBytes, true, 'never holds DATA bytes');
        }
        assert.deepEqual(joinData(got), joinData(frames));
      }),
      RUNS,
    );
  });

  test('the buffer bound holds for the default limits with maximal frames', () => {
    const big = Buffer.concat([encodeFrame({ type: 'data', data: Buffer.alloc(DEFAULT_LIMITS.maxDataBytes) }), encodeFrame({ type: 'ready' })]);
    fc.assert(
      fc.property(cuts, (c) => {
        const out = feed(big, c.map((x) => x * 997));
        assert.equal(out.error, null);
        assert.equal(out.frames.length, 2);
      }),
      { numRuns: 30 },
    );
  });
});
