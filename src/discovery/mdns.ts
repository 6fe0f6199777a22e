/**
 * mDNS adapter around bonjour-service 1.4.4 (the only file that imports it).
 *
 * Publishes `_tdxfer._tcp` and reports other agents as `announce` / `seen` / `goodbye`
 * events for the PeerTable. Works around the silent failure modes measured in
 * /work/shared/netns/README.md:
 * - a kill -9'd peer sends no goodbye and bonjour's Browser never expires it, nor
 *   reports a returning peer with a new address (it only compares SRV host/port):
 *   so we read every mDNS response ourselves (`seen` on each answer, `announce` when
 *   anything changed) and re-query every `requeryMs`; the table's tick() times out silence;
 * - multicast-dns 'error' events throw without a listener, bonjour's default error
 *   callback throws: both are handled and turned into `warning`s;
 * - `interface` needs `bind: '0.0.0.0'` to receive multicast, and a machine with two
 *   NICs announces only on the routed one: one Bonjour instance per configured NIC;
 * - a same-name publisher silently gives up (console.log only): "no `up` within
 *   upTimeoutMs" is reported as a conflict; not hearing our own announcement back
 *   (multicast loopback) means nothing leaves the NIC (no multicast route, firewall);
 * - a publisher that loses the name probe tears down, i.e. sends a goodbye for the name
 *   it does not own: a goodbye is only reported when a re-query gets no answer;
 * - default host is the OS host name (shared by containers/namespaces), IPv6
 *   link-local addresses without zone are useless: explicit host, disableIPv6.
 */
import { EventEmitter } from 'node:events';
import os from 'node:os';
import { Bonjour, type Browser, type Service, type ServiceConfig } from 'bonjour-service';
import { TdxError, describeError } from '../errors.js';
import type { Logger } from '../log.js';
import { addressOrder } from '../transport/address.js';
import type { Announcement } from './table.js';
import { decodeTxt } from './txt.js';

const SERVICE_TYPE = 'tdxfer';
const SERVICE_DOMAIN = `_${SERVICE_TYPE}._tcp.local`;
/** DNS label limit (RFC 1035): instance and host labels longer than this are not sent. */
const LABEL_MAX_BYTES = 63;

export interface MdnsDiscoveryOptions {
  id: string;
  name: string;
  port: number;
  /** TXT record to publish (see txt.ts encodeTxt); must contain our `id`. */
  txt: Record<string, string>;
  /** NIC names or IPv4 addresses to announce/browse on; empty = the library default (all, routed one for sending). */
  interfaces: string[];
  log: Logger;
  /** Re-query period, ms (default 3000): every peer answers, which refreshes its last-seen time. */
  requeryMs?: number;
  /** Time allowed for our announcement to come up and be heard back, ms (default 2500). */
  upTimeoutMs?: number;
  /** A goodbye is confirmed by a re-query: reported only if nobody answers within this, ms (default 400). */
  goodbyeConfirmMs?: number;
  /** Time allowed for the goodbye and socket close in stop(), ms (default 1000). */
  stopTimeoutMs?: number;
}

export interface MdnsEvents {
  announce: [Announcement];
  seen: [string];
  goodbye: [string];
  warning: [string];
}

// --- the parts of multicast-dns 7.2.5 (bonjour's `server.mdns`) we rely on -------------
interface ResourceRecord {
  name: string;
  type: string;
  ttl?: number;
  data?: unknown;
}
interface MdnsPacket {
  answers?: ResourceRecord[];
  additionals?: ResourceRecord[];
}
interface RemoteInfo {
  address: string;
}
interface MulticastDns {
  on(event: 'response', listener: (packet: MdnsPacket, rinfo: RemoteInfo) => void): unknown;
  on(event: 'error' | 'warning', listener: (err: Error) => void): unknown;
  once(event: 'ready', listener: () => void): unknown;
  once(event: 'error', listener: (err: Error) => void): unknown;
  removeListener(event: string, listener: (...args: never[]) => void): unknown;
}

interface Lane {
  /** "default", or the NIC name / address as configured, for messages. */
  label: string;
  address: string | null;
  bonjour: Bonjour;
  mdns: MulticastDns;
  service: Service | null;
  browser: Browser | null;
  up: boolean;
  heardSelf: boolean;
}

