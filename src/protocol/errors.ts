/**
 * Protocol errors: local decode/encode failures (ProtocolError) and the session-level
 * wire codes carried in NACK and ERROR frames (WIRE_CODES). Both directions of the
 * mapping live here: errorFrameFor() turns any thrown value into a wire {code, message},
 * PeerError turns a received NACK/ERROR back into a typed error.
 */
import { ERROR_CODES, TdxError, describeError, reportedCode, type ReportedCode } from '../errors.js';

/** Where a wire code may appear: per file (NACK), per connection (ERROR), or either. */
export type WireScope = 'file' | 'connection' | 'both';

export interface WireCodeInfo {
  /** True when the same request may succeed later without anyone changing anything (from ERROR_CODES). */
  retryable: boolean;
  scope: WireScope;
  description: string;
}

/** Scope and wire description of each session-level code; retryability comes from ERROR_CODES. */
const WIRE_SCOPES = {
  AUTH_FAILED: { scope: 'connection', description: 'Handshake proof did not verify: the two agents do not share the same installation key.' },
  UNSUPPORTED_PROTOCOL: { scope: 'connection', description: 'Protocol version or transport mode (TLS / plain) not supported by this peer.' },
  NO_SUCH_INBOX: { scope: 'file', description: 'The offered inbox name does not exist on the receiver.' },
  BAD_NAME: { scope: 'file', description: 'The offered path is not a safe relative file name on the receiver.' },
  TOO_LARGE: { scope: 'both', description: 'The offered size is over the receiver\'s maxFileBytes.' },
  NO_SPACE: { scope: 'file', description: 'The receiver\'s disk (or quota) is full.' },
  HASH_MISMATCH: { scope: 'file', description: 'The hash of the received bytes (SHA-256 or XXH3-128, as negotiated) differs from the digest in END; the receiver discarded them, send again from offset 0.' },
  SIZE_MISMATCH: { scope: 'file', description: 'The number of DATA bytes differs from size - offset.' },
  IO_ERROR: { scope: 'both', description: 'The receiver failed to read or write its disk (permissions, locked file, device error).' },
  BUSY: { scope: 'file', description: 'The receiver cannot take this file now (the same file is being received on another connection, or too many in flight).' },
  OUT_OF_ORDER: { scope: 'both', description: 'A frame arrived that the sequence does not allow at this point (e.g. DATA without ACCEPT, OFFER while a file streams).' },
  TIMEOUT: { scope: 'connection', description: 'Handshake not finished in time, or nothing received for the idle timeout.' },
  SHUTTING_DOWN: { scope: 'both', description: 'The peer is stopping; try again later.' },
  PROTOCOL_ERROR: { scope: 'connection', description: 'Malformed frame: bad magic, unknown type, too large, bad JSON or an invalid field.' },
  TOO_MANY_CONNECTIONS: { scope: 'connection', description: 'The receiver is at its connection limit (overall or for this address).' },
} as const satisfies Partial<Record<keyof typeof ERROR_CODES, Omit<WireCodeInfo, 'retryable'>>>;

export type WireCode = keyof typeof WIRE_SCOPES;

/** Session-level codes sent in NACK / ERROR frames. The table in PROTOCOL.md mirrors it. */
export const WIRE_CODES: { readonly [C in WireCode]: WireCodeInfo } = Object.fromEntries(
  Object.entries(WIRE_SCOPES).map(([code, info]) => [code, { retryable: ERROR_CODES[code as WireCode].retryable, ...info }]),
) as { [C in WireCode]: WireCodeInfo };

export function isWireCode(code: unknown): code is WireCode {
  return typeof code === 'string' && Object.hasOwn(WIRE_CODES, code);
}

/** Default retryability of a received code; unknown (newer) codes are treated as retryable. */
export function isRetryable(code: string): boolean {
  return isWireCode(code) ? WIRE_CODES[code].retryable : true;
}

export type ProtocolErrorCode = 'BAD_MAGIC' | 'BAD_VERSION' | 'UNKNOWN_TYPE' | 'FRAME_TOO_LARGE' | 'BAD_JSON' | 'BAD_MESSAGE';

