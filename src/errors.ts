/**
 * Typed errors with a stable `code` and an optional `cause`. Every layer adds
 * context by wrapping, never by string-concatenating a stack.
 *
 * ERROR_CODES is the one table of every code tdxfer itself raises: whether the same
 * request may succeed later without anyone changing anything (`retryable`), and a
 * one-line `hint` for a person. The wire table (protocol/errors.ts WIRE_CODES) and the
 * inbox's retryability take their `retryable` from here. New codes go here first.
 */

export interface ErrorCodeInfo {
  /** True when the same request may succeed later without anyone changing anything. */
  retryable: boolean;
  /** What it means, for a person (short, one line). */
  hint: string;
}

export const ERROR_CODES = {
  // Wire codes (NACK / ERROR frames; PROTOCOL.md mirrors their retryability).
  AUTH_FAILED: { retryable: false, hint: 'the handshake proof did not verify: security.key must be identical on both machines' },
  UNSUPPORTED_PROTOCOL: { retryable: false, hint: 'protocol version or transport mode (security.encrypt) differs between the two agents' },
  NO_SUCH_INBOX: { retryable: false, hint: 'the receiver has no inbox of that name' },
  BAD_NAME: { retryable: false, hint: 'not a safe relative file name' },
  TOO_LARGE: { retryable: false, hint: "over the receiver's maxFileBytes" },
  NO_SPACE: { retryable: true, hint: "the receiver's disk (or quota) is full" },
  HASH_MISMATCH: { retryable: true, hint: 'the hash (SHA-256 or XXH3-128) of the received bytes differs from the sender\'s; sent again from the start' },
  SIZE_MISMATCH: { retryable: true, hint: 'the number of bytes differs from the announced size (the file changed while being sent?)' },
  IO_ERROR: { retryable: true, hint: 'the receiver failed to read or write its disk' },
  BUSY: { retryable: true, hint: 'the receiver cannot take this file now (same file on another connection, or too many in flight)' },
  OUT_OF_ORDER: { retryable: false, hint: 'a frame arrived that the protocol sequence does not allow at this point' },
  TIMEOUT: { retryable: true, hint: 'no answer in time' },
  SHUTTING_DOWN: { retryable: true, hint: 'the agent is stopping; try again later' },
  PROTOCOL_ERROR: { retryable: false, hint: 'malformed frame (bad magic, unknown type, too large, bad JSON or an invalid field)' },
  TOO_MANY_CONNECTIONS: { retryable: true, hint: 'the receiver is at its connection limit (overall or for this address)' },
  // Frame codec (ProtocolError).
  BAD_MAGIC: { retryable: false, hint: 'the bytes received are not a tdxfer frame (another program on that port?)' },
  BAD_VERSION: { retryable: false, hint: 'the peer speaks a protocol version this agent does not support' },
  UNKNOWN_TYPE: { retryable: false, hint: 'a frame of a type this agent does not know' },
  FRAME_TOO_LARGE: { retryable: false, hint: 'a frame over the protocol\'s size limit' },
  BAD_JSON: { retryable: false, hint: 'a frame whose JSON does not parse' },
  BAD_MESSAGE: { retryable: false, hint: 'a frame with a missing or invalid field' },
  // Legacy TOX protocol (LegacyProtocolError and the legacy client).
  LEGACY_BAD_HEADER: { retryable: false, hint: 'a legacy (TOX) header that does not parse' },
  LEGACY_BAD_ANSWER: { retryable: false, hint: 'the legacy (TOX) receiver answered something that is not {"success": …}' },
  LEGACY_BAD_BASE64: { retryable: false, hint: 'a legacy (TOX) payload that is not base64' },
  LEGACY_TOO_LARGE: { retryable: false, hint: 'a legacy (TOX) frame over the size limit' },
  LEGACY_NO_ANSWER: { retryable: true, hint: 'the legacy (TOX) receiver closed without answering' },
  LEGACY_REFUSED: { retryable: true, hint: 'the legacy (TOX) receiver answered {"success": false}' },
  // Inbox (InboxError).
  IO: { retryable: true, hint: 'reading or writing the inbox failed (permissions, locked file, device error)' },
  CLOSED: { retryable: true, hint: 'the inbox is closing (the agent is stopping); the file stays staged' },
  // Sending side: links and peers.
  CONNECT_FAILED: { retryable: true, hint: 'cannot reach the peer' },
  CONNECT_TIMEOUT: { retryable: true, hint: 'the peer did not answer the connection in time' },
  HANDSHAKE_TIMEOUT: { retryable: true, hint: 'the peer did not finish the handshake in time' },
  CONNECTION_LOST: { retryable: true, hint: 'the connection closed during a transfer' },
  TLS_FAILED: { retryable: true, hint: 'the TLS session could not be set up' },
  SLOW_PEER: { retryable: true, hint: 'the peer stopped reading for too long' },
  SEND_FAILED: { retryable: true, hint: 'sending failed for another reason (see the message)' },
  UNKNOWN_PEER: { retryable: true, hint: 'no peer of that name is known (yet): it is not configured or not discovered' },
  PEER_GONE: { retryable: true, hint: 'the peer stopped announcing itself' },
  PEER_NO_ADDRESS: { retryable: true, hint: 'the peer has no usable address' },
  ABORTED: { retryable: false, hint: 'cancelled' },
  // Source files.
  SOURCE_CHANGED: { retryable: true, hint: 'the file changed while being sent; it is sent again once stable' },
  SOURCE_UNREADABLE: { retryable: true, hint: 'the outbox file cannot be read' },
  READ_FAILED: { retryable: true, hint: 'reading the outbox file failed' },
  TRUNCATED: { retryable: true, hint: 'the outbox file got shorter while being sent' },
  NO_SUCH_FILE: { retryable: false, hint: 'no such file' },
  NOT_A_FILE: { retryable: false, hint: 'not a regular file' },
  OUTBOX_UNUSABLE: { retryable: true, hint: 'the outbox folder cannot be watched (missing, not a folder, or no permission)' },
  FOLDER_UNUSABLE: { retryable: false, hint: 'an inbox or outbox folder cannot be created or written (read-only file system, permissions, a file in the way): the message names the cause and the config field' },
  AFTER_DELETE_FAILED: { retryable: true, hint: 'deleting a sent file failed' },
  AFTER_ARCHIVE_FAILED: { retryable: true, hint: 'moving a sent file into the archive failed' },
  // Journals.
  JOURNAL_READ_FAILED: { retryable: false, hint: 'a journal file cannot be read' },
  JOURNAL_WRITE_FAILED: { retryable: true, hint: 'a journal file cannot be written' },
  JOURNAL_CLOSED: { retryable: false, hint: 'the journal is closed (the agent is stopping)' },
  // Failure reasons that are not thrown (FailureInfo.reason).
  UNREACHABLE: { retryable: true, hint: 'the peer cannot be reached; files wait and are retried with backoff' },
  SOURCE_GONE: { retryable: false, hint: 'the outbox file disappeared before it was sent' },
  // Requests (status API, CLI, TouchDesigner).
  BAD_REQUEST: { retryable: false, hint: 'the request is malformed' },
  BAD_RATE: { retryable: false, hint: 'not a valid rate (bytes per second, e.g. 10M, or 0 for unlimited)' },
  NOT_FOUND: { retryable: false, hint: 'no such job' },
  NOT_CANCELLABLE: { retryable: false, hint: 'this job cannot be cancelled' },
  ALREADY_FINISHED: { retryable: false, hint: 'the job already finished' },
  INTERNAL: { retryable: false, hint: 'an internal error (a bug: please report it with the log)' },
  // Setup: config, keys, listeners, discovery.
  CONFIG_INVALID: { retryable: false, hint: 'the config is invalid: the message names the field' },
  BAD_KEY: { retryable: false, hint: 'the installation key is missing or malformed' },
  BAD_ROLE: { retryable: false, hint: 'not a valid role' },
  LISTEN_FAILED: { retryable: false, hint: 'cannot listen on the configured address/port' },
  LISTEN_IN_USE: { retryable: false, hint: 'the port is in use by another program' },
  STATUS_LISTEN_FAILED: { retryable: false, hint: 'the status API cannot listen on its address/port' },
  STATUS_PORT_IN_USE: { retryable: false, hint: 'the status API port is in use by another program' },
  DISCOVERY_FAILED: { retryable: false, hint: 'mDNS discovery could not start' },
  DISCOVERY_INTERFACE: { retryable: false, hint: 'the configured discovery interface is unusable' },
  DISCOVERY_STATE: { retryable: false, hint: 'discovery started twice (a bug)' },
  DISCOVERY_TXT: { retryable: false, hint: 'an mDNS TXT record that does not fit' },
} as const satisfies Record<string, ErrorCodeInfo>;

