/**
 * Private network namespaces for tests that need a real LAN (mDNS, several agents),
 * modelled on /work/shared/netns/mdns-example.sh (bridge mode):
 *
 *   <prefix>-sw   : bridge br0 (multicast snooping off), veth ends p-0, p-1, …
 *   <prefix>-h<i> : veth "tdx0" with 10.<x>.<y>.<i+1>/24, lo up, route 224.0.0.0/4 dev tdx0
 *
 * Nothing is created in the host namespace and no namespace has a default route, so no
 * packet can leave the machine. Every process started through exec() is tracked by PID
 * and killed by destroy(), which also deletes the namespaces; the same cleanup runs on
 * process exit, SIGINT and SIGTERM. Linux + root only: check canUseNetns() first.
 */
import { spawn, execFileSync, spawnSync, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { createInterface } from 'node:readline';

export interface NetnsHost {
  ns: string;
  ip: string;
  ifname: 'tdx0';
}

export interface LeakCheck {
  /** Stops the capture: the number of mDNS packets seen on the host's default-route NIC. */
  stop(): Promise<number>;
  /** Why the check does not run (no default route, no tcpdump), or null when it does. */
  skipped: string | null;
}

export interface Netns {
  prefix: string;
  switchNs: string;
  /** e.g. "10.213.57" (the /24 every host lives in). */
  subnet: string;
  hosts: NetnsHost[];
  /** `ip netns exec <ns> cmd ...args` (ip execs the command: the PID is the command's). */
  exec(nsIndex: number, cmd: string, args: readonly string[], opts?: SpawnOptions): ChildProcess;
  /** Runs a command inside a namespace to completion (setup, ping…). */
  run(nsIndex: number, cmd: string, args: readonly string[], timeoutMs?: number): { code: number | null; stdout: string; stderr: string };
  /** Pull / plug the host's cable (the switch-side veth end goes down / up). */
  setLink(nsIndex: number, up: boolean): void;
  /** Gives the host a new address (default: next unused in the subnet); returns it. */
  setAddress(nsIndex: number, newIp?: string): string;
  startHostLeakCheck(): Promise<LeakCheck>;
  destroy(): Promise<void>;
}

export function canUseNetns(): { ok: boolean; reason?: string } {
  if (process.platform !== 'linux') return { ok: false, reason: `network namespaces need Linux (this is ${process.platform})` };
  if (typeof process.getuid === 'function' && process.getuid() !== 0) {
    return { ok: false, reason: 'network namespace tests need root (ip netns add); run the tests as root to include them' };
  }
  const r = spawnSync('ip', ['netns', 'list'], { encoding: 'utf8' });
  if (r.error || r.status !== 0) {
    return { ok: false, reason: `"ip netns" is not usable (${r.error?.message ?? r.stderr.trim()}); install iproute2 (scripts/test-deps.sh)` };
  }
  return { ok: true };
}

function ip(args: readonly string[]): string {
  try {
    return execFileSync('ip', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (err) {
    const stderr = (err as { stderr?: string }).stderr ?? '';
    throw new Error(`ip ${args.join(' ')} failed: ${stderr.trim() || String(err)}`, { cause: err });
  }
}

// --- process-wide registry so exit/signals clean up every live harness ---------------
const live = new Set<{ cleanupSync(): void }>();
let hooksInstalled = false;
let counter = 0;

function installHooks(): void {
  if (hooksInstalled) return;
  hooksInstalled = true;
  process.on('exit', () => {
    for (const h of [...live]) h.cleanupSync();
  });
  for (const sig of ['SIGINT', 'SIGTERM'] as const) {
    process.once(sig, () => {
      for (const h of [...live]) h.cleanupSync();
      process.exit(130);
    });
  }
}

function exited(child: ChildProcess): boolean {
  return child.exitCode !== null || child.signalCode !== null;
}

function waitExit(child: ChildProcess, ms: number): Promise<boolean> {
  if (exited(child)) return Promise.resolve(true);
  return new Promise((resolve) => {
    const t = setTimeout(() => resolve(false), ms);
    child.once('exit', () => {
      clearTimeout(t);
      resolve(true);
    });
  });
}

export function createNetns(opts: { prefix?: string; hosts: number }): Netns {
  const check = canUseNetns();
  if (!check.ok) throw new Error(`createNetns: ${check.reason}`);
  if (opts.hosts < 1 || opts.hosts > 200) throw new Error(`createNetns: hosts must be 1..200, got ${opts.hosts}`);
  installHooks();

  counter += 1;
  const prefix = opts.prefix ?? `tdxt${process.pid}${counter > 1 ? `x${counter}` : ''}`;
  // 10.200-249.x: rarely used by real networks; irrelevant for routing anyway (isolated).
  const seed = process.pid * 31 + counter;
  const subnet = `10.${200 + (seed % 50)}.${(seed >> 3) % 256}`;
  const switchNs = `${prefix}-sw`;
  const namespaces: string[] = [];
  const children = new Set<ChildProcess>();
  const hosts: NetnsHost[] = [];
  let nextSpare = 100;
  let destroyed = false;

  const cleanupSync = (): void => {
    if (destroyed) return;
    destroyed = true;
    live.delete(handle);
    for (const c of children) if (!exited(c) && c.pid !== undefined) safeKill(c.pid, 'SIGKILL');
    for (const ns of namespaces) spawnSync('ip', ['netns', 'del', ns], { stdio: 'ignore' });
  };
  const handle = { cleanupSync };
  live.add(handle);

  const mkns = (name: string): void => {
    ip(['netns', 'add', name]);
    namespaces.push(name);
    ip(['-n', name, 'link', 'set', 'lo', 'up']);
  };

  try {
    mkns(switchNs);
    ip(['-n', switchNs, 'link', 'add', 'br0', 'type', 'bridge', 'mcast_snooping', '0']);
    ip(['-n', switchNs, 'link', 'set', 'br0', 'up']);
    for (let i = 0; i < opts.hosts; i++) {
      const ns = `${prefix}-h${i}`;
      mkns(ns);
      // veth created inside the switch namespace, its peer moved straight into the host ns.
      ip(['-n', switchNs, 'link', 'add', `p-${i}`, 'type', 'veth', 'peer', 'name', 'tdx0', 'netns', ns]);
      ip(['-n', switchNs, 'link', 'set', `p-${i}`, 'master', 'br0', 'up']);
      const addr = `${subnet}.${i + 1}`;
      ip(['-n', ns, 'addr', 'add', `${addr}/24`, 'dev', 'tdx0']);
      ip(['-n', ns, 'link', 'set', 'tdx0', 'multicast', 'on', 'up']);
      // Without it multicast-dns's sends fail with ENETUNREACH and bonjour-service swallows it.
      ip(['-n', ns, 'route', 'add', '224.0.0.0/4', 'dev', 'tdx0']);
      if (ip(['-n', ns, 'route', 'show', 'default']).trim() !== '') throw new Error(`unexpected default route in ${ns}`);
      hosts.push({ ns, ip: addr, ifname: 'tdx0' });
    }
  } catch (err) {
    cleanupSync();
    throw err;
  }

  const host = (i: number): NetnsHost => {
    const h = hosts[i];
    if (h === undefined) throw new Error(`no namespace host #${i} (have ${hosts.length})`);
    return h;
  };

  const netns: Netns = {
    prefix,
    switchNs,
    subnet,
    hosts,
    exec(i, cmd, args, spawnOpts = {}) {
      if (destroyed) throw new Error('netns harness already destroyed');
      const child = spawn('ip', ['netns', 'exec', host(i).ns, cmd, ...args], spawnOpts);
      children.add(child);
      child.once('exit', () => children.delete(child));
      return child;
    },
    run(i, cmd, args, timeoutMs = 10_000) {
      const r = spawnSync('ip', ['netns', 'exec', host(i).ns, cmd, ...args], { encoding: 'utf8', timeout: timeoutMs });
      return { code: r.status, stdout: r.stdout ?? '', stderr: r.stderr ?? '' };
    },
    setLink(i, up) {
      host(i);
      ip(['-n', switchNs, 'link', 'set', `p-${i}`, up ? 'up' : 'down']);
    },
    setAddress(i, newIp) {
      const h = host(i);
      const addr = newIp ?? `${subnet}.${nextSpare++}`;
      ip(['-n', h.ns, 'addr', 'flush', 'dev', 'tdx0']);
      ip(['-n', h.ns, 'addr', 'add', `${addr}/24`, 'dev', 'tdx0']);
      // The multicast route is not tied to an address, but re-add it if the flush took it.
      if (!ip(['-n', h.ns, 'route', 'show', '224.0.0.0/4']).includes('tdx0')) ip(['-n', h.ns, 'route', 'add', '224.0.0.0/4', 'dev', 'tdx0']);
      h.ip = addr;
      return addr;
    },
    async startHostLeakCheck() {
      const none = (why: string): LeakCheck => {
        console.warn(`host leak check skipped: ${why}`);
        return { skipped: why, stop: async () => 0 };
      };
      let dev: string | undefined;
      try {
        const routes = JSON.parse(ip(['-j', 'route', 'show', 'default'])) as Array<{ dev?: string }>;
        dev = routes[0]?.dev;
      } catch {
        dev = undefined;
      }
      if (dev === undefined) return none('the host has no default route');
      const which = spawnSync('tcpdump', ['--version'], { stdio: 'ignore' });
      if (which.error) return none('tcpdump is not installed (scripts/test-deps.sh)');
      // Passive capture in the host namespace: it listens, never sends.
      let lines = 0;
      let cap: MdnsCapture;
      try {
        cap = await captureMdns({ ns: null, dev, startMs: 5000, onLine: (l) => (lines += l.trim() === '' ? 0 : 1) });
      } catch (err) {
        return none((err as Error).message);
      }
      children.add(cap.child);
      cap.child.once('exit', () => children.delete(cap.child));
      return {
        skipped: null,
        async stop() {
          await new Promise((r) => setTimeout(r, 300)); // let in-flight packets be printed
          await cap.stop();
          return lines;
        },
      };
    },
    async destroy() {
      if (destroyed) return;
      const running = [...children].filter((c) => !exited(c));
      for (const c of running) if (c.pid !== undefined) safeKill(c.pid, 'SIGTERM');
      const stopped = await Promise.all(running.map((c) => waitExit(c, 1500)));
      running.forEach((c, k) => {
        if (!stopped[k] && c.pid !== undefined) safeKill(c.pid, 'SIGKILL');
      });
      await Promise.all(running.map((c) => waitExit(c, 1500)));
      cleanupSync();
    },
  };
  return netns;
}

export interface MdnsCapture {
  readonly child: ChildProcess;
  /** Stops tcpdump: SIGINT (it prints its last lines), SIGKILL if it has not exited after 3 s. */
  stop(): Promise<void>;
}

/**
 * The one mDNS capture of the tests and benchmarks: a passive tcpdump of UDP 5353 on
 * `dev`, inside namespace `ns`, or in the host namespace when `ns` is null (only the
 * host leak check does that: it listens and never sends). Always -p (not promiscuous),
 * -n (no name lookups), -l (line-buffered); `flags` adds more (-tt epoch timestamps, -q
 * short lines). Every output line goes to `onLine`. Resolves once tcpdump listens; throws
 * with its stderr when it exits first or stays silent for `startMs` (default 10 s).
 */
export async function captureMdns(o: { ns: string | null; dev: string; flags?: readonly string[]; onLine: (line: string) => void; startMs?: number }): Promise<MdnsCapture> {
  const tcpdump = ['tcpdump', '-p', '-n', '-l', ...(o.flags ?? []), '-i', o.dev, 'udp', 'port', '5353'];
  const [cmd, ...args] = o.ns === null ? tcpdump : ['ip', 'netns', 'exec', o.ns, ...tcpdump];
  const child = spawn(cmd!, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  createInterface({ input: child.stdout! }).on('line', o.onLine);
  const stop = async (): Promise<void> => {
    if (!exited(child) && child.pid !== undefined) safeKill(child.pid, 'SIGINT');
    if (!(await waitExit(child, 3000)) && child.pid !== undefined) safeKill(child.pid, 'SIGKILL');
  };
  let stderr = '';
  const listening = await new Promise<boolean>((resolve) => {
    const t = setTimeout(() => resolve(false), o.startMs ?? 10_000);
    child.once('error', (err) => {
      stderr += err.message;
      clearTimeout(t);
      resolve(false);
    });
    child.stderr!.setEncoding('utf8').on('data', (d: string) => {
      stderr += d;
      if (stderr.includes('listening on')) {
        clearTimeout(t);
        resolve(true);
      }
    });
    child.once('exit', () => {
      clearTimeout(t);
      resolve(false);
    });
  });
  if (!listening) {
    if (!exited(child) && child.pid !== undefined) safeKill(child.pid, 'SIGKILL');
    throw new Error(`tcpdump did not start on ${o.dev}${o.ns === null ? '' : ` in ${o.ns}`}: ${stderr.trim() || 'no output'}`);
  }
  return { child, stop };
}

function safeKill(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(pid, sig);
  } catch {
    // already gone
  }
}
