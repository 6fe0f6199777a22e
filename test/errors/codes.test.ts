/**
 * The one table of error codes (src/errors.ts): every code has a hint, retryability is
 * what it was before the table existed (wire codes: PROTOCOL.md; inbox codes: the
 * InboxError table it replaced), and the wire/inbox views derive from it.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { ERROR_CODES, TdxError, codeOf, isErrorCode, reportedCode, type ErrorCode } from '../../src/errors.js';
import { WIRE_CODES, isRetryable, peerErrorFrom } from '../../src/protocol/errors.js';
import { InboxError, type InboxErrorCode } from '../../src/inbox/errors.js';

test('every code has a one-line hint', () => {
  for (const [code, info] of Object.entries(ERROR_CODES)) {
    assert.match(code, /^[A-Z][A-Z0-9_]*$/, code);
    assert.ok(info.hint.trim().length > 5, `${code} has no hint`);
    assert.ok(!info.hint.includes('\n'), `${code}: hint is one line`);
    assert.equal(typeof info.retryable, 'boolean', code);
  }
});

test('wire codes keep the retryability PROTOCOL.md documents', () => {
  const before: Record<string, boolean> = {
    AUTH_FAILED: false, UNSUPPORTED_PROTOCOL: false, NO_SUCH_INBOX: false, BAD_NAME: false, TOO_LARGE: false,
    NO_SPACE: true, HASH_MISMATCH: true, SIZE_MISMATCH: true, IO_ERROR: true, BUSY: true, OUT_OF_ORDER: false,
    TIMEOUT: true, SHUTTING_DOWN: true, PROTOCOL_ERROR: false, TOO_MANY_CONNECTIONS: true,
  };
  assert.deepEqual(Object.keys(WIRE_CODES).sort(), Object.keys(before).sort());
  for (const [code, retryable] of Object.entries(before)) {
    assert.equal(WIRE_CODES[code as keyof typeof WIRE_CODES].retryable, retryable, code);
    assert.equal(ERROR_CODES[code as ErrorCode].retryable, retryable, code);
    assert.equal(isRetryable(code), retryable, code);
  }
  // A code from a newer peer is retryable by default, as before.
  assert.equal(isRetryable('SOMETHING_NEW'), true);
});

test('PROTOCOL.md lists each wire code with the same retryability', () => {
  const doc = readFileSync(path.join(process.cwd(), 'src', 'protocol', 'PROTOCOL.md'), 'utf8');
  for (const [code, info] of Object.entries(WIRE_CODES)) {
    const row = doc.split('\n').find((l) => l.startsWith(`| \`${code}\` |`));
    assert.ok(row, `${code} is in the table of PROTOCOL.md`);
    assert.equal(row.split('|')[3]?.trim(), info.retryable ? 'yes' : 'no', `${code}: ${row}`);
  }
});

test('inbox codes keep their retryability', () => {
  const before: Record<InboxErrorCode, boolean> = {
    BAD_NAME: false, TOO_LARGE: false, NO_SPACE: true, HASH_MISMATCH: true, SIZE_MISMATCH: true, IO: true, BUSY: true, CLOSED: true,
  };
  for (const [code, retryable] of Object.entries(before)) {
    assert.equal(new InboxError(code as InboxErrorCode, 'x').retryable, retryable, code);
  }
  assert.equal(new InboxError('SIZE_MISMATCH', 'x', { retryable: false }).retryable, false, 'explicit retryable wins');
});

test('one name for an unknown peer: UNKNOWN_PEER (the status API / TouchDesigner spelling)', () => {
  assert.ok(isErrorCode('UNKNOWN_PEER'));
  assert.ok(!isErrorCode('PEER_UNKNOWN'));
});

test('a peer\'s unknown code is kept as sent; codeOf reads any thrown value', () => {
  const e = peerErrorFrom({ code: 'FUTURE_CODE', message: 'later', retryable: false });
  assert.equal(e.code, 'FUTURE_CODE');
  assert.equal(e.retryable, false);
  assert.ok(e instanceof TdxError);
  assert.equal(codeOf(e, 'IO'), 'FUTURE_CODE');
  assert.equal(codeOf(Object.assign(new Error('x'), { code: 'EACCES' }), 'IO'), 'EACCES');
  assert.equal(codeOf(new Error('x'), 'IO'), 'IO');
  assert.equal(codeOf(null, 'INTERNAL'), 'INTERNAL');
  assert.equal(reportedCode('NO_SPACE'), 'NO_SPACE');
});
