import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { Buffer } from 'node:buffer';
import {
  DEFAULT_LIMITS,
  FrameDecoder,
  FrameType,
  PeerError,
  ProtocolError,
  SCHEMAS,
  WIRE_CODES,
  encodeFrame,
  errorFrameFor,
  isRetryable,
  peerErrorFrom,
  type ControlPayloads,
  type ControlTypeName,
  type Frame,
} from '../../src/protocol/index.js';
import { TdxError } from '../../src/errors.js';

const SHA = 'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad';
const XXH = '06b05ab6733a618578af5f94892f3950';
const nonceOf = (n: number): string => Buffer.alloc(n, 1).toString('base64');

const BASE: { [K in ControlTypeName]: ControlPayloads[K] } = {
  hello: { protocol: 1, agentId: 'a-1', name: 'Alpha', software: 'tdxfer/0.1.0', nonce: nonceOf(16) },
  welcome: { protocol: 1, agentId: 'b_2', name: 'Beta', software: 'tdxfer/0.1.0', nonce: nonceOf(16), proof: SHA, inboxes: ['in'], encrypted: false },
  auth: { proof: SHA },
  ready: {},
  offer: { id: 1, inbox: 'in', path: 'dir/file.txt', size: 10, mtimeMs: 1, resume: true },
  accept: { id: 1, offset: 0, prefixSha256: null },
  end: { id: 1, sha256: SHA },
  ack: { id: 1, status: 'stored', path: 'dir/file.txt', sha256: SHA },
  nack: { id: 1, code: 'NO_SPACE', message: 'full', retryable: true },
  abort: { id: 1, reason: 'source changed' },
  ping: { t: 1 },
  pong: { t: 1 },
  error: { code: 'PROTOCOL_ERROR', message: 'bad' },
};

const MISSING = Symbol('missing');
type Value = unknown;

/** Payload JSON text with `field` set to `value` (or removed); ±Infinity written as 1e999. */
function payloadJson(type: ControlTypeName, field: string, value: Value): string {
  const obj: Record<string, unknown> = { ...BASE[type] };
  if (value === MISSING) delete obj[field];
  else obj[field] = value;
  return JSON.stringify(obj, (_k, v: unknown) => (v === Infinity ? '__INF__' : v === -Infinity ? '__NINF__' : v))
    .replace('"__INF__"', '1e999')
    .replace('"__NINF__"', '-1e999');
}

function controlBytes(type: ControlTypeName, json: string): Buffer {
  const payload = Buffer.from(json, 'utf8');
  const header = Buffer.from([0x54, 0x58, 1, FrameType[type.toUpperCase() as keyof typeof FrameType], 0, 0, 0, 0]);
  header.writeUInt32BE(payload.length, 4);
  return Buffer.concat([header, payload]);
}

function decodeOne(type: ControlTypeName, json: string): Frame {
  const frames = new FrameDecoder().push(controlBytes(type, json));
  assert.equal(frames.length, 1);
  return frames[0]!;
}