interface Known {
  ann: Announcement;
  /** Per lane: [referer, ...announced addresses] of the latest answer heard on it. */
  byLane: Map<number, string[]>;
}

const bytes = (s: string): number => Buffer.byteLength(s, 'utf8');

function truncateBytes(s: string, max: number): string {
  let out = '';
  for (const ch of s) {
    if (bytes(out + ch) > max) break;
    out += ch;
  }
  return out;
}

/**
 * `${name} (${id.slice(0,6)})`: unique even when two agents share a name. Dots would split
 * the DNS label (bonjour replaces them by '-'); long names are cut to fit 63 bytes.
 */
export function instanceNameFor(name: string, id: string): string {
  const suffix = ` (${id.slice(0, 6)})`;
  // eslint-disable-next-line no-control-regex
  const clean = name.replace(/[\u0000-\u001f\u007f]/g, '').replace(/\./g, '-').trim() || 'tdxfer';
  return truncateBytes(clean, LABEL_MAX_BYTES - bytes(suffix)) + suffix;
}

/** `<name>-<shortid>.local`, reduced to a valid host label (letters, digits, '-'). */
export function hostNameFor(name: string, id: string): string {
  const shortId = id.slice(0, 6).toLowerCase().replace(/[^a-z0-9]/g, '') || 'x';
  const label = name
    .normalize('NFKD')
    .replace(/[\u0300-\u036f]/g, '') // combining accents: "É" -> "E"
    .toLowerCase()
    .replace(/[^a-z0-9-]+/g, '-')
    .replace(/-+/g, '-')
    .replace(/^-|-$/g, '')
    .slice(0, LABEL_MAX_BYTES - shortId.length - 1)
    .replace(/-$/, '');
  return `${label || 'tdxfer'}-${shortId}.local`;
}

type NetworkInterfaces = ReturnType<typeof os.networkInterfaces>;

/**
 * Configured interfaces (names or IPv4 addresses) -> one IPv4 each, deduplicated.
 * Throws TdxError DISCOVERY_INTERFACE naming the existing interfaces when one is unknown.
 */
export function resolveInterfaces(
  wanted: readonly string[],
  nets: NetworkInterfaces = os.networkInterfaces(),
): Array<{ label: string; address: string }> {
  const v4 = (name: string): string[] =>
    (nets[name] ?? []).filter((a) => a.family === 'IPv4' || (a.family as unknown) === 4).map((a) => a.address);
  const existing = (): string =>
    Object.keys(nets)
      .map((n) => `${n} (${v4(n).join(', ') || 'no IPv4'})`)
      .join(', ') || 'none';
  const out: Array<{ label: string; address: string }> = [];
  for (const w of wanted) {
    const entry = w.trim();
    let address: string | undefined;
    if (/^\d{1,3}(\.\d{1,3}){3}$/.test(entry)) {
      address = Object.keys(nets).some((n) => v4(n).includes(entry)) ? entry : undefined;
      if (address === undefined) {
        throw new TdxError(
          'DISCOVERY_INTERFACE',
          `discovery.interfaces: no network interface has the address ${entry}. Existing: ${existing()}. Fix "discovery.interfaces" in the config (interface names or their IPv4 addresses).`,
        );
      }
    } else {
      if (nets[entry] === undefined) {
        throw new TdxError(
          'DISCOVERY_INTERFACE',
          `discovery.interfaces: unknown network interface "${entry}". Existing: ${existing()}. Fix "discovery.interfaces" in the config.`,
        );
      }
      address = v4(entry)[0];
      if (address === undefined) {
        throw new TdxError(
          'DISCOVERY_INTERFACE',
          `discovery.interfaces: interface "${entry}" has no IPv4 address (mDNS here is IPv4 only). Existing: ${existing()}.`,
        );
      }
    }
    if (!out.some((o) => o.address === address)) out.push({ label: entry === address ? entry : `${entry} (${address})`, address });
  }
  return out;
}

function sameName(a: string, b: string): boolean {
  return a.toLowerCase().replace(/\.$/, '') === b.toLowerCase().replace(/\.$/, '');
}

/** "<instance>._tdxfer._tcp.local" -> "<instance>"; null for other services. */
function instanceOf(fqdn: string): string | null {
  const suffix = `.${SERVICE_DOMAIN}`;
  const f = fqdn.replace(/\.$/, '');
  if (f.length <= suffix.length || f.slice(-suffix.length).toLowerCase() !== suffix) return null;
  return f.slice(0, -suffix.length);
}

