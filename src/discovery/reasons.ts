/**
 * PURE: why a peer cannot be used, in the few words a peer row has room for (status,
 * dashboard, `tdxfer peers`). The full message stays in the log and the failures list.
 *
 * Codes come from the sender's connection attempt (TdxError / PeerError codes, see
 * src/protocol/errors.ts); messages are looked at only where one code covers several
 * causes (TLS_FAILED: another key, or encryption on one side only).
 */

import { isErrorCode, type ReportedCode } from '../errors.js';

export const PEER_REASON = {
  otherKey: 'other installation key',
  encryptDiffers: 'encryption setting differs',
  tooManyConnections: 'refused: too many connections',
  refused: 'connection refused (agent not running?)',
  noAnswer: 'no answer',
  shuttingDown: 'peer is shutting down',
  closedEarly: 'closed during the handshake (see its log)',
} as const;

export function peerReason(code: ReportedCode | null | undefined, message: string | null | undefined): string | null {
  const msg = message ?? '';
  // Only our own codes are looked up (tsc checks each case against ERROR_CODES); others fall to the message.
  switch (isErrorCode(code) ? code : null) {
    case 'AUTH_FAILED':
      return PEER_REASON.otherKey;
    // The ERROR frame a receiver at its connection limit sends during the handshake
    // (src/protocol/PROTOCOL.md); a bare close at the limit looks like CONNECTION_LOST.
    case 'TOO_MANY_CONNECTIONS':
      return PEER_REASON.tooManyConnections;
    case 'SHUTTING_DOWN':
      return PEER_REASON.shuttingDown;
    case 'CONNECT_TIMEOUT':
    case 'HANDSHAKE_TIMEOUT':
      return PEER_REASON.noAnswer;
    default:
      break;
  }
  if (/installation key|security\.key/i.test(msg)) return PEER_REASON.otherKey;
  if (/too many connections|TOO_MANY_CONNECTIONS/i.test(msg)) return PEER_REASON.tooManyConnections;
  // A plain agent answers a TLS client in plain bytes ("does not speak TLS"); a TLS agent
  // answers a plain one with ERROR UNSUPPORTED_PROTOCOL "requires encryption".
  if (/does not speak TLS|requires encryption|uses encryption|security\.encrypt=(true|false)/i.test(msg)) return PEER_REASON.encryptDiffers;
  // A bare close before the handshake ended: a connection limit (older agents send no
  // ERROR frame), a shutdown, or something the peer's log names.
  if (/closed the connection/i.test(msg)) return PEER_REASON.closedEarly;
  if (/ECONNREFUSED/.test(msg)) return PEER_REASON.refused;
  if (/ETIMEDOUT|EHOSTUNREACH|ENETUNREACH|no answer within/i.test(msg)) return PEER_REASON.noAnswer;
  if (msg === '') return null;
  return msg.length > 80 ? `${msg.slice(0, 79)}…` : msg;
}