/** [type, field, bad value, what the message must say is allowed, encoder truncates instead of rejecting] */
type Case = [ControlTypeName, string, Value, RegExp, boolean?];
const long = (n: number, ch = 'x'): string => ch.repeat(n);
const INVALID: Case[] = [
  ['hello', 'protocol', 2, /1 \(this agent speaks tdxfer protocol v1\)/],
  ['hello', 'protocol', '1', /got "1" \(string\)/],
  ['hello', 'protocol', MISSING, /got nothing \(field missing\)/],
  ['hello', 'agentId', '', /1 to 64 characters \(letters, digits, _ and -\)/],
  ['hello', 'agentId', long(65), /1 to 64/],
  ['hello', 'agentId', 'has space', /letters, digits/],
  ['hello', 'agentId', 'ü', /letters, digits/],
  ['hello', 'agentId', 5, /got 5 \(number\)/],
  ['hello', 'name', '', /1 to 128 characters \(no control characters\)/],
  ['hello', 'name', long(129), /1 to 128/],
  ['hello', 'name', 'tab\there', /no control characters/],
  ['hello', 'name', 'nul\0', /no control/],
  ['hello', 'name', 'c1\u0085', /no control/],
  ['hello', 'name', 'lone\ud800', /no control/],
  ['hello', 'name', null, /got null \(null\)/],
  ['hello', 'software', long(65), /at most 64 characters/],
  ['hello', 'software', 'a\nb', /no control/],
  ['hello', 'nonce', nonceOf(15), /base64 of 16 to 64 bytes/],
  ['hello', 'nonce', nonceOf(65), /16 to 64 bytes/],
  ['hello', 'nonce', 'not base64 at all!!!!!!!', /base64/],
  ['hello', 'nonce', nonceOf(16).replace(/=+$/, ''), /padded base64/],
  ['hello', 'nonce', '', /base64/],
  ['welcome', 'proof', SHA.toUpperCase(), /64 to 64 characters \(lowercase hex\)/],
  ['welcome', 'proof', SHA.slice(1), /lowercase hex/],
  ['welcome', 'proof', long(64, 'g'), /lowercase hex/],
  ['welcome', 'inboxes', Array.from({ length: 257 }, (_, i) => `in${i}`), /at most 256 entries/],
  ['welcome', 'inboxes', [''], /each a string of 1 to 128/],
  ['welcome', 'inboxes', [long(129)], /1 to 128/],
  ['welcome', 'inboxes', 'in', /got "in" \(string\)/],
  ['welcome', 'inboxes', [1], /array/],
  ['welcome', 'encrypted', 'true', /true or false/],
  ['welcome', 'encrypted', 1, /true or false/],
  ['welcome', 'protocol', 0, /protocol v1/],
  ['auth', 'proof', MISSING, /lowercase hex/],
  ['offer', 'id', -1, /integer from 0 to 4294967295/],
  ['offer', 'id', 2 ** 32, /4294967295/],
  ['offer', 'id', 1.5, /integer/],
  ['offer', 'id', '1', /got "1" \(string\)/],
  ['offer', 'inbox', '', /1 to 128 characters/],
  ['offer', 'inbox', long(129), /1 to 128/],
  ['offer', 'path', '', /1 to 4096 UTF-8 bytes \(no NUL\)/],
  ['offer', 'path', 'é'.repeat(2049), /4096 UTF-8 bytes/],
  ['offer', 'path', 'a\0b', /no NUL/],
  ['offer', 'size', -1, /integer from 0 to 1099511627776 \(maxFileBytes\)/],
  ['offer', 'size', 2 ** 40 + 1, /maxFileBytes/],
  ['offer', 'size', 1.5, /integer/],
  ['offer', 'size', 2 ** 53, /maxFileBytes/],
  ['offer', 'size', '5', /got "5"/],
  ['offer', 'mtimeMs', -1, /finite number >= 0/],
  ['offer', 'mtimeMs', Infinity, /finite number >= 0/],
  ['offer', 'mtimeMs', null, /finite/],
  ['offer', 'resume', 'yes', /true or false/],
  ['offer', 'resume', 0, /true or false/],
  ['offer', 'resume', MISSING, /true or false/],
  ['offer', 'eager', 'yes', /true or false \(or left out\)/],
  ['offer', 'eager', null, /true or false/],
  ['welcome', 'eagerMaxBytes', -1, /integer from 0 to 16777216 \(or left out\)/],
  ['welcome', 'eagerMaxBytes', 2 ** 24 + 1, /16777216/],
  ['welcome', 'eagerMaxBytes', '1', /got "1" \(string\)/],
  ['accept', 'offset', -1, /integer from 0 to 9007199254740992/],
  ['accept', 'offset', 2 ** 53 + 2, /9007199254740992/],
  ['accept', 'offset', 0.5, /integer/],
  ['accept', 'prefixSha256', 'abc', /null or a string of 64 to 64 characters \(lowercase hex\)/],
  ['accept', 'prefixSha256', MISSING, /null or/],
  ['end', 'sha256', null, /lowercase hex/],
  ['end', 'sha256', SHA.toUpperCase(), /lowercase hex/],
  ['end', 'xxh128', SHA, /a string of 32 to 32 characters \(lowercase hex\) \(or left out\)/],
  ['end', 'xxh128', null, /lowercase hex/],
  ['end', 'xxh128', XXH.toUpperCase(), /lowercase hex/],
  ['ack', 'xxh128', 'x', /null or a string of 32/],
  ['accept', 'prefixXxh128', SHA, /null or a string of 32 to 32 characters/],
  ['hello', 'hashes', 'xxh3-128', /an array of at most 16 entries, each a string of 1 to 32 characters \(a-z, 0-9 and -\) \(or left out\)/],
  ['hello', 'hashes', ['SHA256'], /a-z, 0-9 and -/],
  ['hello', 'hashes', [''], /1 to 32/],
  ['hello', 'hashes', Array.from({ length: 17 }, (_, i) => `h${i}`), /at most 16 entries/],
  ['welcome', 'hash', ['sha256'], /a string of 1 to 32 characters \(a-z, 0-9 and -\) \(or left out\)/],
  ['welcome', 'hash', null, /a-z, 0-9 and -/],
  ['end', 'id', MISSING, /integer/],
  ['ack', 'status', 'ok', /one of "stored", "skipped", "duplicate"/],
  ['ack', 'path', '', /1 to 4096 UTF-8 bytes/],
  ['ack', 'sha256', 'x', /null or/],
  ['nack', 'code', 'no_space', /1 to 64 characters \(A-Z, 0-9 and _\)/],
  ['nack', 'code', '', /1 to 64/],
  ['nack', 'code', long(65, 'A'), /1 to 64/],
  ['nack', 'code', 'A-B', /A-Z, 0-9 and _/],
  ['nack', 'message', long(2049), /at most 2048 characters/, true],
  ['nack', 'message', 7, /at most 2048/],
  ['nack', 'retryable', MISSING, /true or false/],
  ['abort', 'reason', long(2049), /at most 2048 characters/, true],
  ['abort', 'reason', 5, /at most 2048/],
  ['ping', 't', Infinity, /a finite number/],
  ['ping', 't', -Infinity, /a finite number/],
  ['ping', 't', '1', /a finite number/],
  ['ping', 't', null, /a finite number/],
  ['pong', 't', MISSING, /a finite number/],
  ['error', 'code', MISSING, /A-Z/],
  ['error', 'message', long(2049), /at most 2048/, true],
];

