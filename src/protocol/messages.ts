/**
 * v1 control message payloads and their validation, driven by one table (SCHEMAS):
 * each frame type lists its fields with a rule. The decoder runs decodePayload() on
 * parsed JSON, the encoder runs encodePayload() on what it is about to send, so both
 * directions enforce exactly the rules PROTOCOL.md states.
 *
 * Invariants: a validated payload holds only the known fields, in table order (unknown
 * fields are dropped for forward compatibility); a failure names the field, the value
 * and what is allowed.
 */
import { Buffer } from 'node:buffer';
import { MAX_MESSAGE_CHARS, ProtocolError, truncateChars, type WireCode } from './errors.js';

export interface HelloPayload {
  protocol: 1; agentId: string; name: string; software: string; nonce: string;
  /** v1.1: the file hash algorithms this client speaks, most preferred first. Optional: left out = ["sha256"]. */
  hashes?: string[];
}
export interface WelcomePayload {
  protocol: 1; agentId: string; name: string; software: string; nonce: string;
  proof: string; inboxes: string[]; encrypted: boolean;
  /** Largest file this receiver takes as an eager OFFER (section 6.4). Optional: left out = 0 = none. */
  eagerMaxBytes?: number;
  /** v1.1: the file hash algorithm of this connection, picked from HELLO.hashes. Optional: left out = "sha256". */
  hash?: string;
}
export interface AuthPayload { proof: string }
export type ReadyPayload = Record<never, never>;
export interface OfferPayload {
  id: number; inbox: string; path: string; size: number; mtimeMs: number; resume: boolean;
  /** DATA and END follow without waiting for ACCEPT (section 6.4). Optional: left out = false. */
  eager?: boolean;
}
export interface AcceptPayload {
  id: number; offset: number;
  /** SHA-256 of the first `offset` bytes (SHA-256 connections; null when offset is 0 or the connection uses another hash). */
  prefixSha256: string | null;
  /** v1.1, XXH3-128 connections: XXH3-128 of the first `offset` bytes (null or left out when offset is 0). */
  prefixXxh128?: string | null;
}
export interface EndPayload {
  id: number;
  /** Whole-file SHA-256: required on SHA-256 connections (every connection before v1.1). */
  sha256?: string;
  /** v1.1: whole-file XXH3-128, required on XXH3-128 connections. */
  xxh128?: string;
}
export type AckStatus = 'stored' | 'skipped' | 'duplicate';
export interface AckPayload {
  id: number; status: AckStatus; path: string;
  /** Verified SHA-256 (stored on a SHA-256 connection), else null. */
  sha256: string | null;
  /** v1.1: verified XXH3-128 (stored on an XXH3-128 connection); left out or null otherwise. */
  xxh128?: string | null;
}
export interface NackPayload { id: number; code: string; message: string; retryable: boolean }
export interface AbortPayload { id: number; reason: string }
export interface PingPayload { t: number }
export interface PongPayload { t: number }
export interface ErrorPayload { code: string; message: string }

/** Payload of every control frame type, by lowercase type name. */
export interface ControlPayloads {
  hello: HelloPayload;
  welcome: WelcomePayload;
  auth: AuthPayload;
  ready: ReadyPayload;
  offer: OfferPayload;
  accept: AcceptPayload;
  end: EndPayload;
  ack: AckPayload;
  nack: NackPayload;
  abort: AbortPayload;
  ping: PingPayload;
  pong: PongPayload;
  error: ErrorPayload;
}
export type ControlTypeName = keyof ControlPayloads;

export interface DecoderLimits {
  /** Largest control frame payload (JSON), bytes. */
  maxControlBytes: number;
  /** Largest DATA frame payload, bytes. */
  maxDataBytes: number;
  /** Largest OFFER.size accepted. */
  maxFileBytes: number;
}

export const DEFAULT_LIMITS: Readonly<DecoderLimits> = Object.freeze({
  maxControlBytes: 65536,
  maxDataBytes: 1048576,
  maxFileBytes: 2 ** 40,
});

/** One field's rule. `allowed` completes "must be …" in error messages. */
interface Rule {
  allowed: (limits: DecoderLimits) => string;
  test: (value: unknown, limits: DecoderLimits) => boolean;
  /** Encoder-side normalisation applied before `test` (e.g. truncating free text). */
  prepare?: (value: unknown) => unknown;
  /** Wire code to answer when this field is invalid (default PROTOCOL_ERROR). */
  wireCode?: WireCode;
  /** A field added to v1 later: it may be left out (older peers), meaning the documented default. */
  optional?: boolean;
}