/** Every code tdxfer raises. */
export type ErrorCode = keyof typeof ERROR_CODES;

export function isErrorCode(code: unknown): code is ErrorCode {
  return typeof code === 'string' && Object.hasOwn(ERROR_CODES, code);
}

declare const foreign: unique symbol;
/** A code not in ERROR_CODES: sent by a (newer) peer, or a Node errno (`EACCES`); only `reportedCode()` makes one. */
export type ForeignCode = string & { readonly [foreign]: true };

/**
 * A code as raised or reported: one of ours, or one from a newer peer that this agent
 * does not know (kept as sent so logs and metrics show it).
 */
export type ReportedCode = ErrorCode | ForeignCode;

/** A code received from a peer or the OS, typed: ours when we know it, else foreign. */
export function reportedCode(code: string): ReportedCode {
  return code as ReportedCode;
}

/** The code of any thrown value (TdxError, PeerError, Node errno), or `fallback` when it has none. */
export function codeOf(err: unknown, fallback: ErrorCode): ReportedCode {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? reportedCode(code) : fallback;
}

export class TdxError extends Error {
  readonly code: ReportedCode;
  constructor(code: ReportedCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'TdxError';
    this.code = code;
  }
}

/** Config is invalid: `field` is the JSON path of the offending value (e.g. `outboxes[0].to[1].peer`). */
export class ConfigError extends TdxError {
  declare readonly code: 'CONFIG_INVALID';
  readonly field: string;
  constructor(field: string, message: string, options?: { cause?: unknown }) {
    super('CONFIG_INVALID', message, options);
    this.name = 'ConfigError';
    this.field = field;
  }
}