describe('field rules (decoder rejects, encoder refuses)', () => {
  for (const [type, field, value, allowed, truncates] of INVALID) {
    const shown = value === MISSING ? 'missing' : typeof value === 'string' && value.length > 20 ? `${value.slice(0, 12)}…(${value.length})` : String(value);
    test(`${type}.${field} = ${JSON.stringify(shown)}`, () => {
      let caught: unknown;
      try {
        decodeOne(type, payloadJson(type, field, value));
      } catch (err) {
        caught = err;
      }
      assert.ok(caught instanceof ProtocolError, `decoder accepted ${type}.${field}`);
      assert.equal(caught.code, 'BAD_MESSAGE');
      assert.equal(caught.field, field);
      assert.equal(caught.frame, type);
      assert.match(caught.message, new RegExp(`Received ${type.toUpperCase()} frame with invalid field \`${field}\`: expected `));
      assert.match(caught.message, allowed);

      const frame = { type, ...BASE[type], [field]: value === MISSING ? undefined : value } as Frame;
      if (truncates) {
        const decoded = new FrameDecoder().push(encodeFrame(frame))[0] as unknown as Record<string, string>;
        assert.equal(decoded[field], long(2048), 'encoder truncates free text to 2048 characters');
      } else {
        assert.throws(() => encodeFrame(frame), (err: unknown) => err instanceof ProtocolError && err.code === 'BAD_MESSAGE' && err.field === field && /^Cannot send /.test(err.message));
      }
    });
  }

  test('every schema field has at least one rejection case (fields shared between types share rules)', () => {
    for (const [type, fields] of Object.entries(SCHEMAS)) {
      for (const field of Object.keys(fields)) {
        assert.ok(INVALID.some(([, f]) => f === field), `${type}.${field} has no rejection case`);
      }
    }
  });

  test('fields added later (offer.eager, welcome.eagerMaxBytes) may be left out, and then stay out', () => {
    const offer = decodeOne('offer', '{"id":1,"inbox":"i","path":"p","size":1,"mtimeMs":0,"resume":true}');
    assert.deepEqual(offer, { type: 'offer', id: 1, inbox: 'i', path: 'p', size: 1, mtimeMs: 0, resume: true });
    const eager = decodeOne('offer', '{"id":1,"inbox":"i","path":"p","size":1,"mtimeMs":0,"resume":false,"eager":true}');
    assert.equal((eager as { eager?: boolean }).eager, true);
  });

  test('v1.1 hash fields may be left out: a HELLO / WELCOME / ACCEPT / END / ACK of the previous version decodes as before', () => {
    // Exactly the payloads an agent of the previous version sends (no hashes, no hash, sha256 digests).
    const hello = decodeOne('hello', '{"protocol":1,"agentId":"a","name":"A","software":"tdxfer/0.2.0","nonce":"AAAAAAAAAAAAAAAAAAAAAA=="}');
    assert.equal((hello as { hashes?: unknown }).hashes, undefined);
    const welcome = decodeOne('welcome', `{"protocol":1,"agentId":"b","name":"B","software":"tdxfer/0.2.0","nonce":"AAAAAAAAAAAAAAAAAAAAAA==","proof":"${SHA}","inboxes":[],"encrypted":true,"eagerMaxBytes":1048576}`);
    assert.equal((welcome as { hash?: unknown }).hash, undefined);
    assert.deepEqual(decodeOne('end', `{"id":3,"sha256":"${SHA}"}`), { type: 'end', id: 3, sha256: SHA });
    assert.deepEqual(decodeOne('accept', `{"id":3,"offset":5,"prefixSha256":"${SHA}"}`), { type: 'accept', id: 3, offset: 5, prefixSha256: SHA });
    assert.deepEqual(decodeOne('ack', `{"id":3,"status":"stored","path":"p","sha256":"${SHA}"}`), { type: 'ack', id: 3, status: 'stored', path: 'p', sha256: SHA });
    // And what a v1.1 agent sends on a SHA-256 connection is byte-for-byte what the previous version sent.
    assert.equal(encodeFrame({ type: 'end', id: 3, sha256: SHA }).toString('latin1'), controlBytes('end', `{"id":3,"sha256":"${SHA}"}`).toString('latin1'));
  });

  test('protocol mismatch maps to UNSUPPORTED_PROTOCOL, size to TOO_LARGE, others to PROTOCOL_ERROR', () => {
    const wire = (type: ControlTypeName, field: string, value: Value): string => {
      try {
        decodeOne(type, payloadJson(type, field, value));
      } catch (err) {
        return (err as ProtocolError).wireCode;
      }
      return 'accepted';
    };
    assert.equal(wire('hello', 'protocol', 2), 'UNSUPPORTED_PROTOCOL');
    assert.equal(wire('offer', 'size', 2 ** 41), 'TOO_LARGE');
    assert.equal(wire('offer', 'path', ''), 'PROTOCOL_ERROR');
  });
});

