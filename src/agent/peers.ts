/**
 * The peers as the status view shows them: the routing table (PeerTable) plus why a
 * link fails (discovery/reasons.ts) and the agents of another installation that
 * discovery hears but that are never routed to. Discovery feeds it; the agent's
 * dispatch reads the table; every visible change is a 'peer' event.
 */
import { EventEmitter } from 'node:events';
import type { PeerInfo } from '../types.js';
import type { Announcement, PeerTable } from '../discovery/table.js';
import { peerKeyOf, selectPeers } from '../routing.js';
import { PEER_REASON } from '../discovery/reasons.js';
import { systemClock, type Clock } from '../clock.js';

export type DiscoveryState = 'off' | 'on' | 'error';

export class PeerBoard extends EventEmitter<{ peer: [PeerInfo] }> {
  /** Short reason per peer key why its link fails; cleared on success. */
  private readonly reasons = new Map<string, string>();
  /** Agents discovery sees with another installation key, by mDNS instance: shown, never routed to. */
  private readonly foreign = new Map<string, PeerInfo>();
  /** Set by the discovery part (agent/discovery-link.ts). */
  discoveryState: DiscoveryState = 'off';

  /** `clock`: when foreign agents were last heard (the table has its own `now`; compose.ts gives both the same clock). */
  constructor(
    readonly table: PeerTable,
    private readonly clock: Clock = systemClock,
  ) {
    super();
    this.setMaxListeners(100);
    table.on('change', (p) => this.emit('peer', this.withReason(p)));
  }

  withReason(p: PeerInfo): PeerInfo {
    return { ...p, reason: this.reasons.get(peerKeyOf(p)) ?? null };
  }

  /** Records why a peer's link fails (null: it works); a change is emitted as a 'peer' event. */
  noteReason(peerKey: string, reason: string | null): void {
    const p = selectPeers(peerKey, this.table.list())[0];
    const key = p ? peerKeyOf(p) : peerKey;
    if ((this.reasons.get(key) ?? null) === reason) return;
    if (reason === null) this.reasons.delete(key);
    else this.reasons.set(key, reason);
    if (p) this.emit('peer', this.withReason(p));
  }

  /**
   * Discovery heard an agent of another installation (another key fingerprint): it is
   * shown with the reason, never routed to (it is not in the peer table).
   */
  noteForeign(a: Announcement): void {
    const info: PeerInfo = {
      id: a.id, name: a.name, source: 'discovered', protocol: 'tdxfer', addresses: [...a.addresses], port: a.port, inboxes: [...a.inboxes],
      version: a.version, state: 'unreachable', lastSeen: this.clock.now(), reason: PEER_REASON.otherKey,
    };
    const prev = this.foreign.get(a.instance);
    this.foreign.set(a.instance, info);
    if (!prev || prev.name !== info.name || prev.port !== info.port || prev.addresses.join() !== info.addresses.join()) this.emit('peer', { ...info });
  }

  /** The instance is gone, or announces our key again. */
  forgetForeign(instance: string): void {
    const prev = this.foreign.get(instance);
    if (!prev) return;
    this.foreign.delete(instance);
    this.emit('peer', { ...prev, state: 'gone' });
  }

  /** The peer table with reasons, plus agents of another installation (instead of their stale entries). */
  list(): PeerInfo[] {
    const foreignIds = new Set([...this.foreign.values()].map((f) => f.id));
    const own = this.table.list().filter((p) => !(p.source === 'discovered' && foreignIds.has(p.id)));
    return [...own.map((p) => this.withReason(p)), ...[...this.foreign.values()].map((f) => ({ ...f }))];
  }
}