// Control characters (C0, DEL, C1) and unpaired surrogates.
const CONTROL_OR_LONE_SURROGATE = /[\p{Cc}\p{Cs}]/u;
const codePoints = (s: string): number => {
  let n = 0;
  for (const _ of s) n++;
  return n;
};

interface StrOptions { min: number; max: number; unit?: 'chars' | 'bytes'; pattern?: RegExp; patternText?: string; printable?: boolean; noNul?: boolean; truncate?: boolean }
function str(o: StrOptions): Rule {
  const unit = o.unit ?? 'chars';
  const len = unit === 'bytes' ? (s: string) => Buffer.byteLength(s, 'utf8') : codePoints;
  const range = o.min === 0 ? `at most ${o.max}` : `${o.min} to ${o.max}`;
  const extra = [o.patternText, o.printable ? 'no control characters' : undefined, o.noNul ? 'no NUL' : undefined].filter(Boolean).join(', ');
  return {
    allowed: () => `a string of ${range} ${unit === 'bytes' ? 'UTF-8 bytes' : 'characters'}${extra ? ` (${extra})` : ''}`,
    test: (v) => {
      if (typeof v !== 'string') return false;
      const n = len(v);
      if (n < o.min || n > o.max) return false;
      if (o.pattern && !o.pattern.test(v)) return false;
      if (o.printable && CONTROL_OR_LONE_SURROGATE.test(v)) return false;
      if (o.noNul && v.includes('\0')) return false;
      return true;
    },
    ...(o.truncate ? { prepare: (v: unknown) => (typeof v === 'string' ? truncateChars(v, o.max) : v) } : {}),
  };
}

function int(min: number, max: number | ((l: DecoderLimits) => number), maxText?: string): Rule {
  const hi = typeof max === 'number' ? () => max : max;
  return {
    allowed: (l) => `an integer from ${min} to ${hi(l)}${maxText ? ` (${maxText})` : ''}`,
    test: (v, l) => typeof v === 'number' && Number.isInteger(v) && v >= min && v <= hi(l),
  };
}

const bool: Rule = { allowed: () => 'true or false', test: (v) => typeof v === 'boolean' };
const finite: Rule = { allowed: () => 'a finite number', test: (v) => typeof v === 'number' && Number.isFinite(v) };
const finiteNonNegative: Rule = { allowed: () => 'a finite number >= 0', test: (v) => typeof v === 'number' && Number.isFinite(v) && v >= 0 };

function oneOf<T>(values: readonly T[]): Rule {
  return { allowed: () => `one of ${values.map((v) => JSON.stringify(v)).join(', ')}`, test: (v) => values.includes(v as T) };
}

function nullable(rule: Rule): Rule {
  return { allowed: (l) => `null or ${rule.allowed(l)}`, test: (v, l) => v === null || rule.test(v, l) };
}

/** A field added to v1 later: peers that predate it leave it out (see the field's default in PROTOCOL.md). */
function optional(rule: Rule): Rule {
  return { ...rule, allowed: (l) => `${rule.allowed(l)} (or left out)`, optional: true };
}

function arrayOf(rule: Rule, max: number): Rule {
  return {
    allowed: (l) => `an array of at most ${max} entries, each ${rule.allowed(l)}`,
    test: (v, l) => Array.isArray(v) && v.length <= max && v.every((e) => rule.test(e, l)),
  };
}

const HEX64 = /^[0-9a-f]{64}$/;
const hex64 = str({ min: 64, max: 64, pattern: HEX64, patternText: 'lowercase hex' });
const HEX32 = /^[0-9a-f]{32}$/;
const hex32 = str({ min: 32, max: 32, pattern: HEX32, patternText: 'lowercase hex' });
/** An algorithm name (section 4.4): unknown names are allowed in HELLO.hashes and skipped by the server. */
const hashName = str({ min: 1, max: 32, pattern: /^[a-z0-9-]+$/, patternText: 'a-z, 0-9 and -' });
const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;
const nonce: Rule = {
  allowed: () => 'standard padded base64 of 16 to 64 bytes',
  test: (v) => {
    if (typeof v !== 'string' || !BASE64.test(v)) return false;
    const bytes = (v.length / 4) * 3 - (v.endsWith('==') ? 2 : v.endsWith('=') ? 1 : 0);
    return bytes >= 16 && bytes <= 64;
  },
};

