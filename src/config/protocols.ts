/**
 * PURE: what the choice between tdxfer v1 and the legacy TOX protocol means for
 * routing and naming. Config checks, routing and the CLI ask these questions instead
 * of comparing `protocol === 'legacy'` themselves; how a file is sent is the
 * FileSender seam (transfer/file-sender.ts).
 */
import type { PeerProtocol } from './types.js';

/** Whether routes to a peer of `protocol` flatten paths when the route does not say (the TOX receiver cannot create folders). */
export function flattensByDefault(protocol: PeerProtocol): boolean {
  return protocol === 'legacy';
}

/** Whether a route to a peer of `protocol` must name one of its inboxes (a TOX receiver has one target folder). */
export function needsInbox(protocol: PeerProtocol): boolean {
  return protocol !== 'legacy';
}

/** How a peer's protocol (or a received file's `via`) is marked in the CLI's lines: " (TOX)" for the legacy one. */
export function protocolMark(protocol: PeerProtocol | 'tdxfer'): string {
  return protocol === 'legacy' ? ' (TOX)' : '';
}

/** The wire path for an outbox-relative path ('/'-separated): its base name when flattened. */
export function targetFor(rel: string, flatten: boolean): string {
  if (!flatten) return rel;
  const parts = rel.split('/').filter((p) => p !== '');
  return parts[parts.length - 1] ?? rel;
}
