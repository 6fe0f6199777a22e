import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { Buffer } from 'node:buffer';
import {
  DEFAULT_LIMITS,
  FrameDecoder,
  FrameType,
  ProtocolError,
  encodeDataHeader,
  encodeFrame,
  type Frame,
} from '../../src/protocol/index.js';

const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex');
const SHA_EMPTY = 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855';
const SHA_ABC = 'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad';
const NONCE = Buffer.alloc(16, 7).toString('base64');

/** One valid frame of every type (DATA three times: 0, 1 and max bytes). */
function everyFrame(): Frame[] {
  return [
    { type: 'hello', protocol: 1, agentId: 'studio-A_1', name: 'Stage left ☃', software: 'tdxfer/0.1.0', nonce: NONCE },
    { type: 'welcome', protocol: 1, agentId: 'render-2', name: 'Render 2', software: '', nonce: NONCE, proof: SHA_ABC, inboxes: ['renders', 'Müsik'], encrypted: true },
    { type: 'auth', proof: SHA_EMPTY },
    { type: 'ready' },
    { type: 'offer', id: 4294967295, inbox: 'renders', path: 'shots/01 café.exr', size: 2 ** 40, mtimeMs: 1718000000123.456, resume: true },
    { type: 'accept', id: 0, offset: 2 ** 53, prefixSha256: SHA_ABC },
    { type: 'accept', id: 1, offset: 0, prefixSha256: null },
    { type: 'data', data: Buffer.alloc(0) },
    { type: 'data', data: Buffer.from([0x54]) },
    { type: 'data', data: Buffer.alloc(DEFAULT_LIMITS.maxDataBytes, 0xab) },
    { type: 'end', id: 9, sha256: SHA_ABC },
    { type: 'ack', id: 9, status: 'stored', path: 'shots/01 café (1).exr', sha256: SHA_ABC },
    { type: 'ack', id: 10, status: 'skipped', path: 'x', sha256: null },
    { type: 'ack', id: 11, status: 'duplicate', path: 'y', sha256: SHA_EMPTY },
    { type: 'nack', id: 12, code: 'NO_SPACE', message: 'disk full on /data', retryable: true },
    { type: 'abort', id: 13, reason: '' },
    { type: 'ping', t: -1.5 },
    { type: 'pong', t: 1e300 },
    { type: 'error', code: 'AUTH_FAILED', message: 'proof did not verify' },
  ];
}

function decodeAll(chunks: Buffer[], limits?: Partial<typeof DEFAULT_LIMITS>): Frame[] {
  const d = new FrameDecoder(limits);
  const out: Frame[] = [];
  for (const c of chunks) out.push(...d.push(c));
  assert.equal(d.buffered, 0, 'nothing left over after whole frames');
  return out;
}

function rejects(bytes: Buffer, code: string, pattern?: RegExp, limits?: Partial<typeof DEFAULT_LIMITS>): ProtocolError {
  const d = new FrameDecoder(limits);
  let caught: unknown;
  try {
    d.push(bytes);
  } catch (err) {
    caught = err;
  }
  assert.ok(caught instanceof ProtocolError, `expected ProtocolError ${code}, got ${String(caught)}`);
  assert.equal(caught.code, code);
  if (pattern) assert.match(caught.message, pattern);
  // Dead afterwards: the same error again, even for valid input.
  assert.throws(() => d.push(encodeFrame({ type: 'ready' })), (e) => e === caught);
  return caught;
}

