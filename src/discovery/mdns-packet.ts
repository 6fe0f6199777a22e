/**
 * PURE: interpretation of mDNS responses for the adapter in mdns.ts. `PeerBook` keeps
 * what each tdxfer instance announced (per lane) and turns one response packet into a
 * list of actions, in order; the adapter executes them (emit, warn, goodbye timers).
 * No socket and no timer here: unit-tested without root or namespaces.
 */
import { addressOrder } from '../transport/address.js';
import type { Announcement } from './table.js';
import { decodeTxt } from './txt.js';
import { SERVICE_DOMAIN, instanceOf, sameName } from './mdns-names.js';

// --- the parts of multicast-dns 7.2.5 (bonjour's `server.mdns`) packets we rely on -----
export interface ResourceRecord {
  name: string;
  type: string;
  ttl?: number;
  data?: unknown;
}
export interface MdnsPacket {
  answers?: ResourceRecord[];
  additionals?: ResourceRecord[];
}

/** Who we are, to recognise our own answers and a peer that took our name. */
export interface SelfInfo {
  id: string;
  name: string;
  instanceName: string;
}

export type PacketAction =
  /** A goodbye (TTL 0) for a known instance: confirm it by a re-query before reporting it. */
  | { kind: 'goodbye'; instance: string }
  /** Any answer for the instance: cancels a pending goodbye. */
  | { kind: 'alive'; instance: string }
  /** A known peer answered, nothing changed. */
  | { kind: 'seen'; instance: string }
  /** A new peer, or a known one whose announcement changed. */
  | { kind: 'announce'; ann: Announcement }
  /** Our own announcement came back on this lane. */
  | { kind: 'heardSelf' }
  /** Warn once per key. */
  | { kind: 'warn'; key: string; msg: string };

interface Known {
  ann: Announcement;
  /** Per lane: [referer, ...announced addresses] of the latest answer heard on it. */
  byLane: Map<number, string[]>;
}

function sameAnnouncement(a: Announcement, b: Announcement): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

export class PeerBook {
  private readonly known = new Map<string, Known>();

  constructor(private readonly self: SelfInfo) {}

  has(instance: string): boolean {
    return this.known.has(instance);
  }

  /** The known instances that were heard from, or announce, `address` (who sent a query). */
  instancesAt(address: string): string[] {
    return [...this.known.entries()].filter(([, k]) => [...k.byLane.values()].some((a) => a.includes(address))).map(([i]) => i);
  }

  /** Drops an instance (a confirmed goodbye); true if it was known. */
  forget(instance: string): boolean {
    return this.known.delete(instance);
  }

  /** One response heard on lane `laneIndex` from `from` (the sender's address) -> actions, in order. */
  interpret(laneIndex: number, packet: MdnsPacket, from: string): PacketAction[] {
    const out: PacketAction[] = [];
    const records = [...(packet.answers ?? []), ...(packet.additionals ?? [])];
    const handled = new Set<string>();
    for (const ptr of records) {
      if (ptr.type !== 'PTR' || !sameName(ptr.name, SERVICE_DOMAIN) || typeof ptr.data !== 'string') continue;
      const fqdn = ptr.data;
      const instance = instanceOf(fqdn);
      if (instance === null || handled.has(instance)) continue;
      handled.add(instance);
      if (instance === this.self.instanceName && (ptr.ttl ?? 0) === 0) continue; // our own goodbye
      if ((ptr.ttl ?? 0) === 0) {
        if (this.known.has(instance)) out.push({ kind: 'goodbye', instance });
        continue;
      }
      out.push({ kind: 'alive', instance });
      const srv = records.find((r) => r.type === 'SRV' && sameName(r.name, fqdn) && (r.ttl ?? 0) > 0);
      const txt = records.find((r) => r.type === 'TXT' && sameName(r.name, fqdn));
      if (srv === undefined || txt === undefined) {
        if (this.known.has(instance)) out.push({ kind: 'seen', instance });
        continue;
      }
      this.service(out, laneIndex, instance, srv, txt, records, from);
    }
    // Answers without the PTR (e.g. to a probe's ANY query) still prove a known peer alive.
    for (const r of records) {
      if (r.type !== 'SRV' || (r.ttl ?? 0) === 0) continue;
      const instance = instanceOf(r.name);
      if (instance !== null && !handled.has(instance) && this.known.has(instance)) {
        handled.add(instance);
        out.push({ kind: 'alive', instance }, { kind: 'seen', instance });
      }
    }
    return out;
  }

  private service(
    out: PacketAction[],
    laneIndex: number,
    instance: string,
    srv: ResourceRecord,
    txtRecord: ResourceRecord,
    records: ResourceRecord[],
    from: string,
  ): void {
    const txt = decodeTxt(txtRecord.data);
    if (txt.id === this.self.id) {
      out.push({ kind: 'heardSelf' });
      return;
    }
    const srvData = srv.data as { port?: unknown; target?: unknown } | undefined;
    const port = typeof srvData?.port === 'number' ? srvData.port : 0;
    if (txt.id === null || port <= 0) {
      out.push({ kind: 'warn', key: `noid:${instance}`, msg: `mDNS: ignoring "${instance}" at ${from}: no agent id or port in its announcement (not a tdxfer agent?)` });
      return;
    }
    const target = typeof srvData?.target === 'string' ? srvData.target : '';
    const announced = records
      .filter((r) => (r.type === 'A' || r.type === 'AAAA') && sameName(r.name, target) && typeof r.data === 'string')
      .map((r) => r.data as string);

    const prev = this.known.get(instance);
    const byLane = prev?.byLane ?? new Map<number, string[]>();
    byLane.set(laneIndex, [from, ...announced]);
    // Lane order, not arrival order: two NICs hearing the same peer must not flip its best address.
    const lanesInOrder = [...byLane.entries()].sort((a, b) => a[0] - b[0]).flatMap(([, a]) => a);
    const ann: Announcement = {
      instance,
      id: txt.id,
      name: txt.name ?? instance,
      addresses: addressOrder(lanesInOrder),
      port,
      inboxes: txt.inboxes,
      version: txt.version,
      protocols: txt.protocols,
      fingerprint: txt.fingerprint,
    };
    const changed = prev === undefined || !sameAnnouncement(prev.ann, ann);
    this.known.set(instance, { ann, byLane });

    if (ann.name === this.self.name) {
      out.push({
        kind: 'warn',
        key: `dup:${ann.id}`,
        msg:
          `mDNS: another agent uses our name "${this.self.name}": "${instance}" (id ${ann.id}) at ${ann.addresses.join(', ')}:${port}, ` +
          `and we are "${this.self.instanceName}" (id ${this.self.id}). Files routed to "${this.self.name}" go to both; ` +
          `give each agent a unique "name" (or route to "${this.self.name}#<id>").`,
      });
    }
    out.push(changed ? { kind: 'announce', ann } : { kind: 'seen', instance });
  }
}
