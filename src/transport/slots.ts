/**
 * PURE  Who holds the transfer port's connection slots (issue #10 items 4 and 5).
 *
 * Two budgets, so that nobody without the key can keep peers out:
 * - unauthenticated connections (TLS or tdxfer handshake not finished) have their own
 *   small budget, overall and per source address. When it is full, a new connection
 *   takes the place of a random one of them, a silent one (nothing received yet) if there
 *   is one: a flood cannot keep all of them, a flood of silent connections only displaces
 *   itself, and a real peer's handshake, under way from its first bytes (its TLS
 *   ClientHello or HELLO), keeps its place however fast the flood comes; each stage still
 *   has `limits.handshakeTimeoutMs`. (Random among all of them only, the handshake had to
 *   beat the flood's rate: under wine, at ~550 silent connections per second, a sender
 *   stayed out for the whole 240 s of a test.)
 * - authenticated connections count against `limits.maxConnections` and
 *   `limits.maxConnectionsPerPeer`. When a new one is over a limit, the longest-idle
 *   connection that holds it (nothing but keepalives for MIN_IDLE_MS) is closed to make
 *   room; when none is idle, the new one is refused with ERROR TOO_MANY_CONNECTIONS.
 */
export const PENDING_MAX = 16;
export const PENDING_MAX_PER_ADDRESS = 4;
/** An authenticated connection idle this long may be closed to make room for a new one. */
export const MIN_IDLE_MS = 3000;

export interface SlotHolder {
  /** Ms since a frame other than PING/PONG went either way. */
  idleMs(): number;
  /** A file is being received or committed. */
  busy(): boolean;
}

export type AdmitDecision<K> = { admit: true; evict: K | null } | { admit: false; reason: string };

export class SlotTable<K> {
  private readonly pending = new Map<K, string>();
  private readonly authed = new Map<K, { addr: string; holder: SlotHolder }>();

  constructor(
    private readonly limits: { maxConnections: number; maxConnectionsPerPeer: number },
    private readonly random: () => number = Math.random,
  ) {}

  get pendingCount(): number {
    return this.pending.size;
  }

  get authenticatedCount(): number {
    return this.authed.size;
  }

  /**
   * A new, unauthenticated connection: always taken; the one to close to make room, if any.
   * `heard(k)`: connection `k` has received something (its handshake is under way); the
   * connection to close is a silent one whenever one is among those it may be.
   */
  open(key: K, addr: string, heard: (k: K) => boolean = () => false): K | null {
    let victim: K | null = null;
    const fromAddr = [...this.pending].filter(([, a]) => a === addr).map(([k]) => k);
    if (fromAddr.length >= PENDING_MAX_PER_ADDRESS) victim = this.pick(fromAddr, heard);
    else if (this.pending.size >= PENDING_MAX) victim = this.pick([...this.pending.keys()], heard);
    if (victim !== null) this.pending.delete(victim);
    this.pending.set(key, addr);
    return victim;
  }

  private pick(keys: K[], heard: (k: K) => boolean): K {
    const silent = keys.filter((k) => !heard(k));
    const pool = silent.length > 0 ? silent : keys;
    return pool[Math.min(pool.length - 1, Math.floor(this.random() * pool.length))]!;
  }

  /** The handshake succeeded: a slot among the authenticated, possibly by closing an idle one. */
  authenticate(key: K, addr: string, holder: SlotHolder): AdmitDecision<K> {
    this.pending.delete(key);
    const { maxConnections, maxConnectionsPerPeer } = this.limits;
    const same = [...this.authed].filter(([, v]) => v.addr === addr);
    let candidates: Array<[K, { holder: SlotHolder }]> | null = null;
    let limit = '';
    if (same.length >= maxConnectionsPerPeer) {
      candidates = same;
      limit = `${same.length} connections from ${addr} are open (limits.maxConnectionsPerPeer=${maxConnectionsPerPeer} on the receiver)`;
    } else if (this.authed.size >= maxConnections) {
      candidates = [...this.authed];
      limit = `${this.authed.size} connections are open (limits.maxConnections=${maxConnections} on the receiver)`;
    }
    let evict: K | null = null;
    if (candidates) {
      let best = -1;
      for (const [k, v] of candidates) {
        const idle = v.holder.idleMs();
        if (!v.holder.busy() && idle >= MIN_IDLE_MS && idle > best) {
          best = idle;
          evict = k;
        }
      }
      if (evict === null) return { admit: false, reason: `too many connections: ${limit} and none is idle` };
      this.authed.delete(evict);
    }
    this.authed.set(key, { addr, holder });
    return { admit: true, evict };
  }

  close(key: K): void {
    this.pending.delete(key);
    this.authed.delete(key);
  }
}