describe('exact bytes', () => {
  const cases: Array<{ frame: Frame; bytes: Buffer }> = [
    { frame: { type: 'ready' }, bytes: hex('54 58 01 04 00 00 00 02  7b 7d') },
    { frame: { type: 'ping', t: 1 }, bytes: hex('54 58 01 20 00 00 00 07  7b 22 74 22 3a 31 7d') },
    { frame: { type: 'auth', proof: SHA_EMPTY }, bytes: Buffer.concat([hex('54 58 01 03 00 00 00 4c'), Buffer.from(`{"proof":"${SHA_EMPTY}"}`)]) },
    {
      frame: { type: 'accept', id: 3, offset: 0, prefixSha256: null },
      bytes: Buffer.concat([hex('54 58 01 11 00 00 00 27'), Buffer.from('{"id":3,"offset":0,"prefixSha256":null}')]),
    },
    { frame: { type: 'data', data: Buffer.from('abc') }, bytes: hex('54 58 01 12 00 00 00 03  61 62 63') },
    { frame: { type: 'data', data: Buffer.alloc(0) }, bytes: hex('54 58 01 12 00 00 00 00') },
  ];
  for (const { frame, bytes } of cases) {
    test(`${frame.type} encodes to and decodes from ${bytes.length} known bytes`, () => {
      assert.deepEqual(encodeFrame(frame), bytes);
      assert.deepEqual(decodeAll([bytes]), [frame]);
    });
  }

  test('encoder writes fields in wire order and drops unknown ones', () => {
    const frame = { resume: false, mtimeMs: 5, size: 3, path: 'a', inbox: 'in', id: 2, type: 'offer', extra: 'x' } as unknown as Frame;
    const json = '{"id":2,"inbox":"in","path":"a","size":3,"mtimeMs":5,"resume":false}';
    assert.deepEqual(encodeFrame(frame), Buffer.concat([hex('54 58 01 10 00 00 00 44'), Buffer.from(json)]));
  });

  test('decoder ignores unknown fields and accepts any key order', () => {
    const json = '{"sha256":"' + SHA_ABC + '","future":{"a":[1,2]},"id":77}';
    const bytes = Buffer.concat([hex('54 58 01 13 00 00 00'), Buffer.from([json.length]), Buffer.from(json)]);
    assert.deepEqual(decodeAll([bytes]), [{ type: 'end', id: 77, sha256: SHA_ABC }]);
  });

  test('encodeDataHeader writes the 8-byte DATA header and checks the limit', () => {
    assert.deepEqual(encodeDataHeader(0x010203), hex('54 58 01 12 00 01 02 03'));
    assert.deepEqual(encodeDataHeader(1048576), hex('54 58 01 12 00 10 00 00'));
    assert.throws(() => encodeDataHeader(1048577), { name: 'ProtocolError', code: 'FRAME_TOO_LARGE' });
    assert.throws(() => encodeDataHeader(-1), { code: 'FRAME_TOO_LARGE' });
    assert.throws(() => encodeDataHeader(1.5), { code: 'FRAME_TOO_LARGE' });
    assert.deepEqual(encodeDataHeader(5000, 4096 * 2), hex('54 58 01 12 00 00 13 88'));
  });

  test('FrameType codes match the spec table', () => {
    assert.deepEqual(FrameType, {
      HELLO: 1, WELCOME: 2, AUTH: 3, READY: 4, OFFER: 0x10, ACCEPT: 0x11, DATA: 0x12, END: 0x13,
      ACK: 0x14, NACK: 0x15, ABORT: 0x16, PING: 0x20, PONG: 0x21, ERROR: 0x7f,
    });
  });
});

describe('round trip', () => {
  for (const frame of everyFrame()) {
    const label = frame.type === 'data' ? `data of ${frame.data.length} bytes` : JSON.stringify(frame).slice(0, 60);
    test(label, () => {
      assert.deepEqual(decodeAll([encodeFrame(frame)]), [frame]);
    });
  }

  test('every frame concatenated in one chunk', () => {
    const frames = everyFrame();
    assert.deepEqual(decodeAll([Buffer.concat(frames.map((f) => encodeFrame(f)))]), frames);
  });

  test('small stream split at every possible point, and byte by byte', () => {
    const frames = everyFrame().filter((f) => f.type !== 'data' || f.data.length < 100);
    const stream = Buffer.concat(frames.map((f) => encodeFrame(f)));
    for (let i = 0; i <= stream.length; i++) {
      assert.deepEqual(decodeAll([stream.subarray(0, i), stream.subarray(i)]), frames, `split at ${i}`);
    }
    for (let i = 0; i < stream.length; i += 97) {
      for (let j = i; j <= stream.length; j += 89) {
        assert.deepEqual(decodeAll([stream.subarray(0, i), stream.subarray(i, j), stream.subarray(j)]), frames, `split at ${i}, ${j}`);
      }
    }
    const bytes = [...stream].map((b) => Buffer.from([b]));
    assert.deepEqual(decodeAll(bytes), frames);
  });

  test('large DATA frame split across chunks is reassembled; buffered counts held bytes', () => {
    const data = Buffer.alloc(DEFAULT_LIMITS.maxDataBytes);
    for (let i = 0; i < data.length; i++) data[i] = (i * 31) & 0xff;
    const stream = Buffer.concat([encodeFrame({ type: 'data', data }), encodeFrame({ type: 'ping', t: 2 })]);
    const d = new FrameDecoder();
    const out: Frame[] = [];
    for (let pos = 0; pos < stream.length; pos += 65536) {
      out.push(...d.push(stream.subarray(pos, pos + 65536)));
      assert.ok(d.buffered <= 8 + DEFAULT_LIMITS.maxDataBytes);
      if (pos === 0) assert.equal(d.buffered, 65536 - 8, 'payload bytes held, header parsed');
    }
    assert.deepEqual(out, [{ type: 'data', data }, { type: 'ping', t: 2 }]);
    assert.equal(d.buffered, 0);
  });

  test('DATA inside one chunk is a zero-copy view of that chunk', () => {
    const chunk = Buffer.concat([encodeFrame({ type: 'ready' }), encodeFrame({ type: 'data', data: Buffer.from('hello') })]);
    const [, data] = new FrameDecoder().push(chunk);
    assert.ok(data?.type === 'data');
    assert.equal(data.data.buffer, chunk.buffer);
    chunk[chunk.length - 1] = 0x21;
    assert.equal(data.data.toString(), 'hell!');
  });

  test('header alone, then payload: buffered tracks the partial frame', () => {
    const bytes = encodeFrame({ type: 'ping', t: 12345 });
    const d = new FrameDecoder();
    assert.deepEqual(d.push(bytes.subarray(0, 5)), []);
    assert.equal(d.buffered, 5);
    assert.deepEqual(d.push(bytes.subarray(5, 10)), []);
    assert.equal(d.buffered, 2);
    assert.deepEqual(d.push(bytes.subarray(10)), [{ type: 'ping', t: 12345 }]);
    assert.equal(d.buffered, 0);
    assert.deepEqual(d.push(Buffer.alloc(0)), []);
  });
});