describe('boundary values are accepted', () => {
  const VALID: Array<[ControlTypeName, string, Value]> = [
    ['hello', 'agentId', long(64, 'Z')],
    ['hello', 'agentId', 'a'],
    ['hello', 'name', '🎬'.repeat(128)],
    ['hello', 'name', 'Ü ☃ 名前 "quoted" \\ slash'],
    ['hello', 'software', ''],
    ['hello', 'software', long(64)],
    ['hello', 'nonce', nonceOf(64)],
    ['hello', 'nonce', nonceOf(17)],
    ['hello', 'nonce', nonceOf(18)],
    ['welcome', 'inboxes', []],
    ['welcome', 'eagerMaxBytes', 0],
    ['welcome', 'eagerMaxBytes', 2 ** 24],
    ['offer', 'eager', false],
    ['hello', 'hashes', ['xxh3-128', 'sha256']],
    ['hello', 'hashes', ['blake3-256', 'sha256']],
    ['hello', 'hashes', []],
    ['welcome', 'hash', 'xxh3-128'],
    ['welcome', 'hash', 'sha256'],
    ['accept', 'prefixXxh128', XXH],
    ['accept', 'prefixXxh128', null],
    ['end', 'xxh128', XXH],
    ['ack', 'xxh128', XXH],
    ['ack', 'xxh128', null],
    ['welcome', 'inboxes', Array.from({ length: 256 }, (_, i) => `inbox-${i}`)],
    ['offer', 'id', 0],
    ['offer', 'id', 2 ** 32 - 1],
    ['offer', 'path', 'é'.repeat(2048)],
    ['offer', 'path', '../../etc/passwd'],
    ['offer', 'size', 0],
    ['offer', 'size', 2 ** 40],
    ['offer', 'mtimeMs', 0],
    ['offer', 'mtimeMs', 1718000000123.457],
    ['accept', 'offset', 2 ** 53],
    ['accept', 'prefixSha256', SHA],
    ['ack', 'sha256', null],
    ['ack', 'status', 'duplicate'],
    ['nack', 'code', long(64, 'A')],
    ['nack', 'message', ''],
    ['nack', 'message', long(2048)],
    ['abort', 'reason', '☃'.repeat(2048)],
    ['ping', 't', -123.25],
    ['ping', 't', Number.MAX_VALUE],
  ];
  for (const [type, field, value] of VALID) {
    test(`${type}.${field}`, () => {
      const json = payloadJson(type, field, value);
      const expected = { type, ...BASE[type], [field]: value } as Frame;
      assert.deepEqual(decodeOne(type, json), expected);
      assert.deepEqual(new FrameDecoder().push(encodeFrame(expected)), [expected]);
    });
  }

  test('maxFileBytes is a decoder option', () => {
    const json = payloadJson('offer', 'size', 2 ** 50);
    assert.throws(() => new FrameDecoder().push(controlBytes('offer', json)), { code: 'BAD_MESSAGE' });
    const [frame] = new FrameDecoder({ maxFileBytes: 2 ** 52 }).push(controlBytes('offer', json));
    assert.equal(frame?.type === 'offer' && frame.size, 2 ** 50);
    assert.equal(DEFAULT_LIMITS.maxFileBytes, 2 ** 40);
  });

  test('free text truncation keeps surrogate pairs whole', () => {
    const message = '🎬'.repeat(2100);
    const [frame] = new FrameDecoder().push(encodeFrame({ type: 'error', code: 'IO_ERROR', message }));
    assert.ok(frame?.type === 'error');
    assert.equal(frame.message, '🎬'.repeat(2048));
  });
});

