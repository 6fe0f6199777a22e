/**
 * Real multicast DNS between separate processes, each in its own network namespace on
 * a private bridge (test/helpers/netns.ts). Never runs mDNS in the host namespace;
 * skipped (with the reason) when not root.
 */
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { canUseNetns, createNetns, type Netns, type LeakCheck } from '../helpers/netns.js';
import { MIN_DEADLINE_MS, quietWindow } from '../helpers/wait.js';
import type { PeerInfo } from '../../src/types.js';

const self = fileURLToPath(import.meta.url);
const here = path.dirname(self);
/** Runs from test/ (tsx) and from dist/test/ (compiled, scripts/test.sh): find the repo root. */
function repoRoot(dir: string): string {
  for (let d = dir; ; d = path.dirname(d)) {
    if (existsSync(path.join(d, 'package.json')) && existsSync(path.join(d, 'test/python'))) return d;
    if (path.dirname(d) === d) throw new Error(`no repo root (package.json + test/python) above ${dir}`);
  }
}
const repo = repoRoot(here);
const compiled = path.extname(self) === '.js';
const fixture = path.join(here, `fixtures/discovery-agent${compiled ? '.js' : '.ts'}`);
const nodeArgs = compiled ? [fixture] : ['--import', 'tsx', fixture];
const zcBrowse = path.join(repo, 'test/python/zc_browse.py');

interface Line {
  t: number;
  ev: string;
  peer?: PeerInfo;
  msg?: string;
  instance?: string;
}

/** One fixture process; collects its JSON lines and lets tests wait for conditions on them. */
class AgentProc {
  readonly lines: Line[] = [];
  readonly stderr: string[] = [];
  private readonly waiters = new Set<() => void>();
  readonly child: ChildProcess;

