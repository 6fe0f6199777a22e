/**
 * PURE peer table: self, static peers (config) and discovered agents (mDNS), with
 * their liveness. No timers of its own: the owner calls tick() periodically and the
 * clock is injected, so every transition is unit-testable.
 *
 * Invariants:
 * - self is always 'up'; static peers are 'up' until a connection attempt says otherwise;
 * - a discovered peer is 'gone' after a goodbye or goneAfterMs without being heard;
 *   hearing from it again (announce or seen) makes it 'up' at once;
 * - 'change' is emitted with a copy whenever anything but lastSeen changes.
 */
import { EventEmitter } from 'node:events';
import type { PeerInfo } from '../types.js';
import type { PeerConfig } from '../config/types.js';
import type { Clock } from '../clock.js';
import { peerKeyOf, selectPeers } from '../routing.js';

export interface Announcement {
  /** mDNS instance name. */
  instance: string;
  id: string;
  name: string;
  /** Usable addresses, best first. */
  addresses: string[];
  port: number;
  inboxes: string[];
  version: string | null;
  protocols: number[];
  fingerprint: string | null;
}

export interface PeerTableOptions {
  /** Wall time, ms since the epoch (src/clock.ts; default Date.now; compose.ts passes its clock's). */
  now?: Clock['now'];
  /** A discovered peer not heard from for this long is 'gone' (default 25000: a backstop; mDNS record expiry, RECORD_TTL_S, usually comes first). */
  goneAfterMs?: number;
}

interface Discovered {
  info: PeerInfo;
  ann: Announcement;
}

const copy = (p: PeerInfo): PeerInfo => ({ ...p, addresses: [...p.addresses], inboxes: [...p.inboxes] });

function sameInfo(a: PeerInfo, b: PeerInfo): boolean {
  return (
    a.id === b.id &&
    a.name === b.name &&
    a.source === b.source &&
    a.protocol === b.protocol &&
    a.port === b.port &&
    a.version === b.version &&
    a.state === b.state &&
    a.addresses.join('\n') === b.addresses.join('\n') &&
    a.inboxes.join('\n') === b.inboxes.join('\n')
  );
}

export class PeerTable extends EventEmitter<{ change: [PeerInfo] }> {
  private readonly now: () => number;
  private readonly goneAfterMs: number;
  private self: PeerInfo | null = null;
  private readonly statics = new Map<string, PeerInfo>();
  /** By mDNS instance name. */
  private readonly discovered = new Map<string, Discovered>();
  /** Last connection error per peer key (static name or name#id). */
  private readonly reasons = new Map<string, string>();
  /** Bumped by every method that may change an entry (lastSeen included): snapshot() is rebuilt after. */
  private version = 0;
  private snap: { version: number; peers: readonly PeerInfo[] } | null = null;

  constructor(opts: PeerTableOptions = {}) {
    super();
    this.now = opts.now ?? Date.now;
    this.goneAfterMs = opts.goneAfterMs ?? 25_000;
  }

  setSelf(self: { id: string; name: string; port: number; inboxes: string[]; version: string }): void {
    this.version++;
    const next: PeerInfo = {
      id: self.id,
      name: self.name,
      source: 'self',
      protocol: 'tdxfer',
      addresses: ['127.0.0.1'],
      port: self.port,
      inboxes: [...self.inboxes],
      version: self.version,
      state: 'up',
      lastSeen: null,
    };
    const prev = this.self;
    this.self = next;
    if (prev === null || !sameInfo(prev, next)) this.emitChange(next);
  }

  /** Replaces the static peers; a peer whose host/port/protocol did not change keeps its state. */
  setStatic(peers: PeerConfig[]): void {
    this.version++;
    const old = new Map(this.statics);
    this.statics.clear();
    for (const pc of peers) {
      const prev = old.get(pc.name);
      const unchanged = prev !== undefined && prev.addresses[0] === pc.host && prev.port === pc.port && prev.protocol === pc.protocol;
      const next: PeerInfo = {
        id: null,
        name: pc.name,
        source: 'static',
        protocol: pc.protocol,
        addresses: [pc.host],
        port: pc.port,
        inboxes: [],
        version: null,
        state: unchanged ? prev.state : 'up',
        lastSeen: unchanged ? prev.lastSeen : null,
      };
      this.statics.set(pc.name, next);
      old.delete(pc.name);
      if (!unchanged) this.reasons.delete(pc.name);
      if (prev === undefined || !sameInfo(prev, next)) this.emitChange(next);
    }
    // Removed static peers: report them gone once so views drop them.
    for (const gone of old.values()) {
      this.reasons.delete(gone.name);
      this.emitChange({ ...gone, state: 'gone' });
    }
  }

  announce(a: Announcement): void {
    this.version++;
    if (this.self !== null && a.id === this.self.id) return;
    const prev = this.discovered.get(a.instance);
    const next: PeerInfo = {
      id: a.id,
      name: a.name,
      source: 'discovered',
      protocol: 'tdxfer',
      addresses: [...a.addresses],
      port: a.port,
      inboxes: [...a.inboxes],
      version: a.version,
      state: 'up',
      lastSeen: this.now(),
    };
    // An agent that re-announces under the same instance is reachable again: forget old errors.
    if (prev === undefined || prev.info.state !== 'up') this.reasons.delete(peerKeyOf(next));
    this.discovered.set(a.instance, { info: next, ann: { ...a, addresses: [...a.addresses], inboxes: [...a.inboxes] } });
    if (prev === undefined || !sameInfo(prev.info, next)) this.emitChange(next);
  }