describe('rejections', () => {
  test('bad magic names the bytes', () => {
    const err = rejects(hex('00 01 02 03 04 05 06 07'), 'BAD_MAGIC', /expected magic 54 58 \("TX"\), got 00 01 02 03 04 05 06 07/);
    assert.equal(err.wireCode, 'PROTOCOL_ERROR');
    assert.doesNotMatch(err.message, /looks like/);
  });

  test('bad magic: TLS ClientHello', () => {
    rejects(hex('16 03 01 02 00 01 00 01 fc 03 03'), 'BAD_MAGIC', /looks like TLS: this port expects plain tdxfer, or the peer has encryption on/);
  });

  for (const req of ['GET / HTTP/1.1\r\n', 'POST /api HTTP/1.1\r\n', 'HEAD / HTTP/1.0\r\n']) {
    test(`bad magic: HTTP ${req.split(' ')[0]}`, () => {
      rejects(Buffer.from(req), 'BAD_MAGIC', /looks like HTTP/);
    });
  }

  test('bad magic: original TOX framing (2-byte length + {")', () => {
    const json = '{"filename": "a.txt", "size": 3}';
    const bytes = Buffer.concat([Buffer.from([0, json.length]), Buffer.from(json)]);
    rejects(bytes, 'BAD_MAGIC', /looks like the original TOX protocol: point it at the legacy port/);
  });

  test('magic is checked only once 8 bytes are there, at any split', () => {
    const d = new FrameDecoder();
    for (const b of Buffer.from('GET / H')) assert.deepEqual(d.push(Buffer.from([b])), []);
    assert.throws(() => d.push(Buffer.from('T')), /looks like HTTP/);
  });

  test('bad version is distinct from bad magic and carries the version', () => {
    const err = rejects(hex('54 58 02 01 00 00 00 02 7b 7d'), 'BAD_VERSION', /version 2.*version 1/);
    assert.equal(err.version, 2);
    assert.equal(err.wireCode, 'UNSUPPORTED_PROTOCOL');
    assert.equal(rejects(hex('54 58 00 04 00 00 00 00'), 'BAD_VERSION').version, 0);
    assert.equal(rejects(hex('54 58 ff 04 ff ff ff ff'), 'BAD_VERSION').version, 255, 'version checked before length');
  });

  for (const code of [0x00, 0x05, 0x0f, 0x17, 0x22, 0x7e, 0x80, 0xff]) {
    test(`unknown type 0x${code.toString(16)}`, () => {
      const err = rejects(Buffer.from([0x54, 0x58, 1, code, 0, 0, 0, 0]), 'UNKNOWN_TYPE', new RegExp(`0x${code.toString(16).padStart(2, '0')}`));
      assert.equal(err.wireCode, 'PROTOCOL_ERROR');
    });
  }

  test('control frame over maxControlBytes is rejected from the header alone', () => {
    const d = new FrameDecoder();
    assert.deepEqual(d.push(hex('54 58 01 10 00 01 00 00')), [], 'exactly 65536 is allowed');
    assert.equal(d.buffered, 0);
    const header = hex('54 58 01 10 00 01 00 01');
    const d2 = new FrameDecoder();
    assert.throws(() => d2.push(Buffer.concat([header, Buffer.alloc(200000, 0x20)])), { code: 'FRAME_TOO_LARGE', message: /OFFER frame announces 65537 payload bytes, over the 65536-byte limit \(maxControlBytes\)/ });
    assert.equal(d2.buffered, 0);
    rejects(hex('54 58 01 04 00 00 01 01'), 'FRAME_TOO_LARGE', /256-byte limit/, { maxControlBytes: 256 });
  });

  test('DATA over maxDataBytes is rejected from the header alone, before any payload byte', () => {
    const d = new FrameDecoder();
    assert.throws(() => d.push(hex('54 58 01 12 00 10 00 01')), { code: 'FRAME_TOO_LARGE', message: /DATA frame announces 1048577.*maxDataBytes/ });
    assert.equal(d.buffered, 0);
    rejects(hex('54 58 01 12 ff ff ff ff'), 'FRAME_TOO_LARGE');
    const d3 = new FrameDecoder({ maxDataBytes: 10 });
    assert.deepEqual(d3.push(hex('54 58 01 12 00 00 00 0a 01 02')), []);
    assert.equal(d3.buffered, 2);
    assert.throws(() => new FrameDecoder({ maxDataBytes: 10 }).push(hex('54 58 01 12 00 00 00 0b')), { code: 'FRAME_TOO_LARGE' });
  });

  const badJson: Array<[string, Buffer]> = [
    ['empty payload', Buffer.alloc(0)],
    ['not JSON', Buffer.from('{id:1}')],
    ['truncated JSON', Buffer.from('{"t":1')],
    ['array', Buffer.from('[1,2]')],
    ['null', Buffer.from('null')],
    ['number', Buffer.from('5')],
    ['string', Buffer.from('"x"')],
    ['invalid UTF-8', Buffer.concat([Buffer.from('{"t":1,"x":"'), hex('c3 28'), Buffer.from('"}')])],
    ['UTF-8 BOM', Buffer.concat([hex('ef bb bf'), Buffer.from('{"t":1}')])],
  ];
  for (const [label, payload] of badJson) {
    test(`bad JSON: ${label}`, () => {
      const header = Buffer.from([0x54, 0x58, 1, FrameType.PING, 0, 0, 0, 0]);
      header.writeUInt32BE(payload.length, 4);
      rejects(Buffer.concat([header, payload]), 'BAD_JSON', /PING frame/);
    });
  }

  test('invalid field in a received frame: BAD_MESSAGE naming field and value', () => {
    const json = '{"id":1,"inbox":"in","path":"a","size":1099511627777,"mtimeMs":0,"resume":true}';
    const header = hex('54 58 01 10 00 00 00 00');
    header.writeUInt32BE(json.length, 4);
    const err = rejects(Buffer.concat([header, Buffer.from(json)]), 'BAD_MESSAGE', /OFFER.*`size`.*integer from 0 to 1099511627776 \(maxFileBytes\), got 1099511627777 \(number\)/);
    assert.equal(err.field, 'size');
    assert.equal(err.frame, 'offer');
    assert.equal(err.wireCode, 'TOO_LARGE');
  });

  test('size over a configured maxFileBytes is rejected; at the limit it passes', () => {
    const at = encodeFrame({ type: 'offer', id: 1, inbox: 'in', path: 'a', size: 1000, mtimeMs: 0, resume: false });
    assert.equal(decodeAll([at], { maxFileBytes: 1000 }).length, 1);
    const over = encodeFrame({ type: 'offer', id: 1, inbox: 'in', path: 'a', size: 1001, mtimeMs: 0, resume: false });
    rejects(over, 'BAD_MESSAGE', /`size`.*0 to 1000/, { maxFileBytes: 1000 });
  });

  test('frames before a bad one in the same chunk are dropped with the dead decoder', () => {
    const d = new FrameDecoder();
    assert.throws(() => d.push(Buffer.concat([encodeFrame({ type: 'ready' }), hex('54 58 01 99 00 00 00 00')])), { code: 'UNKNOWN_TYPE' });
    assert.throws(() => d.push(Buffer.alloc(0)), { code: 'UNKNOWN_TYPE' });
    assert.equal(d.buffered, 0);
  });

  test('encoder refuses oversize control payloads and bad limits', () => {
    const inboxes = Array.from({ length: 256 }, (_, i) => `${'€'.repeat(120)}${i}`);
    assert.throws(
      () => encodeFrame({ type: 'welcome', protocol: 1, agentId: 'a', name: 'n', software: '', nonce: NONCE, proof: SHA_ABC, inboxes, encrypted: false }),
      { code: 'FRAME_TOO_LARGE', message: /WELCOME.*65536-byte limit/ },
    );
    assert.throws(() => encodeFrame({ type: 'bogus' } as unknown as Frame), { code: 'UNKNOWN_TYPE' });
    assert.throws(() => new FrameDecoder({ maxDataBytes: -1 }), RangeError);
    assert.throws(() => new FrameDecoder({ maxControlBytes: 2 ** 32 }), RangeError);
  });
});