  constructor(
    net: Netns,
    readonly nsIndex: number,
    readonly opts: { id: string; name: string; port: number; inboxes: string[] },
  ) {
    this.child = net.exec(nsIndex, process.execPath, [...nodeArgs, JSON.stringify(opts)], {
      cwd: repo,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    createInterface({ input: this.child.stdout! }).on('line', (l) => {
      try {
        this.lines.push(JSON.parse(l) as Line);
      } catch {
        this.stderr.push(`stdout: ${l}`);
      }
      for (const w of [...this.waiters]) w();
    });
    createInterface({ input: this.child.stderr! }).on('line', (l) => this.stderr.push(l));
    this.child.once('exit', () => {
      for (const w of [...this.waiters]) w();
    });
  }

  /** Latest view this agent has of the peer with `id` (from its PeerTable change events). */
  peer(id: string): PeerInfo | undefined {
    for (let i = this.lines.length - 1; i >= 0; i--) {
      const l = this.lines[i]!;
      if (l.ev === 'change' && l.peer?.id === id) return l.peer;
    }
    return undefined;
  }

  waitFor<T>(what: string, probe: () => T | undefined | false, deadlineMs: number): Promise<T> {
    const timeoutMs = Math.max(deadlineMs, MIN_DEADLINE_MS); // a hang detector, not a speed (test/helpers/wait.ts)
    return new Promise((resolve, reject) => {
      const check = (): boolean => {
        const v = probe();
        if (v === undefined || v === false) return false;
        cleanup();
        resolve(v);
        return true;
      };
      const timer = setTimeout(() => {
        cleanup();
        reject(new Error(`${this.opts.name}@ns${this.nsIndex}: timed out after ${timeoutMs} ms waiting for ${what}\nlines: ${JSON.stringify(this.lines.slice(-8))}\nstderr: ${this.stderr.slice(-8).join('\n')}`));
      }, timeoutMs);
      const cleanup = (): void => {
        clearTimeout(timer);
        this.waiters.delete(w);
      };
      const w = (): void => void check();
      if (check()) return;
      this.waiters.add(w);
    });
  }

  ready(timeoutMs = 10_000): Promise<Line> {
    return this.waitFor('ready', () => this.lines.find((l) => l.ev === 'ready' || l.ev === 'fatal'), timeoutMs).then((l) => {
      if (l.ev === 'fatal') throw new Error(`fixture failed: ${l.msg}`);
      return l;
    });
  }

  peerIs(id: string, pred: (p: PeerInfo) => boolean, what: string, timeoutMs: number): Promise<PeerInfo> {
    return this.waitFor(what, () => {
      const p = this.peer(id);
      return p !== undefined && pred(p) ? p : undefined;
    }, timeoutMs);
  }

  exitCode(timeoutMs = MIN_DEADLINE_MS): Promise<number | null> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return Promise.resolve(this.child.exitCode);
    return new Promise((resolve) => {
      const t = setTimeout(() => resolve(null), timeoutMs);
      this.child.once('exit', (code) => {
        clearTimeout(t);
        resolve(code);
      });
    });
  }
}

interface ZcService { name: string; port: number; addresses: string[]; txt: Record<string, string> }

/** python3-zeroconf browsing for `seconds` from namespace `idx`: the services it found, one JSON line each. */
async function zeroconfBrowse(net: Netns, idx: number, seconds: string): Promise<{ found: ZcService[]; stdout: string; stderr: string }> {
  const zc = net.exec(idx, '/usr/bin/python3', [zcBrowse, seconds], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  zc.stdout!.setEncoding('utf8').on('data', (d: string) => (stdout += d));
  zc.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  const code = await new Promise<number | null>((resolve) => zc.once('exit', resolve));
  assert.equal(code, 0, stderr);
  const found = stdout
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((l) => JSON.parse(l) as ZcService);
  return { found, stdout, stderr };
}

const can = canUseNetns();
const zeroconf = spawnSync('/usr/bin/python3', ['-c', 'import zeroconf'], { stdio: 'ignore' });

describe('mDNS discovery between agents in network namespaces', { skip: can.ok ? false : can.reason, timeout: 600_000 }, () => {
  let net: Netns;
  let leak: LeakCheck;
  const A = { id: 'aaaa01234567', name: 'agent-a', port: 7001, inboxes: ['media', 'cues,live'] };
  const B = { id: 'bbbb01234567', name: 'agent-b', port: 7002, inboxes: ['media'] };
  const C = { id: 'cccc01234567', name: 'agent-c', port: 7003, inboxes: ['stills'] };
  let a: AgentProc;
  let b: AgentProc;
  let c: AgentProc;

  before(async () => {
    net = createNetns({ hosts: 4 });
    leak = await net.startHostLeakCheck();
  });
  after(async () => {
    await net?.destroy();
  });

  test('three agents discover each other within 3 s, with TXT, port and address intact', async () => {
    a = new AgentProc(net, 0, A);
    b = new AgentProc(net, 1, B);
    c = new AgentProc(net, 2, C);
    await Promise.all([a.ready(), b.ready(), c.ready()]);
    const agents = [
      [a, A, 0],
      [b, B, 1],
      [c, C, 2],
    ] as const;
    const views: Array<Promise<PeerInfo>> = [];
    for (const [viewer, self] of agents) {
      for (const [, other, idx] of agents) {
        if (other === self) continue;
        views.push(
          viewer.peerIs(other.id, (p) => p.state === 'up', `${other.name} up`, 3000).then((p) => {
            assert.equal(p.name, other.name);
            assert.equal(p.source, 'discovered');
            assert.equal(p.port, other.port);
            assert.deepEqual(p.inboxes, other.inboxes);
            assert.equal(p.version, '0.0.0-test');
            assert.deepEqual(p.addresses, [net.hosts[idx]!.ip]);
            return p;
          }),
        );
      }
    }
    await Promise.all(views);
    for (const [viewer, self] of agents) {
      assert.equal(viewer.peer(self.id), undefined, `${self.name} must not list itself as discovered`);
      assert.deepEqual(viewer.lines.filter((l) => l.ev === 'warning'), [], `${self.name}: no warnings expected`);
    }
  });

  test('python3-zeroconf (another mDNS stack) finds our services with port and TXT', { skip: zeroconf.status === 0 ? false : 'python3-zeroconf not installed (scripts/test-deps.sh)' }, async () => {
    const { found, stdout, stderr } = await zeroconfBrowse(net, 3, '2.5');
    for (const [agent, idx] of [[A, 0], [B, 1], [C, 2]] as const) {
      const s = found.find((f) => f.txt.id === agent.id);
      assert.ok(s, `zeroconf did not find ${agent.name}; got ${stdout} ${stderr}`);
      assert.equal(s.name, `${agent.name} (${agent.id.slice(0, 6)})._tdxfer._tcp.local.`);
      assert.equal(s.port, agent.port);
      assert.deepEqual(s.addresses, [net.hosts[idx]!.ip]);
      assert.equal(s.txt.name, agent.name);
      assert.equal(s.txt.ver, '0.0.0-test');
      assert.equal(s.txt.proto, '1');
      assert.equal(s.txt.fp, 'fp-test');
    }
    assert.equal(found.find((f) => f.txt.id === A.id)?.txt.inb, 'media,cues%2Clive');
  });

  test('kill -9 of an agent: the others mark it gone by the liveness timeout; restarted at a new address it is up again', async () => {
    c.child.kill('SIGKILL');
    await c.exitCode();
    const [ga, gb] = await Promise.all([
      a.peerIs(C.id, (p) => p.state === 'gone', 'agent-c gone', 13_000),
      b.peerIs(C.id, (p) => p.state === 'gone', 'agent-c gone', 13_000),
    ]);
    // By the liveness timeout, not a goodbye (a killed agent sends none); how soon is not
    // asserted: timers run late on a loaded machine.
    for (const [who, viewer, p] of [['agent-a', a, ga], ['agent-b', b, gb]] as const) {
      assert.equal(p.name, 'agent-c');
      assert.ok(!viewer.lines.some((l) => l.ev === 'goodbye' && String(l.instance).includes('cccc01')), `${who} got a goodbye from a killed agent`);
    }

    const newIp = net.setAddress(2);
    assert.notEqual(newIp, net.hosts[0]!.ip);
    c = new AgentProc(net, 2, C);
    await c.ready();
    const [ua, ub] = await Promise.all([
      a.peerIs(C.id, (p) => p.state === 'up', 'agent-c up again', 3000),
      b.peerIs(C.id, (p) => p.state === 'up', 'agent-c up again', 3000),
    ]);
    for (const p of [ua, ub]) {
      assert.deepEqual(p.addresses, [newIp]);
    }
    // and agent-c rediscovers the others from its new address
    await c.peerIs(A.id, (p) => p.state === 'up', 'agent-a up', 3000);
  });

  test('two agents with the same name both appear (distinct instances) and a warning names both', async () => {
    const D = { id: 'dddd01234567', name: 'agent-a', port: 7004, inboxes: ['media'] };
    const d = new AgentProc(net, 3, D);
    const ready = await d.ready();
    assert.equal(ready.instance, 'agent-a (dddd01)');
    const twins = await b.waitFor(
      'two agent-a',
      () => {
        const x = b.peer(A.id);
        const y = b.peer(D.id);
        return x?.state === 'up' && y?.state === 'up' ? [x, y] : undefined;
      },
      3000,
    );
    assert.deepEqual(twins.map((p) => p.name), ['agent-a', 'agent-a']);
    assert.deepEqual(twins.map((p) => p.port), [7001, 7004]);
    for (const [viewer, otherId] of [[a, D.id], [d, A.id]] as const) {
      const w = await viewer.waitFor('duplicate-name warning', () => viewer.lines.find((l) => l.ev === 'warning' && /another agent uses our name/.test(l.msg ?? '')), 3000);
      assert.match(w.msg!, new RegExp(`id ${otherId}`));
      assert.match(w.msg!, /agent-a \(aaaa01\)|agent-a \(dddd01\)/);
    }

    // A graceful stop sends a goodbye: the others drop it at once, not after the timeout.
    d.child.kill('SIGTERM');
    assert.equal(await d.exitCode(), 0);
    assert.ok(d.lines.some((l) => l.ev === 'stopped'));
    await Promise.all([
      a.peerIs(D.id, (p) => p.state === 'gone', 'twin gone', 2000),
      b.peerIs(D.id, (p) => p.state === 'gone', 'twin gone', 2000),
    ]);
    // Dropped by its goodbye (the mechanism), not by the liveness timeout: told by the event, not the clock.
    for (const viewer of [a, b]) assert.ok(viewer.lines.some((l) => l.ev === 'goodbye' && l.instance === 'agent-a (dddd01)'), 'the twin was dropped by its goodbye');
    assert.equal(b.peer(A.id)?.state, 'up', 'the goodbye of one twin must not drop the other');
    // agent-a and agent-b ran throughout (> 10 s): re-queries kept them alive in each other's view
    for (const [viewer, other] of [[a, B], [b, A]] as const) {
      assert.ok(!viewer.lines.some((l) => l.ev === 'change' && l.peer?.id === other.id && l.peer.state !== 'up'), `${other.name} flapped`);
    }
  });

  test('an agent with a copied id (same instance name) warns that it did not come up; the owner is not dropped', async () => {
    const E = { id: A.id, name: A.name, port: 7005, inboxes: ['media'] };
    const e = new AgentProc(net, 3, E);
    await e.ready();
    const w = await e.waitFor('conflict warning', () => e.lines.find((l) => l.ev === 'warning'), 4000);
    assert.match(w.msg!, /did not come up/);
    assert.match(w.msg!, new RegExp(`same id ${A.id}`));
    // bonjour-service sends a goodbye for the name it lost; the re-query must keep the owner up.
    // A stated window: a goodbye is confirmed or dropped after goodbyeConfirmMs (400 ms); 3 s
    // covers it several times over, and too short a window could only hide a flap, not fail.
    await quietWindow(3000);
    for (const viewer of [b, c]) {
      assert.equal(viewer.peer(A.id)?.state, 'up');
      assert.equal(viewer.peer(A.id)?.port, A.port, 'still the owner, not the impostor');
      assert.ok(!viewer.lines.some((l) => l.ev === 'change' && l.peer?.id === A.id && l.peer.state !== 'up'), 'agent-a flapped');
    }
    e.child.kill('SIGKILL');
    await e.exitCode();
  });

  test('a namespace without a multicast route: the agent warns that its announcements do not leave', async () => {
    const ns = net.hosts[3]!.ns;
    spawnSync('ip', ['-n', ns, 'route', 'del', '224.0.0.0/4', 'dev', 'tdx0']);
    try {
      const F = { id: 'ffff01234567', name: 'agent-f', port: 7006, inboxes: [] };
      const f = new AgentProc(net, 3, F);
      await f.ready();
      const w = await f.waitFor('no-loopback warning', () => f.lines.find((l) => l.ev === 'warning' && /never heard our own announcement/.test(l.msg!)), 4000);
      assert.match(w.msg!, /224\.0\.0\.0\/4/);
      // answering the others' queries fails too: reported once, with the same hint
      const sendErrors = f.lines.filter((l) => l.ev === 'warning' && /ENETUNREACH/.test(l.msg!));
      assert.ok(sendErrors.length <= 1, JSON.stringify(sendErrors));
      if (sendErrors.length === 1) assert.match(sendErrors[0]!.msg!, /224\.0\.0\.0\/4/);
      assert.equal(a.peer(F.id), undefined, 'nothing was sent');
      f.child.kill('SIGKILL');
      await f.exitCode();
    } finally {
      spawnSync('ip', ['-n', ns, 'route', 'add', '224.0.0.0/4', 'dev', 'tdx0']);
    }
  });

  test("no mDNS packet reached the host's default-route interface", async (t) => {
    const n = await leak.stop();
    if (leak.skipped !== null) t.diagnostic(`leak check skipped: ${leak.skipped}`);
    assert.equal(n, 0);
  });
});

/**
 * Issue #19, item 3: discovery stays quiet (short-TTL records refreshed with Known-Answers,
 * queries backing off; see src/discovery/mdns-schedule.ts) and still tells who is there.
 * Outcomes only: who sees whom, and by which mechanism a silent agent went; the packet
 * rate is a benchmark (test/bench/mdns-traffic.ts), never asserted here.
 */
describe('quiet discovery: five agents on one bridge', { skip: can.ok ? false : can.reason, timeout: 600_000 }, () => {
  let net: Netns;
  let leak: LeakCheck;
  const defs = Array.from({ length: 5 }, (_, i) => ({ id: `q${i}q${i}0123456789`.slice(0, 12), name: `quiet-${i}`, port: 7100 + i, inboxes: ['media'] }));
  const procs: AgentProc[] = [];
  const others = (i: number) => defs.filter((_, j) => j !== i);

  before(async () => {
    net = createNetns({ hosts: 6 }); // five agents, and a python3-zeroconf browser in the sixth
    leak = await net.startHostLeakCheck();
  });
  after(async () => {
    await net?.destroy();
  });

  test('every agent sees every other up', async () => {
    defs.forEach((d, i) => procs.push(new AgentProc(net, i, d)));
    await Promise.all(procs.map((p) => p.ready()));
    await Promise.all(
      procs.flatMap((viewer, i) =>
        others(i).map((o) =>
          viewer.peerIs(o.id, (p) => p.state === 'up', `${o.name} up`, 10_000).then((p) => {
            assert.deepEqual(p.addresses, [net.hosts[defs.indexOf(o)]!.ip]);
            assert.equal(p.port, o.port);
          }),
        ),
      ),
    );
    for (const p of procs) assert.deepEqual(p.lines.filter((l) => l.ev === 'warning'), [], `${p.opts.name}: no warnings expected`);
  });

  test('a killed idle agent expires at every other (no goodbye: its records ran out); restarted at a new address it is up again', async () => {
    const k = 4;
    const killed = defs[k]!;
    procs[k]!.child.kill('SIGKILL');
    await procs[k]!.exitCode();
    const viewers = procs.slice(0, k);
    await Promise.all(viewers.map((v) => v.peerIs(killed.id, (p) => p.state === 'gone', `${killed.name} gone`, 40_000)));
    for (const v of viewers) {
      assert.ok(v.lines.some((l) => l.ev === 'expired' && l.instance === `${killed.name} (${killed.id.slice(0, 6)})`), `${v.opts.name}: gone by expiry`);
      assert.ok(!v.lines.some((l) => l.ev === 'goodbye'), `${v.opts.name}: a killed agent sends no goodbye`);
    }

    const newIp = net.setAddress(k);
    procs[k] = new AgentProc(net, k, killed);
    await procs[k]!.ready();
    // Its announcements on start (RFC 6762 §8.3) bring it back at once, at its new address.
    await Promise.all(viewers.map((v) => v.peerIs(killed.id, (p) => p.state === 'up' && p.addresses[0] === newIp, `${killed.name} up at ${newIp}`, 5000)));
    await Promise.all(others(k).map((o) => procs[k]!.peerIs(o.id, (p) => p.state === 'up', `${o.name} up`, 5000)));
  });

  test('python3-zeroconf (another mDNS stack) sees every agent', { skip: zeroconf.status === 0 ? false : 'python3-zeroconf not installed (scripts/test-deps.sh)' }, async () => {
    const { found, stdout, stderr } = await zeroconfBrowse(net, 5, '3');
    defs.forEach((d, i) => {
      const s = found.find((f) => f.txt.id === d.id);
      assert.ok(s, `zeroconf did not find ${d.name}; got ${stdout} ${stderr}`);
      assert.equal(s.port, d.port);
      assert.deepEqual(s.addresses, [net.hosts[i]!.ip]);
    });
  });

  test('no agent that stayed up was ever seen leave "up" by another (no false expiry at rest)', () => {
    procs.forEach((viewer, i) => {
      for (const o of others(i).filter((d) => d !== defs[4])) {
        assert.ok(!viewer.lines.some((l) => l.ev === 'change' && l.peer?.id === o.id && l.peer.state !== 'up'), `${viewer.opts.name} saw ${o.name} leave "up"`);
      }
    });
  });

  test("no mDNS packet reached the host's default-route interface", async (t) => {
    const n = await leak.stop();
    if (leak.skipped !== null) t.diagnostic(`leak check skipped: ${leak.skipped}`);
    assert.equal(n, 0);
  });
});