  seen(instance: string): void {
    this.version++;
    const d = this.discovered.get(instance);
    if (d === undefined) return;
    d.info.lastSeen = this.now();
    if (d.info.state === 'gone') {
      d.info.state = 'up';
      this.emitChange(d.info);
    }
  }

  goodbye(instance: string): void {
    this.version++;
    const d = this.discovered.get(instance);
    if (d === undefined || d.info.state === 'gone') return;
    d.info.state = 'gone';
    this.emitChange(d.info);
  }

  /** `name` is a peer name or "name#idprefix" (as resolve()); self is never marked. */
  markUnreachable(name: string, why?: string): void {
    this.version++;
    for (const p of this.targets(name)) {
      if (why !== undefined) this.reasons.set(peerKeyOf(p), why);
      if (p.state !== 'up') continue; // 'gone' stays gone: it is not announcing either
      p.state = 'unreachable';
      this.emitChange(p);
    }
  }

  /** A connection succeeded: proof of life, also for a discovered peer that went quiet. */
  markReachable(name: string): void {
    this.version++;
    for (const p of this.targets(name)) {
      this.reasons.delete(peerKeyOf(p));
      if (p.source !== 'self') p.lastSeen = this.now();
      if (p.state === 'up') continue;
      p.state = 'up';
      this.emitChange(p);
    }
  }

  /** A static peer's inboxes as its WELCOME announced them (static peers announce nothing else). */
  learnInboxes(name: string, inboxes: string[]): void {
    this.version++;
    const p = this.statics.get(name);
    if (!p || (p.inboxes.length === inboxes.length && p.inboxes.every((x, i) => x === inboxes[i]))) return;
    p.inboxes = [...inboxes];
    this.emitChange(p);
  }

  /** Last connection error recorded by markUnreachable for a peer key (name, or name#id). */
  reason(peerKey: string): string | null {
    return this.reasons.get(peerKey) ?? null;
  }

  tick(): PeerInfo[] {
    this.version++;
    const t = this.now();
    const changed: PeerInfo[] = [];
    for (const d of this.discovered.values()) {
      if (d.info.state === 'gone') continue;
      if (t - (d.info.lastSeen ?? t) < this.goneAfterMs) continue;
      d.info.state = 'gone';
      changed.push(copy(d.info));
      this.emitChange(d.info);
    }
    return changed;
  }

  resolve(name: string): PeerInfo[] {
    return selectPeers(name, this.all()).map(copy);
  }

  /** Self first, then static and discovered peers, each sorted by name (then id). */
  list(): PeerInfo[] {
    const sort = (a: PeerInfo, b: PeerInfo): number =>
      a.name !== b.name ? (a.name < b.name ? -1 : 1) : (a.id ?? '') < (b.id ?? '') ? -1 : (a.id ?? '') > (b.id ?? '') ? 1 : 0;
    return [
      ...(this.self ? [this.self] : []),
      ...[...this.statics.values()].sort(sort),
      ...[...this.discovered.values()].map((d) => d.info).sort(sort),
    ].map(copy);
  }

  /**
   * list(), frozen and shared until the table changes (issue #12): the outbox asks for the
   * peers once per file to route it, and list() copies every peer each time (5.4 µs and 14 KiB
   * of allocations per call with 51 peers). Read-only: the entries and their arrays are frozen.
   */
  snapshot(): readonly PeerInfo[] {
    if (this.snap?.version !== this.version) {
      const peers = this.list().map((p) => {
        Object.freeze(p.addresses);
        Object.freeze(p.inboxes);
        return Object.freeze(p);
      });
      this.snap = { version: this.version, peers: Object.freeze(peers) };
    }
    return this.snap.peers;
  }

  /** The announcement behind a discovered peer (fingerprint, protocols…), by instance name. */
  announcement(instance: string): Announcement | undefined {
    const d = this.discovered.get(instance);
    return d ? { ...d.ann, addresses: [...d.ann.addresses], inboxes: [...d.ann.inboxes] } : undefined;
  }

  /** Names used by several agents (self and discovered ones that are not gone) with different ids. */
  duplicates(): Array<{ name: string; ids: string[] }> {
    const byName = new Map<string, Set<string>>();
    const live = [...(this.self ? [this.self] : []), ...[...this.discovered.values()].map((d) => d.info).filter((p) => p.state !== 'gone')];
    for (const p of live) {
      if (p.id === null) continue;
      let s = byName.get(p.name);
      if (!s) byName.set(p.name, (s = new Set()));
      s.add(p.id);
    }
    return [...byName.entries()]
      .filter(([, ids]) => ids.size > 1)
      .map(([name, ids]) => ({ name, ids: [...ids].sort() }))
      .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  }

  /** Live (mutable) entries a name refers to, self excluded. */
  private targets(name: string): PeerInfo[] {
    const picked = selectPeers(name, this.all());
    const out: PeerInfo[] = [];
    for (const p of picked) {
      if (p.source === 'static') {
        const s = this.statics.get(p.name);
        if (s) out.push(s);
      } else if (p.source === 'discovered') {
        for (const d of this.discovered.values()) if (d.info === p) out.push(d.info);
      }
    }
    return out;
  }

  private all(): PeerInfo[] {
    return [...(this.self ? [this.self] : []), ...this.statics.values(), ...[...this.discovered.values()].map((d) => d.info)];
  }

  private emitChange(p: PeerInfo): void {
    this.emit('change', copy(p));
  }
}