function sameAnnouncement(a: Announcement, b: Announcement): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

function withTimeout(ms: number, run: (done: () => void) => void): Promise<boolean> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(false), ms);
    try {
      run(() => {
        clearTimeout(timer);
        resolve(true);
      });
    } catch {
      clearTimeout(timer);
      resolve(false);
    }
  });
}

export class MdnsDiscovery extends EventEmitter<MdnsEvents> {
  readonly instanceName: string;
  readonly hostName: string;
  private readonly opts: MdnsDiscoveryOptions;
  private readonly log: Logger;
  private lanes: Lane[] = [];
  private readonly known = new Map<string, Known>();
  private readonly warned = new Set<string>();
  /** Goodbyes heard, waiting for the confirming re-query to stay unanswered. */
  private readonly pendingGoodbyes = new Map<string, NodeJS.Timeout>();
  private requeryTimer: NodeJS.Timeout | null = null;
  private upTimer: NodeJS.Timeout | null = null;
  private state: 'idle' | 'running' | 'stopped' = 'idle';

  constructor(opts: MdnsDiscoveryOptions) {
    super();
    this.opts = opts;
    this.log = opts.log.child({ component: 'discovery' });
    this.instanceName = instanceNameFor(opts.name, opts.id);
    this.hostName = hostNameFor(opts.name, opts.id);
  }

  async start(): Promise<void> {
    if (this.state !== 'idle') throw new TdxError('DISCOVERY_STATE', 'MdnsDiscovery.start() called twice; create a new instance');
    const targets: Array<{ label: string; address: string | null }> =
      this.opts.interfaces.length === 0 ? [{ label: 'default', address: null }] : resolveInterfaces(this.opts.interfaces);
    this.state = 'running';
    try {
      for (const t of targets) this.lanes.push(await this.openLane(t.label, t.address));
    } catch (err) {
      await this.stop();
      throw err;
    }
    // Several lanes on one segment would see each other's probes and give up: probe only when alone.
    const probe = this.lanes.length === 1;
    this.lanes.forEach((lane) => this.publish(lane, probe));
    const requeryMs = this.opts.requeryMs ?? 3000;
    this.requeryTimer = setInterval(() => this.requery(), requeryMs);
    this.requeryTimer.unref();
    this.upTimer = setTimeout(() => this.checkUp(), this.opts.upTimeoutMs ?? 2500);
    this.upTimer.unref();
    this.log.info('mDNS discovery started', {
      instance: this.instanceName,
      host: this.hostName,
      port: this.opts.port,
      interfaces: this.lanes.map((l) => l.label).join(', '),
    });
  }

  /** Goodbye (unpublishAll) first, then close the sockets; bounded by stopTimeoutMs each. */
  async stop(): Promise<void> {
    if (this.state === 'stopped') return;
    this.state = 'stopped';
    if (this.requeryTimer) clearInterval(this.requeryTimer);
    if (this.upTimer) clearTimeout(this.upTimer);
    for (const t of this.pendingGoodbyes.values()) clearTimeout(t);
    this.pendingGoodbyes.clear();
    const ms = this.opts.stopTimeoutMs ?? 1000;
    const lanes = this.lanes;
    this.lanes = [];
    await Promise.all(
      lanes.map(async (lane) => {
        lane.browser?.stop();
        if (!(await withTimeout(ms, (done) => lane.bonjour.unpublishAll(done)))) {
          this.log.warn('mDNS goodbye not sent in time; peers will notice our absence by timeout', { interface: lane.label });
        }
        await withTimeout(ms, (done) => lane.bonjour.destroy(done));
      }),
    );
  }