describe('wire codes', () => {
  test('table holds exactly the v1 codes with retryability', () => {
    assert.deepEqual(Object.keys(WIRE_CODES).sort(), [
      'AUTH_FAILED', 'BAD_NAME', 'BUSY', 'HASH_MISMATCH', 'IO_ERROR', 'NO_SPACE', 'NO_SUCH_INBOX', 'OUT_OF_ORDER',
      'PROTOCOL_ERROR', 'SHUTTING_DOWN', 'SIZE_MISMATCH', 'TIMEOUT', 'TOO_LARGE', 'TOO_MANY_CONNECTIONS', 'UNSUPPORTED_PROTOCOL',
    ]);
    for (const [code, info] of Object.entries(WIRE_CODES)) {
      assert.match(code, /^[A-Z0-9_]{1,64}$/);
      assert.ok(info.description.length > 10);
      assert.equal(isRetryable(code), info.retryable);
    }
    assert.equal(WIRE_CODES.HASH_MISMATCH.retryable, true);
    assert.equal(WIRE_CODES.AUTH_FAILED.retryable, false);
    assert.equal(isRetryable('SOME_FUTURE_CODE'), true);
  });

  test('errorFrameFor maps thrown values to wire codes', () => {
    const bad = new ProtocolError('BAD_JSON', 'PING frame payload is not JSON');
    assert.deepEqual(errorFrameFor(bad), { code: 'PROTOCOL_ERROR', message: 'PING frame payload is not JSON (BAD_JSON)' });
    assert.equal(errorFrameFor(new ProtocolError('BAD_VERSION', 'v2', { version: 2 })).code, 'UNSUPPORTED_PROTOCOL');
    assert.equal(errorFrameFor(new TdxError('HASH_MISMATCH', 'sha differs')).code, 'HASH_MISMATCH');
    assert.equal(errorFrameFor(new TdxError('CONFIG_INVALID', 'x')).code, 'IO_ERROR');
    const enospc = Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' });
    assert.deepEqual(errorFrameFor(enospc), { code: 'NO_SPACE', message: 'ENOSPC: no space left on device, write' });
    assert.equal(errorFrameFor(Object.assign(new Error('x'), { code: 'EACCES' })).code, 'IO_ERROR');
    assert.equal(errorFrameFor(Object.assign(new Error('x'), { code: 'ENAMETOOLONG' })).code, 'BAD_NAME');
    assert.equal(errorFrameFor('a string').code, 'IO_ERROR');
    assert.equal(errorFrameFor(null).message, 'null');
    const huge = errorFrameFor(new Error('y'.repeat(5000)));
    assert.equal(huge.message.length, 2048);
    // What errorFrameFor returns is always encodable.
    for (const err of [bad, enospc, new Error('z'.repeat(9000)), undefined, 42]) {
      const { code, message } = errorFrameFor(err);
      assert.ok(encodeFrame({ type: 'error', code, message }).length > 8);
    }
  });

  test('peerErrorFrom turns NACK / ERROR frames into typed errors', () => {
    const nack = peerErrorFrom({ code: 'NO_SPACE', message: 'disk full', retryable: false });
    assert.ok(nack instanceof PeerError && nack instanceof TdxError);
    assert.equal(nack.code, 'NO_SPACE');
    assert.equal(nack.retryable, false, 'NACK carries its own retryability');
    assert.equal(nack.scope, 'file');
    assert.match(nack.message, /NO_SPACE: disk full/);
    const error = peerErrorFrom({ code: 'AUTH_FAILED', message: '' });
    assert.equal(error.scope, 'connection');
    assert.equal(error.retryable, false);
    assert.match(error.message, /installation key/);
    assert.equal(peerErrorFrom({ code: 'NEW_IN_V2', message: 'later' }).retryable, true);
  });
});