/**
 * Codes of a configuration or environment problem a restart cannot fix (a folder on a read-only mount, one
 * the agent's user may not write): `tdxfer run` exits 2 for them (systemd: RestartPreventExitStatus=2).
 */
export const ENVIRONMENT_CODES: ReadonlySet<ErrorCode> = new Set<ErrorCode>(['CONFIG_INVALID', 'FOLDER_UNUSABLE', 'OUTBOX_UNUSABLE']);

/** Whether `err` or one of its causes carries one of ENVIRONMENT_CODES. */
export function isEnvironmentProblem(err: unknown): boolean {
  for (let e = err, depth = 0; e !== undefined && e !== null && depth < 10; e = (e as { cause?: unknown }).cause, depth++) {
    const code = (e as { code?: unknown }).code;
    if (isErrorCode(code) && ENVIRONMENT_CODES.has(code)) return true;
  }
  return false;
}

/** A short, single-line description of any thrown value, for log lines (no stacks). */
export function describeError(err: unknown): string {
  if (err instanceof Error) {
    const code = (err as { code?: unknown }).code;
    const base = typeof code === 'string' && !err.message.includes(code) ? `${err.message} (${code})` : err.message;
    const cause = (err as { cause?: unknown }).cause;
    if (cause === undefined || cause === err) return base;
    const inner = describeError(cause);
    // Wrappers usually quote their cause already: say it once.
    return base.includes(inner) || (cause instanceof Error && base.includes(cause.message)) ? base : `${base}: ${inner}`;
  }
  return String(err);
}
