/**
 * Handshake proofs (PROTOCOL.md "Handshake"). Each side proves it holds the installation
 * key by an HMAC over both nonces, its role and its own agentId; the role string keeps a
 * proof from being reflected back as the other side's.
 */
import { Buffer } from 'node:buffer';
import { createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { TdxError } from '../errors.js';

export type ProofRole = 'server' | 'client';

export interface ProofInput {
  /** The installation key (raw bytes). */
  key: Buffer;
  /** Who makes the proof. */
  role: ProofRole;
  /** Nonce from HELLO and from WELCOME, exactly as sent (base64 text). */
  clientNonce: string;
  serverNonce: string;
  /** agentId of the party making the proof. */
  agentId: string;
}

const PROOF = /^[0-9a-f]{64}$/;

/** 16 fresh random bytes, standard base64 (24 characters). */
export function makeNonce(): string {
  return randomBytes(16).toString('base64');
}

function digest(input: ProofInput): Buffer {
  if (!Buffer.isBuffer(input.key) || input.key.length === 0) {
    throw new TdxError('BAD_KEY', 'Cannot compute a handshake proof without an installation key: security.key is empty');
  }
  if (input.role !== 'server' && input.role !== 'client') {
    throw new TdxError('BAD_ROLE', `Handshake proof role must be "server" or "client", got ${JSON.stringify(input.role)}`);
  }
  const text = `tdxfer/1 ${input.role}\n${input.clientNonce}\n${input.serverNonce}\n${input.agentId}`;
  return createHmac('sha256', input.key).update(text, 'utf8').digest();
}

/** hex HMAC-SHA256(key, "tdxfer/1 <role>\n<clientNonce>\n<serverNonce>\n<agentId>"), 64 lowercase hex. */
export function makeProof(input: ProofInput): string {
  return digest(input).toString('hex');
}

/**
 * True when `proof` is the proof `input` would make. Constant time in the proof's
 * content; a proof of the wrong shape (length, case, non-hex) is false, never a throw.
 */
export function verifyProof(input: ProofInput & { proof: string }): boolean {
  if (typeof input.proof !== 'string' || !PROOF.test(input.proof)) return false;
  const expected = digest(input);
  const given = Buffer.from(input.proof, 'hex');
  return given.length === expected.length && timingSafeEqual(given, expected);
}

/** First 16 hex chars of SHA-256("tdxfer-fingerprint\n" + key): safe to show and announce, never the key. */
export function keyFingerprint(key: Buffer): string {
  return createHash('sha256').update('tdxfer-fingerprint\n', 'utf8').update(key).digest('hex').slice(0, 16);
}
