/**
 * PURE: outbox "to" entries + the known peers -> concrete destinations.
 *
 * Peer-name rules (shared with PeerTable.resolve):
 * - "name#idprefix" addresses one discovered agent exactly (or self by its id);
 * - a static peer of that name wins (and is the only match);
 * - then self (by own name);
 * - then every discovered agent of that name (several agents may share a name:
 *   all of them get the files; PeerTable.duplicates() lets the agent warn about it).
 */
import type { PeerInfo } from './types.js';
import type { RouteConfig } from './config/types.js';
import { flattensByDefault, needsInbox } from './config/protocols.js';

export interface Destination {
  /** Stable: `${peerKey}/${inbox ?? ''}`. */
  key: string;
  /** Display name. */
  peer: string;
  /** The peer name for static/self, `${name}#${id}` for discovered agents. */
  peerKey: string;
  inbox: string | null;
  protocol: 'tdxfer' | 'legacy';
  flatten: boolean;
}

export interface RouteResolution {
  destinations: Destination[];
  waiting: Array<{ route: RouteConfig; reason: string }>;
}

/** The key that names one peer unambiguously in queues and logs. */
export function peerKeyOf(p: PeerInfo): string {
  return p.source === 'discovered' ? `${p.name}#${p.id ?? ''}` : p.name;
}

/** Splits "name#idprefix"; a name without '#' (or with an empty prefix) has idPrefix null. */
export function parsePeerRef(ref: string): { name: string; idPrefix: string | null } {
  const i = ref.lastIndexOf('#');
  if (i <= 0 || i === ref.length - 1) return { name: ref, idPrefix: null };
  return { name: ref.slice(0, i), idPrefix: ref.slice(i + 1).toLowerCase() };
}

function byNameThenId(a: PeerInfo, b: PeerInfo): number {
  if (a.name !== b.name) return a.name < b.name ? -1 : 1;
  const ai = a.id ?? '';
  const bi = b.id ?? '';
  return ai < bi ? -1 : ai > bi ? 1 : 0;
}

/** The peers a route's `peer` (not "*") refers to, per the rules in the header. */
export function selectPeers(ref: string, peers: readonly PeerInfo[]): PeerInfo[] {
  const { name, idPrefix } = parsePeerRef(ref);
  if (idPrefix !== null) {
    const exact = peers.filter(
      (p) => p.source !== 'static' && p.name === name && p.id !== null && p.id.toLowerCase().startsWith(idPrefix),
    );
    if (exact.length > 0) return exact.sort(byNameThenId);
    // A static or discovered name that itself contains '#': fall through to a plain lookup.
  }
  const stat = peers.filter((p) => p.source === 'static' && p.name === ref);
  if (stat.length > 0) return stat.slice(0, 1);
  const self = peers.filter((p) => p.source === 'self' && p.name === ref);
  if (self.length > 0) return self.slice(0, 1);
  return peers.filter((p) => p.source === 'discovered' && p.name === ref).sort(byNameThenId);
}

function destinationFor(p: PeerInfo, route: RouteConfig): Destination {
  const inbox = route.inbox ?? null;
  const peerKey = peerKeyOf(p);
  return {
    key: `${peerKey}/${inbox ?? ''}`,
    peer: p.name,
    peerKey,
    inbox,
    protocol: p.protocol,
    flatten: route.flatten ?? flattensByDefault(p.protocol),
  };
}

export function resolveRoutes(
  routes: readonly RouteConfig[],
  peers: readonly PeerInfo[],
  opts: { selfName: string; /** Whether mDNS discovery runs (only sharpens "waiting" reasons). */ discovery?: boolean },
): RouteResolution {
  const destinations: Destination[] = [];
  const seen = new Set<string>();
  const waiting: RouteResolution['waiting'] = [];
  const add = (d: Destination): void => {
    if (seen.has(d.key)) return;
    seen.add(d.key);
    destinations.push(d);
  };

  for (const route of routes) {
    const inbox = route.inbox ?? null;
    if (route.peer === '*') {
      if (inbox === null) {
        waiting.push({ route, reason: 'route to peer "*" needs an inbox: add "inbox": "<name>" to this "to" entry' });
        continue;
      }
      const matches = peers
        .filter((p) => p.source === 'discovered' && p.state !== 'gone' && p.inboxes.includes(inbox))
        .sort(byNameThenId);
      if (matches.length === 0) {
        waiting.push({ route, reason: `no discovered peer with inbox "${inbox}" is up yet` });
        continue;
      }
      for (const p of matches) add(destinationFor(p, route));
      continue;
    }

    let matches = selectPeers(route.peer, peers);
    if (matches.length === 0 && route.peer === opts.selfName) {
      // Self not registered in the peer list (yet): it is still a valid destination.
      matches = [
        { id: null, name: opts.selfName, source: 'self', protocol: 'tdxfer', addresses: ['127.0.0.1'], port: 0, inboxes: [], version: null, state: 'up', lastSeen: null },
      ];
    }
    if (matches.length === 0) {
      const reason =
        opts.discovery === true
          ? `peer ${route.peer} not seen yet (discovery on): files wait until it announces itself; check its name and network if it never does`
          : opts.discovery === false
            ? `peer ${route.peer} unknown: not in "peers" and discovery is off; add it to "peers" or enable discovery`
            : `peer ${route.peer} not seen yet (discovery on) / unknown (not in "peers")`;
      waiting.push({ route, reason });
      continue;
    }
    for (const p of matches) {
      if (inbox === null && needsInbox(p.protocol)) {
        const known = p.inboxes.length > 0 ? ` (its inboxes: ${p.inboxes.join(', ')})` : '';
        waiting.push({ route, reason: `route to ${peerKeyOf(p)} needs an inbox${known}: add "inbox": "<name>" to this "to" entry` });
        continue;
      }
      add(destinationFor(p, route));
    }
  }
  return { destinations, waiting };
}

// addressOrder moved to transport/address.ts (issue #13 item 7); re-exported so importers keep working.
export { addressOrder } from './transport/address.js';
