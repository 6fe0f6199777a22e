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
 *
 * Layout: naming is mdns-names.ts and reading responses is PeerBook (mdns-packet.ts),
 * both pure; this file keeps the sockets (one Bonjour per lane) and the timers
 * (re-query, up check, goodbye confirmation) and executes PeerBook's actions.
 */
import { EventEmitter } from 'node:events';
import { Bonjour, type Browser, type Service, type ServiceConfig } from 'bonjour-service';
import { TdxError, describeError } from '../errors.js';
import type { Logger } from '../log.js';
import type { Announcement } from './table.js';
import { SERVICE_TYPE, hostNameFor, instanceNameFor, resolveInterfaces } from './mdns-names.js';
import { PeerBook, type MdnsPacket } from './mdns-packet.js';

export { instanceNameFor, hostNameFor, resolveInterfaces } from './mdns-names.js';

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
  private readonly book: PeerBook;
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
    this.book = new PeerBook({ id: opts.id, name: opts.name, instanceName: this.instanceName });
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

  /** Executes what PeerBook (mdns-packet.ts) read from one response. */
  private onResponse(laneIndex: number, lane: Lane, packet: MdnsPacket, rinfo: RemoteInfo): void {
    if (this.state !== 'running' || laneIndex < 0) return;
    for (const act of this.book.interpret(laneIndex, packet, rinfo.address)) {
      switch (act.kind) {
        case 'goodbye':
          this.onGoodbye(act.instance);
          break;
        case 'alive':
          this.alive(act.instance);
          break;
        case 'seen':
          this.emit('seen', act.instance);
          break;
        case 'announce':
          this.emit('announce', act.ann);
          break;
        case 'heardSelf':
          lane.heardSelf = true;
          break;
        case 'warn':
          this.warnOnce(act.key, act.msg);
          break;
      }
    }
  }

  private onGoodbye(instance: string): void {
    if (!this.book.has(instance) || this.pendingGoodbyes.has(instance)) return;
    const timer = setTimeout(() => {
      this.pendingGoodbyes.delete(instance);
      if (this.state === 'running' && this.book.forget(instance)) this.emit('goodbye', instance);
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