  private async openLane(label: string, address: string | null): Promise<Lane> {
    // Send errors repeat with every query we answer: warn once per distinct message, then debug.
    const onError = (err: unknown): void => {
      const msg = describeError(err);
      const hint = /ENETUNREACH|EHOSTUNREACH/.test(msg)
        ? ' (multicast has no route here: on Linux `ip route add 224.0.0.0/4 dev <if>`, or check the interface is up)'
        : '';
      if (this.warned.has(`err:${label}:${msg}`)) this.log.debug(`mDNS error on ${label}: ${msg}`);
      else this.warnOnce(`err:${label}:${msg}`, `mDNS error on ${label}: ${msg}${hint}`);
    };
    // `interface`/`bind` are multicast-dns options that bonjour passes through; its types lack them.
    const mdnsOpts = address === null ? {} : { interface: address, bind: '0.0.0.0' };
    const bonjour = new Bonjour(mdnsOpts as unknown as Partial<ServiceConfig>, onError);
    const mdns = (bonjour as unknown as { server?: { mdns?: MulticastDns } }).server?.mdns;
    if (mdns === undefined) {
      bonjour.destroy();
      throw new TdxError('DISCOVERY_FAILED', 'bonjour-service internals changed (no server.mdns): this adapter is written for bonjour-service 1.4.x');
    }
    const lane: Lane = { label, address, bonjour, mdns, service: null, browser: null, up: false, heardSelf: false };
    const ready = new Promise<void>((resolve, reject) => {
      const onBindError = (err: Error): void => reject(err);
      mdns.once('error', onBindError);
      mdns.once('ready', () => {
        mdns.removeListener('error', onBindError);
        resolve();
      });
    });
    mdns.on('error', onError);
    mdns.on('warning', (err) => {
      const msg = describeError(err);
      if (this.warned.has(`warn:${label}:${msg}`)) this.log.debug(`mDNS warning on ${label}: ${msg}`);
      else this.warnOnce(`warn:${label}:${msg}`, `mDNS warning on ${label}: ${msg}`);
    });
    mdns.on('response', (packet, rinfo) => {
      try {
        this.onResponse(this.lanes.indexOf(lane), lane, packet, rinfo);
      } catch (err) {
        this.warn(`ignored a malformed mDNS response from ${rinfo.address}: ${describeError(err)}`);
      }
    });
    try {
      await ready;
    } catch (err) {
      await withTimeout(1000, (done) => bonjour.destroy(done));
      throw new TdxError(
        'DISCOVERY_FAILED',
        `cannot open the mDNS socket (UDP 5353) on ${label}: ${describeError(err)}. Another program may hold the port without SO_REUSEADDR, or permissions forbid it; disable discovery or use static "peers"`,
        { cause: err },
      );
    }
    return lane;
  }

  private publish(lane: Lane, probe: boolean): void {
    const service = lane.bonjour.publish({
      name: this.instanceName,
      type: SERVICE_TYPE,
      protocol: 'tcp',
      port: this.opts.port,
      host: this.hostName,
      txt: this.opts.txt,
      disableIPv6: true,
      probe,
    });
    service.on('up', () => {
      lane.up = true;
      this.log.debug('mDNS announcement up', { interface: lane.label, instance: this.instanceName });
    });
    lane.service = service;
    // The Browser is only our query sender (its constructor sends the first PTR query,
    // update() the next ones). Its own response parser is detached: it keeps stale
    // services forever and would only duplicate onResponse() on untrusted input.
    lane.browser = lane.bonjour.find({ type: SERVICE_TYPE, protocol: 'tcp' });
    lane.browser.stop();
  }

  private requery(): void {
    for (const lane of this.lanes) lane.browser?.update();
  }

  private checkUp(): void {
    for (const lane of this.lanes) {
      if (!lane.up) {
        this.warn(
          `mDNS: our announcement "${this.instanceName}" did not come up on ${lane.label} within ${this.opts.upTimeoutMs ?? 2500} ms: ` +
            `another device already announces that instance name (an agent with the same id ${this.opts.id}: a copied data folder?). ` +
            `Other agents will not discover this one. Give each machine its own data folder, or a unique name.`,
        );
      } else if (!lane.heardSelf) {
        this.warn(
          `mDNS: we never heard our own announcement back on ${lane.label}: multicast does not leave this interface ` +
            `(no multicast route - on Linux: ip route add 224.0.0.0/4 dev <if> - or a firewall blocking UDP 5353). Other agents will not discover this one.`,
        );
      }
    }
  }

