/**
 * mDNS traffic on a private bridge (issue #19, item 3): counts every UDP 5353 packet that
 * crosses the bridge of a test namespace set (test/helpers/netns.ts) for a while, with a
 * passive tcpdump on the bridge device inside the switch namespace (never in the host
 * namespace). A benchmark: it measures, it asserts nothing.
 *
 *   measureMdnsTraffic(net, { seconds: 60 })  -> packets, bytes, per second, worst second
 *
 * Run alone (as root) it builds N namespaces, starts N discovery-only agents (the compiled
 * test fixture, test/discovery/fixtures/discovery-agent.ts), waits until each sees all the
 * others, lets start-up settle and measures the segment at rest:
 *
 *   node dist/test/bench/mdns-traffic.js --agents 20 --seconds 60 [--settle 40]
 */
import path from 'node:path';
import { existsSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { captureMdns, type Netns } from '../helpers/netns.js';

export interface MdnsTrafficResult {
  seconds: number;
  packets: number;
  bytes: number;
  /** packets / seconds. */
  perSecond: number;
  /** The most packets seen in any one-second bucket: a synchronised burst shows here. */
  maxInOneSecond: number;
  /** Packets per sending address. */
  bySource: Record<string, number>;
  /** Queries and responses (from the DNS header flags as tcpdump prints them). */
  queries: number;
  responses: number;
}

export interface MeasureOptions {
  /** How long to count (default 60). */
  seconds?: number;
  /** Bridge device in the switch namespace (default br0, as test/helpers/netns.ts makes it). */
  bridge?: string;
}

/**
 * Counts UDP 5353 packets on the bridge of `net` for `seconds`. Every multicast frame
 * crosses the bridge device once (snooping is off: it floods), so each packet counts once
 * whatever the number of listeners.
 */
export async function measureMdnsTraffic(net: Netns, opts: MeasureOptions = {}): Promise<MdnsTrafficResult> {
  const seconds = opts.seconds ?? 60;
  const bridge = opts.bridge ?? 'br0';
  const res: MdnsTrafficResult = { seconds, packets: 0, bytes: 0, perSecond: 0, maxInOneSecond: 0, bySource: {}, queries: 0, responses: 0 };
  const buckets = new Map<number, number>();
  let counting = false;
  const onLine = (line: string): void => {
    if (!counting) return;
    if (process.env.TDX_MDNS_TRACE === '1') console.log(line);
    // 1733520000.123456 IP 10.1.2.3.5353 > 224.0.0.251.5353: 0 PTR (QM)? _tdxfer._tcp.local. (45)
    const m = /^(\d+)\.\d+ IP (\d+\.\d+\.\d+\.\d+)\.\d+ > [^:]+: (.*?)(?:\((\d+)\))?\s*$/.exec(line);
    if (!m) return;
    res.packets++;
    res.bytes += Number(m[4] ?? 0);
    const sec = Number(m[1]);
    buckets.set(sec, (buckets.get(sec) ?? 0) + 1);
    res.bySource[m[2]!] = (res.bySource[m[2]!] ?? 0) + 1;
    // tcpdump prints a question as "PTR (QM)? name"; a response has none.
    if (/\(Q[MU]\)\?/.test(m[3]!)) res.queries++;
    else res.responses++;
  };
  // -tt: epoch timestamps (one-second buckets); -p: not promiscuous (the bridge floods to itself).
  let cap;
  try {
    cap = await captureMdns({ ns: net.switchNs, dev: bridge, flags: ['-tt'], onLine });
  } catch (err) {
    throw new Error(`measureMdnsTraffic: ${(err as Error).message} (install tcpdump)`, { cause: err });
  }
  counting = true;
  await new Promise((r) => setTimeout(r, seconds * 1000));
  counting = false;
  await cap.stop();
  res.perSecond = res.packets / seconds;
  res.maxInOneSecond = Math.max(0, ...buckets.values());
  return res;
}

// --- standalone run -----------------------------------------------------------------------

interface FixtureLine {
  ev: string;
  peer?: { id: string | null; state: string };
  msg?: string;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      agents: { type: 'string', default: '10' },
      seconds: { type: 'string', default: '60' },
      settle: { type: 'string', default: '40' },
    },
  });
  const n = Number(values.agents);
  const seconds = Number(values.seconds);
  const settle = Number(values.settle);
  const { createNetns, canUseNetns } = await import('../helpers/netns.js');
  const can = canUseNetns();
  if (!can.ok) throw new Error(can.reason);
  const here = path.dirname(fileURLToPath(import.meta.url));
  const fixture = path.join(here, '../discovery/fixtures/discovery-agent.js');
  if (!existsSync(fixture)) throw new Error(`${fixture} missing: run "npx tsc -p tsconfig.json" and start the compiled script (dist/test/bench/mdns-traffic.js)`);
  const net = createNetns({ hosts: n });
  try {
    const ids = Array.from({ length: n }, (_, i) => `${(0x1000 + i).toString(16)}beef${String(i).padStart(4, '0')}`);
    const views = ids.map(() => new Map<string, string>());
    let meshed = false;
    let lastReady = 0;
    const flaps: string[] = [];
    const t0 = Date.now();
    ids.forEach((id, i) => {
      const child = net.exec(i, process.execPath, [fixture, JSON.stringify({ id, name: `agent-${i}`, port: 7000 + i, inboxes: ['media'] })], {
        stdio: ['ignore', 'pipe', 'inherit'],
      });
      createInterface({ input: child.stdout! }).on('line', (l) => {
        try {
          const line = JSON.parse(l) as FixtureLine;
          if (line.ev === 'change' && line.peer?.id) {
            views[i]!.set(line.peer.id, line.peer.state);
            if (meshed && line.peer.state !== 'up') flaps.push(`${new Date().toISOString()} agent-${i} saw ${line.peer.id} ${line.peer.state}`);
          }
          if (line.ev === 'fatal') console.error(`agent-${i}: ${line.msg}`);
          if (line.ev === 'ready') lastReady = Date.now() - t0;
        } catch {
          // not ours
        }
      });
    });
    const mesh = (): boolean => views.every((v, i) => ids.every((id, j) => j === i || v.get(id) === 'up'));
    while (!mesh()) {
      if (Date.now() - t0 > 120_000) throw new Error('no full mesh within 120 s');
      await new Promise((r) => setTimeout(r, 100));
    }
    meshed = true;
    console.log(`${n} agents: full mesh ${((Date.now() - t0) / 1000).toFixed(1)} s after spawn (the last one ready after ${(lastReady / 1000).toFixed(1)} s); settling ${settle} s, then counting ${seconds} s`);
    await new Promise((r) => setTimeout(r, settle * 1000));
    const r = await measureMdnsTraffic(net, { seconds });
    const down = views.flatMap((v, i) => ids.filter((id, j) => j !== i && v.get(id) !== 'up').map((id) => `agent-${i} sees ${id} ${v.get(id)}`));
    console.log(
      `mDNS at rest, ${n} agents, ${seconds} s: ${r.packets} packets (${r.queries} queries, ${r.responses} responses), ` +
        `${r.perSecond.toFixed(2)}/s = ${(r.perSecond / n).toFixed(3)}/s per agent, ${(r.bytes / seconds / 1024).toFixed(2)} KiB/s, ` +
        `worst second ${r.maxInOneSecond} packets; goal <= ${(0.5 * n).toFixed(1)}/s: ${r.perSecond <= 0.5 * n ? 'met' : 'MISSED'}`,
    );
    console.log(down.length === 0 ? 'every agent still sees every other up' : `NOT up at the end: ${down.join('; ')}`);
    console.log(flaps.length === 0 ? 'no peer left "up" after the full mesh' : `${flaps.length} times a peer left "up" after the full mesh:\n  ${flaps.slice(0, 20).join('\n  ')}`);
  } finally {
    await net.destroy();
  }
}

if (process.argv[1] !== undefined && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main().catch((err: unknown) => {
    console.error(err instanceof Error ? err.message : err);
    process.exit(1);
  });
}