const protocol: Rule = { allowed: () => '1 (this agent speaks tdxfer protocol v1)', test: (v) => v === 1, wireCode: 'UNSUPPORTED_PROTOCOL' };
const agentId = str({ min: 1, max: 64, pattern: /^[A-Za-z0-9_-]+$/, patternText: 'letters, digits, _ and -' });
const name = str({ min: 1, max: 128, printable: true });
const software = str({ min: 0, max: 64, printable: true });
const inbox = str({ min: 1, max: 128, printable: true });
// The wire allows 4096 bytes; the receiver's name rules (names.ts, 1024 bytes) answer longer
// names with NACK BAD_NAME, so the session goes on (issue #10 item 9).
const path = str({ min: 1, max: 4096, unit: 'bytes', noNul: true });
const id = int(0, 2 ** 32 - 1);
const size: Rule = { ...int(0, (l) => l.maxFileBytes, 'maxFileBytes'), wireCode: 'TOO_LARGE' };
const offset = int(0, 2 ** 53);
const code = str({ min: 1, max: 64, pattern: /^[A-Z0-9_]+$/, patternText: 'A-Z, 0-9 and _' });
const freeText = str({ min: 0, max: MAX_MESSAGE_CHARS, truncate: true });

type Schema<T> = { readonly [K in keyof T]-?: Rule };

/** The rules of every control message. Field order here is the order on the wire. */
export const SCHEMAS: { readonly [K in ControlTypeName]: Schema<ControlPayloads[K]> } = {
  hello: { protocol, agentId, name, software, nonce, hashes: optional(arrayOf(hashName, 16)) },
  welcome: { protocol, agentId, name, software, nonce, proof: hex64, inboxes: arrayOf(inbox, 256), encrypted: bool, eagerMaxBytes: optional(int(0, 2 ** 24)), hash: optional(hashName) },
  auth: { proof: hex64 },
  ready: {},
  offer: { id, inbox, path, size, mtimeMs: finiteNonNegative, resume: bool, eager: optional(bool) },
  accept: { id, offset, prefixSha256: nullable(hex64), prefixXxh128: optional(nullable(hex32)) },
  // Exactly the digest field of the connection's algorithm is required: the session checks it (receiver.ts).
  end: { id, sha256: optional(hex64), xxh128: optional(hex32) },
  ack: { id, status: oneOf(['stored', 'skipped', 'duplicate'] as const), path, sha256: nullable(hex64), xxh128: optional(nullable(hex32)) },
  nack: { id, code, message: freeText, retryable: bool },
  abort: { id, reason: freeText },
  ping: { t: finite },
  pong: { t: finite },
  error: { code, message: freeText },
};

function show(v: unknown): string {
  if (v === undefined) return 'nothing (field missing)';
  let text: string;
  try {
    text = JSON.stringify(v) ?? String(v);
  } catch {
    text = String(v);
  }
  if (text.length > 80) text = `${text.slice(0, 77)}...`;
  const kind = v === null ? 'null' : Array.isArray(v) ? 'array' : typeof v;
  return `${text} (${kind})`;
}

function check<K extends ControlTypeName>(
  type: K,
  input: Record<string, unknown>,
  limits: DecoderLimits,
  direction: 'decode' | 'encode',
): ControlPayloads[K] {
  const out: Record<string, unknown> = {};
  for (const [field, rule] of Object.entries(SCHEMAS[type]) as Array<[string, Rule]>) {
    const raw = Object.hasOwn(input, field) ? input[field] : undefined;
    if (raw === undefined && rule.optional) continue; // left out: the reader applies the documented default
    const value = direction === 'encode' && rule.prepare ? rule.prepare(raw) : raw;
    if (!rule.test(value, limits)) {
      const what = direction === 'decode' ? `Received ${type.toUpperCase()} frame with invalid field` : `Cannot send ${type.toUpperCase()} frame: field`;
      throw new ProtocolError('BAD_MESSAGE', `${what} \`${field}\`: expected ${rule.allowed(limits)}, got ${show(raw)}`, {
        frame: type,
        field,
        wireCode: rule.wireCode,
      });
    }
    out[field] = value;
  }
  return out as unknown as ControlPayloads[K];
}

/** Validate a parsed JSON payload received from a peer. Throws ProtocolError BAD_JSON / BAD_MESSAGE. */
export function decodePayload<K extends ControlTypeName>(type: K, json: unknown, limits: DecoderLimits = DEFAULT_LIMITS): ControlPayloads[K] {
  if (typeof json !== 'object' || json === null || Array.isArray(json)) {
    throw new ProtocolError('BAD_JSON', `Received ${type.toUpperCase()} frame whose payload is ${show(json)}, expected a JSON object`, { frame: type });
  }
  return check(type, json as Record<string, unknown>, limits, 'decode');
}

/**
 * Validate a payload about to be sent; returns it with only the known fields, in wire
 * order, free text truncated to its limit. Throws ProtocolError BAD_MESSAGE.
 */
export function encodePayload<K extends ControlTypeName>(type: K, payload: object, limits: DecoderLimits = DEFAULT_LIMITS): ControlPayloads[K] {
  return check(type, payload as Record<string, unknown>, limits, 'encode');
}
