import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { Buffer } from 'node:buffer';
import { createHash, createHmac } from 'node:crypto';
import { keyFingerprint, makeNonce, makeProof, verifyProof, type ProofInput } from '../../src/protocol/auth.js';

const KEY = Buffer.from('000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f', 'hex');
const base: ProofInput = { key: KEY, role: 'server', clientNonce: 'Y2xpZW50LW5vbmNlLTE2Yg==', serverNonce: 'c2VydmVyLW5vbmNlLTE2Yg==', agentId: 'render-2' };

describe('makeNonce', () => {
  test('16 random bytes in standard base64, different each time', () => {
    const seen = new Set<string>();
    for (let i = 0; i < 100; i++) {
      const n = makeNonce();
      assert.match(n, /^[A-Za-z0-9+/]{22}==$/);
      assert.equal(Buffer.from(n, 'base64').length, 16);
      seen.add(n);
    }
    assert.equal(seen.size, 100);
  });
});

describe('proofs', () => {
  test('proof is hex HMAC-SHA256 over the documented string', () => {
    const text = 'tdxfer/1 server\nY2xpZW50LW5vbmNlLTE2Yg==\nc2VydmVyLW5vbmNlLTE2Yg==\nrender-2';
    assert.equal(makeProof(base), createHmac('sha256', KEY).update(text).digest('hex'));
    assert.match(makeProof(base), /^[0-9a-f]{64}$/);
  });

  test('known vector (so other implementations can check theirs)', () => {
    // HMAC-SHA256(key 00..1f, "tdxfer/1 client\nAAAAAAAAAAAAAAAAAAAAAA==\nAQEBAQEBAQEBAQEBAQEBAQ==\nstudio-a")
    const proof = makeProof({ key: KEY, role: 'client', clientNonce: Buffer.alloc(16, 0).toString('base64'), serverNonce: Buffer.alloc(16, 1).toString('base64'), agentId: 'studio-a' });
    assert.equal(proof, KNOWN_CLIENT_PROOF);
    const server = makeProof({ key: KEY, role: 'server', clientNonce: Buffer.alloc(16, 0).toString('base64'), serverNonce: Buffer.alloc(16, 1).toString('base64'), agentId: 'render-2' });
    assert.equal(server, '07d9ad12cb50c1110b1214b6d2ae90004e070029b21050fe15520d4709098633');
  });

  test('a proof verifies against the same inputs', () => {
    assert.equal(verifyProof({ ...base, proof: makeProof(base) }), true);
    const client = { ...base, role: 'client' as const, agentId: 'studio-a' };
    assert.equal(verifyProof({ ...client, proof: makeProof(client) }), true);
  });

  const variants: Array<[string, Partial<ProofInput>]> = [
    ['wrong key', { key: Buffer.from(KEY).fill(0xff, 31) }],
    ['shorter key', { key: KEY.subarray(0, 31) }],
    ['wrong client nonce', { clientNonce: 'Y2xpZW50LW5vbmNlLTE2Yw==' }],
    ['wrong server nonce', { serverNonce: 'c2VydmVyLW5vbmNlLTE2Yw==' }],
    ['nonces swapped', { clientNonce: base.serverNonce, serverNonce: base.clientNonce }],
    ['other role (reflection)', { role: 'client' }],
    ['other agentId', { agentId: 'render-3' }],
  ];
  for (const [label, change] of variants) {
    test(`${label} fails`, () => {
      const proof = makeProof(base);
      assert.equal(verifyProof({ ...base, ...change, proof }), false);
      assert.notEqual(makeProof({ ...base, ...change }), proof);
    });
  }

  test('malformed proofs return false without throwing', () => {
    const good = makeProof(base);
    for (const proof of ['', good.slice(0, 63), `${good}0`, good.toUpperCase(), `${good.slice(0, 62)}zz`, 'é'.repeat(64), `${good.slice(0, 63)}\u0100`]) {
      assert.equal(verifyProof({ ...base, proof }), false, JSON.stringify(proof));
    }
    assert.equal(verifyProof({ ...base, proof: 5 as unknown as string }), false);
    assert.equal(verifyProof({ ...base, proof: null as unknown as string }), false);
  });

  test('an empty key is refused loudly', () => {
    assert.throws(() => makeProof({ ...base, key: Buffer.alloc(0) }), { code: 'BAD_KEY', message: /security\.key/ });
    assert.throws(() => makeProof({ ...base, role: 'admin' as 'server' }), { code: 'BAD_ROLE' });
  });
});

describe('keyFingerprint', () => {
  test('first 16 hex chars of SHA-256("tdxfer-fingerprint\\n" + key)', () => {
    const expected = createHash('sha256').update(Buffer.concat([Buffer.from('tdxfer-fingerprint\n'), KEY])).digest('hex').slice(0, 16);
    assert.equal(keyFingerprint(KEY), expected);
    assert.equal(keyFingerprint(KEY), KNOWN_FINGERPRINT);
    assert.match(keyFingerprint(KEY), /^[0-9a-f]{16}$/);
    assert.notEqual(keyFingerprint(Buffer.alloc(32, 1)), keyFingerprint(Buffer.alloc(32, 2)));
    assert.ok(!KEY.toString('hex').includes(keyFingerprint(KEY)));
  });
});

// Computed with openssl (printf ... | openssl dgst -sha256 -mac HMAC -macopt hexkey:00..1f) and sha256sum; also in PROTOCOL.md.
const KNOWN_CLIENT_PROOF = '506918e617f33bc13ef9fee14284ebeee602cb507d3c0ce4b513424e3aed852f';
const KNOWN_FINGERPRINT = '537a3fb5d314a8a4';
