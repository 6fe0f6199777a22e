/**
 * Issue #3 end to end: whole agents (the real CLI, `tdxfer run`) find each other by mDNS
 * and deliver files, each in its own network namespace on a private bridge
 * (test/helpers/netns.ts). Discovery is enabled only in configs that run inside those
 * namespaces; every agent's status API sits on its namespace's own loopback and is read
 * from inside it (curl, `tdxfer peers --json`). Skipped (with the reason) when not root.
 *
 * One namespace set serves every check, in order:
 *   h0 stage     sender: outboxes out-a → render-a/renders, out-fan → *\/renders, out-b → render-b/renders, out-x → intruder/renders
 *   h1 render-a  inbox renders            h2 render-b  inbox renders (killed, back at a new address)
 *   h3 audio     inbox audio only (later re-keyed)     h4 render-a  a second agent with the same name (started later)
 *   h5 intruder  inbox renders, ANOTHER installation key     h6 python3-zeroconf browser
 */
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import path from 'node:path';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { spawnSync, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { canUseNetns, createNetns, type Netns, type LeakCheck } from '../helpers/netns.js';
import { cliCommand, tempDir, waitUntil, writeAgentConfig, listFiles } from '../helpers/agents.js';
import { quietWindow } from '../helpers/wait.js';
import { keyFingerprint } from '../../src/protocol/index.js';
import { softwareVersion } from '../../src/agent/identity.js';
import type { PeerInfo } from '../../src/types.js';
import type { SnapshotView } from '../../src/status/present.js';

const SEED = Number(process.env.TDX_TEST_SEED ?? Date.now() % 1_000_000);
const self = fileURLToPath(import.meta.url);
/** Runs from test/ (tsx), dist/test/ (scripts/test.sh) or an outDir elsewhere (then from the cwd). */
function repoRoot(...dirs: string[]): string {
  for (const dir of dirs) {
    for (let d = dir; ; d = path.dirname(d)) {
      if (existsSync(path.join(d, 'package.json')) && existsSync(path.join(d, 'test/python'))) return d;
      if (path.dirname(d) === d) break;
    }
  }
  throw new Error(`no repo root (package.json + test/python) above ${dirs.join(' or ')}: run the tests from the repository`);
}
const repo = repoRoot(path.dirname(self), process.cwd());
const zcBrowse = path.join(repo, 'test/python/zc_browse.py');
const can = canUseNetns();
const zeroconf = spawnSync('/usr/bin/python3', ['-c', 'import zeroconf'], { stdio: 'ignore' });
const curl = spawnSync('curl', ['--version'], { stdio: 'ignore' });
const skip = !can.ok ? can.reason! : curl.error ? 'curl is not installed (needed to read the status API inside a namespace)' : false;

/** Deterministic bytes from the seed (mulberry32), so a failing run can be repeated. */
function seededBytes(seed: number, size: number): Buffer {
  let a = seed >>> 0;
  const out = Buffer.alloc(size);
  for (let i = 0; i < size; i++) {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    out[i] = ((t ^ (t >>> 14)) >>> 0) & 0xff;
  }
  return out;
}
const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');
const idFor = (n: number): string => createHash('sha256').update(`agent-${SEED}-${n}`).digest('hex').slice(0, 16);
const keyFor = (n: number): string => createHash('sha256').update(`key-${SEED}-${n}`).digest().toString('base64');

interface AgentDef {
  name: string;
  ns: number;
  id: string;
  key: string;
  inboxes: Array<{ name: string; path: string }>;
  outboxes?: Array<{ path: string; to: Array<{ peer: string; inbox: string }> }>;
  interfaces?: string[];
}

interface RunResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs a command inside a namespace without blocking the test's event loop (the agents' pipes keep draining). */
/** `timeoutMs` only detects a hang: a CLI start takes seconds when the machine is loaded. */
function nsRun(net: Netns, ns: number, cmd: string, args: string[], timeoutMs = 60_000): Promise<RunResult> {
  return new Promise((resolve) => {
    const c = net.exec(ns, cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    c.stdout!.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    c.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const t = setTimeout(() => c.kill('SIGKILL'), timeoutMs);
    c.once('exit', (code) => {
      clearTimeout(t);
      resolve({ code, stdout, stderr });
    });
  });
}

/** One real `tdxfer run` process inside a namespace, with its log and status API. */
class NsAgent {
  child: ChildProcess | null = null;
  private out = '';
  private starts = 0;
  constructor(
    readonly net: Netns,
    readonly def: AgentDef,
    readonly dir: string,
    readonly configFile: string,
  ) {}

  get ns(): number {
    return this.def.ns;
  }

  start(): void {
    const { cmd, args } = cliCommand();
    this.starts++;
    this.out += `\n----- start #${this.starts} -----\n`;
    // Discovery is enabled in this config: it may only ever run inside the namespace.
    const child = this.net.exec(this.ns, cmd, [...args, 'run', '--config', this.configFile], {
      cwd: repo,
      env: { ...process.env, TDXFER_CONFIG: '', TDXFER_STATUS_TOKEN: '' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    child.stdout!.setEncoding('utf8').on('data', (d: string) => (this.out += d));
    child.stderr!.setEncoding('utf8').on('data', (d: string) => (this.out += d));
    this.child = child;
  }

  log(): string {
    return this.out;
  }

  /** Log of the current run only. */
  runLog(): string {
    return this.out.slice(this.out.lastIndexOf('----- start #'));
  }

  waitLog(re: RegExp, timeoutMs: number): Promise<void> {
    return waitUntil(
      () => {
        if (this.child && (this.child.exitCode !== null || this.child.signalCode !== null)) {
          throw new Error(`${this.def.name}@h${this.ns} exited (${this.child.exitCode ?? this.child.signalCode}) while waiting for ${re}:\n${this.out.slice(-3000)}`);
        }
        return re.test(this.runLog());
      },
      timeoutMs,
      () => `${this.def.name}@h${this.ns}: ${re} in its log:\n${this.out.slice(-3000)}`,
    );
  }

  async kill(): Promise<void> {
    const c = this.child;
    if (!c || c.exitCode !== null || c.signalCode !== null) return;
    const gone = new Promise((r) => c.once('exit', r));
    c.kill('SIGKILL');
    await gone;
  }

  nsRun(cmd: string, args: string[], timeoutMs = 60_000): Promise<RunResult> {
    return nsRun(this.net, this.ns, cmd, args, timeoutMs);
  }

  async status(): Promise<SnapshotView> {
    const r = await this.nsRun('curl', ['-sS', '--max-time', '30', 'http://127.0.0.1:7771/status']);
    if (r.code !== 0) throw new Error(`GET /status of ${this.def.name}@h${this.ns} failed (curl exit ${r.code}): ${r.stderr}\nagent log:\n${this.out.slice(-2000)}`);
    return JSON.parse(r.stdout) as SnapshotView;
  }

  /** Status, or null while the API is not up yet. */
  async tryStatus(): Promise<SnapshotView | null> {
    const r = await this.nsRun('curl', ['-sS', '--max-time', '30', 'http://127.0.0.1:7771/status']);
    return r.code === 0 ? (JSON.parse(r.stdout) as SnapshotView) : null;
  }

  async peersCli(): Promise<PeerInfo[]> {
    const { cmd, args } = cliCommand();
    const r = await this.nsRun(cmd, [...args, 'peers', '--json', '--config', this.configFile], 60_000);
    assert.equal(r.code, 0, `tdxfer peers --json in h${this.ns}: ${r.stderr}`);
    return JSON.parse(r.stdout) as PeerInfo[];
  }

  async post(pathname: string, body: unknown): Promise<{ code: number; json: Record<string, unknown> }> {
    const r = await this.nsRun('curl', ['-sS', '--max-time', '30', '-o', '-', '-w', '\n%{http_code}', '-X', 'POST', '-H', 'Content-Type: application/json', '--data-binary', JSON.stringify(body), `http://127.0.0.1:7771${pathname}`]);
    assert.equal(r.code, 0, `POST ${pathname}: ${r.stderr}`);
    const i = r.stdout.lastIndexOf('\n');
    return { code: Number(r.stdout.slice(i + 1)), json: JSON.parse(r.stdout.slice(0, i)) as Record<string, unknown> };
  }

  inbox(name: string): string {
    const ib = this.def.inboxes.find((i) => i.name === name);
    if (!ib) throw new Error(`${this.def.name} has no inbox ${name}`);
    return path.join(this.dir, ib.path);
  }
}

const discoveredUp = (peers: readonly PeerInfo[], id: string): PeerInfo | undefined =>
  peers.find((p) => p.source === 'discovered' && p.id === id && p.state === 'up');

describe('whole agents discover each other by mDNS in network namespaces (issue #3)', { skip, timeout: 600_000 }, () => {
  let net: Netns;
  let leak: LeakCheck;
  let root: string;
  const agents = new Map<string, NsAgent>();
  const A = (name: string): NsAgent => {
    const a = agents.get(name);
    if (!a) throw new Error(`no agent ${name}`);
    return a;
  };
  const key = keyFor(0);
  const version = softwareVersion();
  const defs: AgentDef[] = [
    {
      name: 'stage',
      ns: 0,
      id: idFor(0),
      key,
      inboxes: [{ name: 'renders', path: 'inbox' }],
      interfaces: ['tdx0'],
      outboxes: [
        { path: 'out-a', to: [{ peer: 'render-a', inbox: 'renders' }] },
        { path: 'out-fan', to: [{ peer: '*', inbox: 'renders' }] },
        { path: 'out-b', to: [{ peer: 'render-b', inbox: 'renders' }] },
        { path: 'out-x', to: [{ peer: 'intruder', inbox: 'renders' }] },
      ],
    },
    { name: 'render-a', ns: 1, id: idFor(1), key, inboxes: [{ name: 'renders', path: 'inbox' }] },
    { name: 'render-b', ns: 2, id: idFor(2), key, inboxes: [{ name: 'renders', path: 'inbox' }], interfaces: ['tdx0'] },
    { name: 'audio', ns: 3, id: idFor(3), key, inboxes: [{ name: 'audio', path: 'inbox-audio' }] },
    { name: 'render-a', ns: 4, id: idFor(4), key, inboxes: [{ name: 'renders', path: 'inbox' }] },
    { name: 'intruder', ns: 5, id: idFor(5), key: keyFor(1), inboxes: [{ name: 'renders', path: 'inbox' }] },
  ];
  const twinKey = 'render-a@h4';
  /** Discovery on: this config is only ever run inside its namespace (NsAgent.start). */
  const writeConfig = (d: AgentDef, dir: string): Promise<string> =>
    writeAgentConfig({
      name: d.name,
      dir,
      port: 7770,
      extra: {
        listen: { host: '0.0.0.0', port: 7770 },
        inboxes: d.inboxes,
        outboxes: (d.outboxes ?? []).map((o) => ({ ...o, settleMs: 150, after: 'delete' })),
        security: { key: d.key },
        status: { enabled: true, host: '127.0.0.1', port: 7771 },
        discovery: { enabled: true, interfaces: d.interfaces ?? [] },
        log: { level: 'info' },
      },
    });
  const dump = (): string => [...agents.entries()].map(([k, a]) => `===== ${k}\n${a.log().slice(-2500)}`).join('\n');

  before(async () => {
    console.log(`agents-netns seed ${SEED} (TDX_TEST_SEED=${SEED} repeats this run)`);
    net = createNetns({ hosts: 7 });
    leak = await net.startHostLeakCheck();
    root = await tempDir('tdx-agents-netns-');
    for (const d of defs) {
      const dir = path.join(root, `h${d.ns}-${d.name}`);
      await fs.mkdir(path.join(dir, 'data'), { recursive: true });
      // A known id per agent (routes "name#idprefix" need it before the agent starts).
      await fs.writeFile(path.join(dir, 'data', 'agent-id'), `${d.id}\n`);
      const file = await writeConfig(d, dir);
      agents.set(d.ns === 4 ? twinKey : d.name, new NsAgent(net, d, dir, file));
    }
  });

  after(async () => {
    await net?.destroy();
    if (root) await fs.rm(root, { recursive: true, force: true });
  });

  const dropFile = async (outbox: string, rel: string, seed: number, size: number): Promise<Buffer> => {
    const data = seededBytes(seed, size);
    const dest = path.join(A('stage').dir, outbox, rel);
    await fs.mkdir(path.dirname(dest), { recursive: true });
    // Written beside the outbox and renamed in: the watcher sees one complete file.
    const tmp = path.join(A('stage').dir, `.${path.basename(rel)}.tmp`);
    await fs.writeFile(tmp, data);
    await fs.rename(tmp, dest);
    return data;
  };
  const arrives = async (agent: NsAgent, rel: string, data: Buffer, timeoutMs: number): Promise<void> => {
    const file = path.join(agent.inbox('renders'), rel);
    await waitUntil(() => existsSync(file), timeoutMs, () => `${rel} in ${agent.def.name}@h${agent.ns}'s inbox\n${dump()}`);
    assert.equal(sha(await fs.readFile(file)), sha(data), `${rel} at ${agent.def.name} is not byte-identical`);
  };

  test('three agents discover each other; a file routed by peer name arrives byte-identical', async () => {
    const names = ['stage', 'render-a', 'render-b', 'audio', 'intruder'];
    for (const n of names) A(n).start();
    await Promise.all(names.map((n) => A(n).waitLog(/announcing ".*" \(_tdxfer\._tcp, port 7770\)/, 30_000)));
    const trio = ['stage', 'render-a', 'render-b'].map(A);
    const seenAt = new Map<string, number>();
    const lastPeers = new Map<string, unknown>();
    await waitUntil(
      async () => {
        for (const viewer of trio) {
          if (seenAt.has(viewer.def.name)) continue;
          const s = await viewer.tryStatus();
          lastPeers.set(viewer.def.name, s?.peers ?? 'status API not answering');
          if (s && trio.every((o) => o === viewer || discoveredUp(s.peers, o.def.id))) seenAt.set(viewer.def.name, 1);
        }
        return seenAt.size === trio.length;
      },
      3000,
      () =>
        `each of stage, render-a, render-b seeing the other two up (done: ${[...seenAt.keys()].join(', ')})\n` +
        `last peer lists: ${JSON.stringify(Object.fromEntries(lastPeers))}\n${dump()}`,
    );

    // What the peer table holds about each (the status API and `tdxfer peers --json` agree).
    for (const viewer of trio) {
      const peers = viewer === A('stage') ? await viewer.peersCli() : (await viewer.status()).peers;
      for (const other of trio) {
        if (other === viewer) continue;
        const p = discoveredUp(peers, other.def.id);
        assert.ok(p, `${viewer.def.name} does not list ${other.def.name}: ${JSON.stringify(peers)}`);
        assert.equal(p.name, other.def.name);
        assert.deepEqual(p.addresses, [net.hosts[other.ns]!.ip]);
        assert.equal(p.port, 7770);
        assert.deepEqual(p.inboxes, ['renders']);
        assert.equal(p.version, version);
        assert.equal(p.protocol, 'tdxfer');
      }
      assert.equal(peers.filter((p) => p.source === 'self').length, 1);
      assert.ok(!peers.some((p) => p.source === 'discovered' && p.id === viewer.def.id), `${viewer.def.name} lists itself as discovered`);
    }

    const data = await dropFile('out-a', 'shots/frame-0001.exr', SEED + 1, 300_000);
    await arrives(A('render-a'), 'shots/frame-0001.exr', data, 10_000);
    await waitUntil(() => !existsSync(path.join(A('stage').dir, 'out-a/shots/frame-0001.exr')), 5000, () => 'the sent file leaving the outbox (after: delete)');
    assert.deepEqual(await listFiles(A('render-b').inbox('renders')), [], 'render-b got a file routed to render-a');
  });

  test('an agent announcing another installation key is ignored with a clear warning and gets no files', async () => {
    const intruder = A('intruder');
    const fp = keyFingerprint(Buffer.from(intruder.def.key, 'base64'));
    const ours = keyFingerprint(Buffer.from(key, 'base64'));
    for (const viewer of ['stage', 'render-a', 'render-b'].map(A)) {
      await viewer.waitLog(/ignoring agent "intruder" \(.*\): it belongs to another installation/, 3000);
      const line = viewer.log().split('\n').find((l) => l.includes('ignoring agent "intruder"'))!;
      assert.match(line, new RegExp(`key fingerprint ${fp}, ours ${ours}`));
      assert.match(line, new RegExp(net.hosts[intruder.ns]!.ip.replace(/\./g, '\\.')));
      assert.equal(line.split('ignoring agent').length, 2, 'warned once per line');
      assert.equal(viewer.log().split('ignoring agent "intruder"').length - 1, 1, `${viewer.def.name} warned about the intruder more than once`);
      // Shown with the reason (issue #11 item 7), never up and never routed to.
      await waitUntil(
        async () => (await viewer.status()).peers.some((p) => p.id === intruder.def.id && p.reason === 'other installation key'),
        3000,
        () => `${viewer.def.name} showing the intruder with its reason\n${viewer.log().slice(-1500)}`,
      );
      const s = await viewer.status();
      for (const p of s.peers.filter((x) => x.name === 'intruder' || x.id === intruder.def.id)) {
        assert.equal(p.state, 'unreachable', `${viewer.def.name} lists the intruder as ${p.state}`);
        assert.equal(p.reason, 'other installation key');
      }
    }
    // The intruder, symmetrically, ignores the installation.
    await intruder.waitLog(/ignoring agent "stage" .*another installation/, 3000);
    assert.ok(!(await intruder.status()).peers.some((p) => p.source === 'discovered' && p.state === 'up'));

    // A route naming it keeps the file waiting (visibly), and nothing reaches its inbox.
    await dropFile('out-x', 'for-intruder.bin', SEED + 2, 10_000);
    await waitUntil(
      async () => (await A('stage').status()).active.some((j) => j.peer === 'intruder' && j.state === 'waiting'),
      5000,
      () => `a waiting job for "intruder" in stage's /status\n${A('stage').log().slice(-2000)}`,
    );
    const job = (await A('stage').status()).active.find((j) => j.peer === 'intruder')!;
    assert.match(job.error ?? '', /not known|not seen/);
    assert.deepEqual(await listFiles(intruder.inbox('renders')), []);
  });

  test('fan-out "*" delivers to every discovered peer that has the inbox, and to no other', async () => {
    const data = await dropFile('out-fan', 'fan/one.mov', SEED + 3, 200_000);
    await Promise.all([arrives(A('render-a'), 'fan/one.mov', data, 10_000), arrives(A('render-b'), 'fan/one.mov', data, 10_000)]);
    await waitUntil(() => !existsSync(path.join(A('stage').dir, 'out-fan/fan/one.mov')), 5000, () => 'fan/one.mov leaving the outbox');
    const recent = (await A('stage').status()).recent.filter((j) => j.file === 'fan/one.mov');
    assert.deepEqual(recent.map((j) => `${j.peer}/${j.inbox}:${j.state}`).sort(), ['render-a/renders:done', 'render-b/renders:done']);
    assert.deepEqual(await listFiles(A('audio').inbox('audio')), [], 'audio has no "renders" inbox and must get nothing');
    assert.deepEqual(await listFiles(A('intruder').inbox('renders')), [], 'the other installation must get nothing');
    assert.deepEqual(await listFiles(A('stage').inbox('renders')), [], '"*" means discovered peers, not self');
  });

  test('python3-zeroconf sees what a real agent announces: _tdxfer._tcp, port, TXT without the key', { skip: zeroconf.status === 0 ? false : 'python3-zeroconf not installed (scripts/test-deps.sh)' }, async () => {
    const r = await nsRun(net, 6, '/usr/bin/python3', [zcBrowse, '2.5'], 60_000);
    assert.equal(r.code, 0, r.stderr);
    const found = r.stdout
      .split('\n')
      .filter((l) => l.trim() !== '')
      .map((l) => JSON.parse(l) as { name: string; port: number; addresses: string[]; txt: Record<string, string> });
    for (const n of ['stage', 'render-a', 'render-b', 'audio']) {
      const a = A(n);
      const s = found.find((f) => f.txt.id === a.def.id);
      assert.ok(s, `zeroconf did not find ${n}: ${r.stdout} ${r.stderr}`);
      assert.equal(s.name, `${n} (${a.def.id.slice(0, 6)})._tdxfer._tcp.local.`);
      assert.equal(s.port, 7770);
      assert.deepEqual(s.addresses, [net.hosts[a.ns]!.ip]);
      assert.deepEqual(Object.keys(s.txt).sort(), ['fp', 'id', 'inb', 'name', 'proto', 'ver']);
      assert.equal(s.txt.name, n);
      assert.equal(s.txt.ver, version);
      assert.equal(s.txt.proto, '1');
      assert.equal(s.txt.fp, keyFingerprint(Buffer.from(key, 'base64')));
      assert.equal(s.txt.inb, a.def.inboxes.map((i) => i.name).join(','));
      const everything = JSON.stringify(s);
      const raw = Buffer.from(key, 'base64');
      for (const form of [key, raw.toString('hex'), raw.toString('base64url')]) assert.ok(!everything.includes(form), `${n} announces its key`);
    }
  });

  test('a known agent that returns with another key drops out at once and stays out', async () => {
    // Same id, same instance name, new fingerprint: its answers to re-queries must not revive the old entry.
    const audio = A('audio');
    assert.ok(discoveredUp((await A('stage').status()).peers, audio.def.id), 'audio should be up before its key changes');
    await audio.kill();
    audio.def.key = keyFor(2);
    await writeConfig(audio.def, audio.dir);
    audio.start();
    await A('stage').waitLog(/ignoring agent "audio" .*another installation/, 30_000);
    // Dropped from the peer table: shown only as another installation's agent, never up.
    const audioRow = async () => (await A('stage').status()).peers.find((p) => p.id === audio.def.id);
    await waitUntil(
      async () => { const r = await audioRow(); return r === undefined || r.state === 'gone' || (r.state === 'unreachable' && r.reason === 'other installation key'); },
      1000,
      () => `stage dropping "audio" after its key changed\n${A('stage').log().slice(-1500)}`,
    );
    // A stated window: every agent re-queries every 3 s, so the re-keyed one answers at least
    // twice within 7 s; too short a window under load could only hide a revival, never fail.
    await quietWindow(7000);
    assert.notEqual((await audioRow())?.state, 'up', 'a re-query answer revived the re-keyed agent');
  });

  test('two agents with the same name both stay reachable: both listed, a warning names both, "*" and name#idprefix reach each', async () => {
    const twin = A(twinKey);
    const first = A('render-a');
    twin.start();
    await twin.waitLog(/announcing "render-a \(/, 30_000);
    await waitUntil(
      async () => {
        const s = await A('stage').status();
        return discoveredUp(s.peers, first.def.id) !== undefined && discoveredUp(s.peers, twin.def.id) !== undefined;
      },
      3000,
      () => `stage listing both render-a agents\n${dump()}`,
    );
    const peers = await A('stage').peersCli();
    assert.deepEqual(
      peers.filter((p) => p.name === 'render-a').map((p) => [p.id, p.addresses[0], p.state]).sort(),
      [[first.def.id, net.hosts[1]!.ip, 'up'], [twin.def.id, net.hosts[4]!.ip, 'up']].sort(),
    );
    // Each twin warns about the other, naming both; so does the sender that sees both.
    for (const [viewer, other] of [[first, twin], [twin, first]] as const) {
      await viewer.waitLog(/another agent uses our name "render-a"/, 3000);
      const line = viewer.log().split('\n').find((l) => l.includes('another agent uses our name'))!;
      assert.match(line, new RegExp(`id ${other.def.id}`));
      assert.match(line, new RegExp(`id ${viewer.def.id}`));
      assert.equal(viewer.log().split('another agent uses our name').length - 1, 1, `${viewer.def.name}@h${viewer.ns} logged the warning more than once`);
    }
    await A('stage').waitLog(/agents share the name "render-a"/, 3000);
    const line = A('stage').log().split('\n').find((l) => l.includes('agents share the name "render-a"'))!;
    for (const a of [first, twin]) {
      assert.match(line, new RegExp(a.def.id));
      assert.match(line, new RegExp(net.hosts[a.ns]!.ip.replace(/\./g, '\\.')));
    }
    assert.equal(A('stage').log().split('agents share the name').length - 1, 1, 'stage warned more than once');

    // Fan-out reaches each of them (and render-b).
    const data = await dropFile('out-fan', 'fan/two.mov', SEED + 4, 150_000);
    await Promise.all([first, twin, A('render-b')].map((a) => arrives(a, 'fan/two.mov', data, 10_000)));

    // name#idprefix addresses exactly one of them (POST /send resolves like a route).
    const solo = seededBytes(SEED + 5, 50_000);
    const src = path.join(A('stage').dir, 'solo.bin');
    await fs.writeFile(src, solo);
    for (const [target, other] of [[twin, first], [first, twin]] as const) {
      const as = `solo-for-${target.def.id.slice(0, 6)}.bin`;
      const r = await A('stage').post('/send', { file: src, peer: `render-a#${target.def.id.slice(0, 6)}`, inbox: 'renders', as });
      assert.equal(r.code, 202, JSON.stringify(r.json));
      await arrives(target, as, solo, 10_000);
      assert.ok(!existsSync(path.join(other.inbox('renders'), as)), `${as} also reached ${other.def.id}`);
    }
  });

  test('a receiver killed with SIGKILL is gone by the liveness timeout, its files wait, and it is picked up at a new address', async () => {
    const rb = A('render-b');
    const stage = A('stage');
    await rb.kill();
    const killedAt = Date.now();
    const data = await dropFile('out-b', 'late/frame-0100.exr', SEED + 6, 400_000);
    let goneAt = 0;
    await waitUntil(
      async () => {
        const p = (await stage.status()).peers.find((x) => x.id === rb.def.id);
        if (p?.state === 'gone') goneAt = Date.now();
        return goneAt > 0;
      },
      13_000,
      () => `stage marking render-b gone\n${stage.log().slice(-2000)}`,
    );
    // A lower bound only (the liveness timeout, not something sooner, marked it gone).
    assert.ok(goneAt - killedAt >= 5000, `render-b marked gone after only ${goneAt - killedAt} ms: the liveness timeout is ~10 s`);
    const s = await stage.status();
    const waiting = s.active.filter((j) => j.peer === 'render-b');
    assert.deepEqual(waiting.map((j) => `${j.file}:${j.state}`), ['late/frame-0100.exr:waiting'], JSON.stringify(s.active));
    assert.ok(s.queues.some((q) => q.peer === 'render-b' && q.waiting === 1), JSON.stringify(s.queues));
    assert.ok(existsSync(path.join(stage.dir, 'out-b/late/frame-0100.exr')), 'the waiting file left the outbox');

    const newIp = net.setAddress(rb.ns);
    assert.notEqual(newIp, net.hosts.map((h) => h.ip).find((ip, i) => i !== rb.ns && ip === newIp));
    rb.start();
    await rb.waitLog(/announcing "render-b \(/, 30_000);
    await waitUntil(
      async () => {
        const p = discoveredUp((await stage.status()).peers, rb.def.id);
        return p !== undefined && p.addresses[0] === newIp;
      },
      3000,
      () => `stage seeing render-b up at ${newIp}\n${dump()}`,
    );
    const peers = await stage.peersCli();
    assert.deepEqual(discoveredUp(peers, rb.def.id)?.addresses, [newIp]);
    await arrives(rb, 'late/frame-0100.exr', data, 5000);
    await waitUntil(async () => !(await stage.status()).active.some((j) => j.peer === 'render-b'), 3000, () => 'no render-b job left');
  });

  test("nothing reached the host's default-route interface (zero mDNS packets)", async (t) => {
    const n = await leak.stop();
    if (leak.skipped !== null) t.diagnostic(`leak check skipped: ${leak.skipped}`);
    assert.equal(n, 0, `${n} mDNS packets on the host's default-route interface`);
  });
});