  private onResponse(laneIndex: number, lane: Lane, packet: MdnsPacket, rinfo: RemoteInfo): void {
    if (this.state !== 'running' || laneIndex < 0) return;
    const records = [...(packet.answers ?? []), ...(packet.additionals ?? [])];
    const handled = new Set<string>();
    for (const ptr of records) {
      if (ptr.type !== 'PTR' || !sameName(ptr.name, SERVICE_DOMAIN) || typeof ptr.data !== 'string') continue;
      const instance = instanceOf(ptr.data);
      if (instance === null || handled.has(instance)) continue;
      handled.add(instance);
      if (instance === this.instanceName && (ptr.ttl ?? 0) === 0) continue; // our own goodbye
      if ((ptr.ttl ?? 0) === 0) {
        this.onGoodbye(instance);
        continue;
      }
      this.alive(instance);
      const srv = records.find((r) => r.type === 'SRV' && sameName(r.name, ptr.data as string) && (r.ttl ?? 0) > 0);
      const txt = records.find((r) => r.type === 'TXT' && sameName(r.name, ptr.data as string));
      if (srv === undefined || txt === undefined) {
        if (this.known.has(instance)) this.emit('seen', instance);
        continue;
      }
      this.onService(laneIndex, lane, instance, srv, txt, records, rinfo);
    }
    // Answers without the PTR (e.g. to a probe's ANY query) still prove a known peer alive.
    for (const r of records) {
      if (r.type !== 'SRV' || (r.ttl ?? 0) === 0) continue;
      const instance = instanceOf(r.name);
      if (instance !== null && !handled.has(instance) && this.known.has(instance)) {
        handled.add(instance);
        this.alive(instance);
        this.emit('seen', instance);
      }
    }
  }

  private onService(
    laneIndex: number,
    lane: Lane,
    instance: string,
    srv: ResourceRecord,
    txtRecord: ResourceRecord,
    records: ResourceRecord[],
    rinfo: RemoteInfo,
  ): void {
    const txt = decodeTxt(txtRecord.data);
    if (txt.id === this.opts.id) {
      lane.heardSelf = true;
      return;
    }
    const srvData = srv.data as { port?: unknown; target?: unknown } | undefined;
    const port = typeof srvData?.port === 'number' ? srvData.port : 0;
    if (txt.id === null || port <= 0) {
      this.warnOnce(`noid:${instance}`, `mDNS: ignoring "${instance}" at ${rinfo.address}: no agent id or port in its announcement (not a tdxfer agent?)`);
      return;
    }
    const target = typeof srvData?.target === 'string' ? srvData.target : '';
    const announced = records
      .filter((r) => (r.type === 'A' || r.type === 'AAAA') && sameName(r.name, target) && typeof r.data === 'string')
      .map((r) => r.data as string);

    const prev = this.known.get(instance);
    const byLane = prev?.byLane ?? new Map<number, string[]>();
    byLane.set(laneIndex, [rinfo.address, ...announced]);
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

    if (ann.name === this.opts.name) {
      this.warnOnce(
        `dup:${ann.id}`,
        `mDNS: another agent uses our name "${this.opts.name}": "${instance}" (id ${ann.id}) at ${ann.addresses.join(', ')}:${port}, ` +
          `and we are "${this.instanceName}" (id ${this.opts.id}). Files routed to "${this.opts.name}" go to both; ` +
          `give each agent a unique "name" (or route to "${this.opts.name}#<id>").`,
      );
    }
    if (changed) this.emit('announce', ann);
    else this.emit('seen', instance);
  }

  private onGoodbye(instance: string): void {
    if (!this.known.has(instance) || this.pendingGoodbyes.has(instance)) return;
    const timer = setTimeout(() => {
      this.pendingGoodbyes.delete(instance);
      if (this.state === 'running' && this.known.delete(instance)) this.emit('goodbye', instance);
    }, this.opts.goodbyeConfirmMs ?? 400);
    timer.unref();
    this.pendingGoodbyes.set(instance, timer);
    this.requery();
  }

  /** Any answer for an instance cancels a pending goodbye: someone still owns the name. */
  private alive(instance: string): void {
    const timer = this.pendingGoodbyes.get(instance);
    if (timer === undefined) return;
    clearTimeout(timer);
    this.pendingGoodbyes.delete(instance);
    this.log.debug('mDNS goodbye contradicted by a later answer (name conflict elsewhere?)', { instance });
  }

  private warnOnce(key: string, msg: string): void {
    if (this.warned.has(key)) return;
    this.warned.add(key);
    this.warn(msg);
  }

  private warn(msg: string): void {
    this.log.warn(msg);
    if (this.listenerCount('warning') > 0) this.emit('warning', msg);
  }
}