export interface ProtocolErrorDetails {
  /** Frame type name (e.g. 'offer') when known. */
  frame?: string | undefined;
  /** JSON field at fault (BAD_MESSAGE). */
  field?: string | undefined;
  /** Header version byte (BAD_VERSION). */
  version?: number | undefined;
  /** Wire code to report to the peer; PROTOCOL_ERROR unless something more precise applies. */
  wireCode?: WireCode | undefined;
  cause?: unknown;
}

/**
 * A frame could not be decoded or encoded. The decoder that threw is dead; the
 * connection answers ERROR `wireCode` (errorFrameFor) and closes.
 */
export class ProtocolError extends TdxError {
  declare readonly code: ProtocolErrorCode;
  readonly frame: string | undefined;
  readonly field: string | undefined;
  readonly version: number | undefined;
  readonly wireCode: WireCode;
  constructor(code: ProtocolErrorCode, message: string, details: ProtocolErrorDetails = {}) {
    super(code, message, details.cause === undefined ? undefined : { cause: details.cause });
    this.name = 'ProtocolError';
    this.frame = details.frame;
    this.field = details.field;
    this.version = details.version;
    this.wireCode = details.wireCode ?? (code === 'BAD_VERSION' ? 'UNSUPPORTED_PROTOCOL' : 'PROTOCOL_ERROR');
  }
}

/** The peer told us something failed: a NACK (per file) or an ERROR (connection). */
export class PeerError extends TdxError {
  readonly retryable: boolean;
  readonly scope: 'file' | 'connection';
  constructor(code: ReportedCode, message: string, retryable: boolean, scope: 'file' | 'connection') {
    super(code, message);
    this.name = 'PeerError';
    this.retryable = retryable;
    this.scope = scope;
  }
}

/** Typed error for a received NACK (`retryable` given) or ERROR frame (retryability from the table). */
export function peerErrorFrom(frame: { code: string; message: string; retryable?: boolean }): PeerError {
  const scope = frame.retryable === undefined ? 'connection' : 'file';
  const text = frame.message === '' ? WIRE_CODES[frame.code as WireCode]?.description ?? frame.code : frame.message;
  return new PeerError(reportedCode(frame.code), `peer reported ${frame.code}: ${text}`, frame.retryable ?? isRetryable(frame.code), scope);
}

export const MAX_MESSAGE_CHARS = 2048;

/** Node errno codes that have a precise wire equivalent; any other errno is IO_ERROR. */
const ERRNO_WIRE: Record<string, WireCode> = {
  ENOSPC: 'NO_SPACE',
  EDQUOT: 'NO_SPACE',
  EFBIG: 'TOO_LARGE',
  ENAMETOOLONG: 'BAD_NAME',
  ETIMEDOUT: 'TIMEOUT',
};

/** Cut to at most `max` code points without splitting a surrogate pair. */
export function truncateChars(s: string, max: number = MAX_MESSAGE_CHARS): string {
  if (s.length <= max) return s;
  const points = Array.from(s);
  return points.length <= max ? s : points.slice(0, max).join('');
}

/**
 * The {code, message} to put in a NACK or ERROR frame for any thrown value:
 * ProtocolError -> its wireCode; a TdxError whose code is a wire code -> that code;
 * a Node errno error -> NO_SPACE / TOO_LARGE / BAD_NAME / TIMEOUT / IO_ERROR; anything else -> IO_ERROR.
 */
export function errorFrameFor(err: unknown): { code: WireCode; message: string } {
  const message = truncateChars(describeError(err));
  if (err instanceof ProtocolError) return { code: err.wireCode, message };
  const code = (err as { code?: unknown } | null)?.code;
  if (isWireCode(code)) return { code, message };
  if (typeof code === 'string' && Object.hasOwn(ERRNO_WIRE, code)) return { code: ERRNO_WIRE[code]!, message };
  return { code: 'IO_ERROR', message };
}
