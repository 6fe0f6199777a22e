/**
 * Issue #4 end to end: whole agents (in-process and the spawned CLI) talking to the
 * Python stand-ins of the original TouchDesigner "Threaded TCP Transfer" TOX
 * (test/python/tox_sender.py, tox_receiver.py), and old and new machines mixed.
 *
 * Everything runs on 127.0.0.1 with free ports, in fresh temp folders.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import { existsSync, readFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { spawn, type ChildProcess } from 'node:child_process';
import readline from 'node:readline';
import { Agent } from '../../src/agent/agent.js';
import { loadConfig } from '../../src/config/load.js';
import type { AgentConfig } from '../../src/config/types.js';
import { memoryLogger } from '../../src/log.js';
import { base64MimeLength, encodeLegacyHeader, parseLegacyAnswer, type LegacyAnswer } from '../../src/protocol/legacy.js';
import {
  hashTree, listFiles, runCli, sha256File, spawnCli, tempDir, waitUntil, writeAgentConfig,
} from '../helpers/agents.js';
import { reservedPort } from '../helpers/ports.js';
import { quietWindow } from '../helpers/wait.js';
import { PYTHON, PYTHON_DIR, runPeer } from '../legacy/helpers.js';

const SEED = Number(process.env.TDX_TEST_SEED ?? Date.now() % 2 ** 31);
console.log(`# legacy e2e seed: ${SEED} (rerun with TDX_TEST_SEED=${SEED})`);

const cleanup: Array<() => Promise<unknown>> = [];
after(async () => {
  for (const c of cleanup.reverse()) await c().catch(() => undefined);
});

// ---------------------------------------------------------------- helpers

/** mulberry32: small, fast, seeded. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
const rand = rng(SEED);
const randInt = (lo: number, hi: number): number => lo + Math.floor(rand() * (hi - lo + 1));

/** Writes `size` seeded pseudo-random bytes, 4 MiB at a time. */
async function writeSeeded(file: string, size: number): Promise<void> {
  await fs.mkdir(path.dirname(file), { recursive: true });
  const fh = await fs.open(file, 'w');
  try {
    let state = (rand() * 2 ** 32) >>> 0 || 1;
    for (let left = size; left > 0; ) {
      const n = Math.min(left, 4 * 1024 * 1024);
      const words = new Uint32Array(Math.ceil(n / 4));
      for (let i = 0; i < words.length; i++) {
        // xorshift32
        state ^= state << 13;
        state ^= state >>> 17;
        state ^= state << 5;
        words[i] = state >>> 0;
      }
      await fh.write(Buffer.from(words.buffer, 0, n));
      left -= n;
    }
  } finally {
    await fh.close();
  }
}

async function root(prefix: string): Promise<string> {
  const dir = await tempDir(prefix);
  cleanup.push(() => fs.rm(dir, { recursive: true, force: true }));
  return dir;
}

type MemLog = ReturnType<typeof memoryLogger>;

async function start(cfg: string): Promise<{ agent: Agent; log: MemLog; config: AgentConfig }> {
  const log = memoryLogger();
  const config = await loadConfig(cfg, { createKey: true, log });
  const agent = await Agent.start(config, { log });
  cleanup.push(() => agent.stop(2000));
  return { agent, log, config };
}

/** The port the agent's legacy TOX listener got (legacy.listen.port 0), from its log. */
function legacyPortOf(log: MemLog): number {
  const rec = log.records.find((r) => r.msg === 'legacy TOX listener ready');
  if (!rec) throw new Error(`no legacy TOX listener in the log:\n${logText(log)}`);
  return Number(rec.fields.port);
}

function logText(log: MemLog): string {
  return log.records.map((r) => `${r.level} ${r.msg} ${JSON.stringify(r.fields)}`).join('\n');
}

interface ToxReceiver {
  port: number;
  lines: Array<{ at: number; line: string }>;
  waitFor(pred: (lines: string[]) => boolean, timeoutMs?: number, what?: string): Promise<void>;
  stop(): Promise<void>;
}

/** tox_receiver.py writing into `dir`, on 127.0.0.1:`port` (0: a free one); every output line is timestamped. */
function toxReceiver(dir: string, port = 0): Promise<ToxReceiver> {
  return new Promise((resolve, reject) => {
    const child: ChildProcess = spawn(PYTHON, [path.join(PYTHON_DIR, 'tox_receiver.py'), '--host', '127.0.0.1', '--port', String(port), '--dir', dir], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    const exited = new Promise<void>((r) => child.once('exit', () => r()));
    child.once('exit', (code) => reject(new Error(`tox_receiver.py exited early (${code}): ${stderr}`)));
    child.once('error', reject);
    const lines: ToxReceiver['lines'] = [];
    const rx: ToxReceiver = {
      port: 0,
      lines,
      waitFor: (pred, timeoutMs = 20_000, what = 'receiver output') =>
        waitUntil(() => pred(lines.map((l) => l.line)), timeoutMs, () => `${what}; tox_receiver.py printed:\n${lines.map((l) => l.line).join('\n')}\n${stderr}`),
      async stop() {
        if (child.exitCode === null && child.signalCode === null) {
          child.kill('SIGTERM');
          await exited;
        }
      },
    };
    cleanup.push(() => rx.stop());
    readline.createInterface({ input: child.stdout! }).on('line', (line) => {
      const m = /^LISTENING (\d+)$/.exec(line);
      if (m) {
        rx.port = Number(m[1]);
        resolve(rx);
      } else lines.push({ at: Date.now(), line });
    });
  });
}

/**
 * A TOX receiver in this process that holds its answer until the test gives it: shows
 * exactly what the agent put on the wire and when the agent acts on the answer.
 */
interface HeldRequest {
  /** Every byte the agent sent on this connection, from the first. */
  raw: Buffer;
  header: Record<string, unknown>;
  data: Buffer;
  reply(success: boolean, error?: string): void;
}

async function holdReceiver(): Promise<{ port: number; requests: HeldRequest[] }> {
  const requests: HeldRequest[] = [];
  const server = net.createServer((socket) => {
    socket.on('error', () => {});
    const chunks: Buffer[] = [];
    let total = 0;
    let done = false;
    socket.on('data', (d: Buffer) => {
      if (done) return;
      chunks.push(d);
      total += d.length;
      const raw = Buffer.concat(chunks);
      if (raw.length < 2) return;
      const n = raw.readUInt16BE(0);
      if (raw.length < 2 + n) return;
      const header = JSON.parse(raw.subarray(2, 2 + n).toString('utf8')) as Record<string, unknown>;
      const len = header['content-length'] as number;
      if (total < 2 + n + len) return;
      done = true;
      const data = Buffer.from(raw.subarray(2 + n, 2 + n + len).toString('latin1'), 'base64');
      requests.push({
        raw,
        header,
        data,
        reply(success, error) {
          // What the original's Python json.dumps writes.
          const body = Buffer.from(success ? '{"success": true}' : `{"success": false, "error": ${JSON.stringify(error ?? 'no')}}`);
          const head = Buffer.from(`{"byteorder": "little", "content-type": "text/json", "content-encoding": "utf-8", "content-length": ${body.length}}`);
          const len2 = Buffer.alloc(2);
          len2.writeUInt16BE(head.length);
          socket.end(Buffer.concat([len2, head, body]));
        },
      });
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  cleanup.push(
    () =>
      new Promise<void>((r) => {
        server.close(() => r());
      }),
  );
  return { port: (server.address() as net.AddressInfo).port, requests };
}

/** Raw client: writes `parts` (numbers are pauses), optionally half-closes, returns what came back once the agent closed. */
async function rawLegacy(port: number, parts: Array<Buffer | number>, opts: { end?: boolean; timeoutMs?: number } = {}): Promise<{ answer: LegacyAnswer | null; bytes: Buffer; closedByPeer: boolean; ms: number }> {
  const t0 = Date.now();
  const s = net.connect({ host: '127.0.0.1', port });
  s.on('error', () => {});
  const got: Buffer[] = [];
  s.on('data', (d: Buffer) => got.push(d));
  let closedByPeer = true;
  const closed = new Promise<void>((r) => s.once('close', () => r()));
  await new Promise<void>((r, j) => {
    s.once('connect', () => r());
    s.once('error', j);
  });
  for (const p of parts) {
    if (typeof p === 'number') await new Promise((r) => setTimeout(r, p));
    else if (!s.destroyed) s.write(p);
  }
  if (opts.end !== false && !s.destroyed) s.end();
  const t = setTimeout(() => {
    closedByPeer = false;
    s.destroy();
  }, opts.timeoutMs ?? 10_000);
  await closed;
  clearTimeout(t);
  const bytes = Buffer.concat(got);
  let answer: LegacyAnswer | null = null;
  try {
    answer = parseLegacyAnswer(bytes);
  } catch {
    answer = null;
  }
  return { answer, bytes, closedByPeer, ms: Date.now() - t0 };
}

function frameJson(json: string): Buffer {
  const body = Buffer.from(json, 'utf8');
  const out = Buffer.alloc(2 + body.length);
  out.writeUInt16BE(body.length, 0);
  body.copy(out, 2);
  return out;
}

function vmRssKiB(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  if (!m) throw new Error(`no VmRSS in /proc/${pid}/status`);
  return Number(m[1]);
}

/** Sizes for `n` small files, seeded, including the edge cases 0 and 1 byte and a base64 line boundary (57). */
function smallSizes(n: number): number[] {
  const fixed = [0, 1, 57, 58, 1000];
  return Array.from({ length: n }, (_, i) => fixed[i] ?? randInt(2, 300 * 1024));
}

// ---------------------------------------------------------------- 1. TOX sender → agent

test('TOX sender → spawned agent: 20 files (one of 50 MB) land byte-identical, each answered success, listed as received via legacy, RSS flat', async () => {
  const dir = await root('tdx-leg-in-');
  // Port 0 for all three: the ports it got are read from its log.
  const cfg = await writeAgentConfig({
    name: 'playback',
    dir: path.join(dir, 'agent'),
    port: 0,
    extra: {
      legacy: { listen: { host: '127.0.0.1', port: 0 }, inbox: 'renders', allow: ['127.0.0.1'] },
      status: { enabled: true, host: '127.0.0.1', port: 0 },
    },
  });
  const src = path.join(dir, 'src');
  const sizes = smallSizes(19);
  const small = sizes.map((_, i) => path.join(src, `frame.${String(i).padStart(4, '0')}.png`));
  for (const [i, f] of small.entries()) await writeSeeded(f, sizes[i]!);
  const big = path.join(src, 'take1.mov');
  await writeSeeded(big, 50 * 1024 * 1024);
  const expected = await hashTree(src);

  const cli = spawnCli(['run', '--config', cfg]);
  cleanup.push(() => cli.stop());
  await cli.waitFor(/legacy TOX listener ready .*\bport=\d+/);
  const legacyPort = Number(/legacy TOX listener ready .*\bport=(\d+)/.exec(cli.output())![1]);
  const statusPort = await cli.statusPort();
  const pid = cli.child.pid!;
  const inbox = path.join(dir, 'agent', 'inbox');

  // Small files first (also warms the agent up), then the big one while RSS is sampled.
  const first = await runPeer('tox_sender.py', ['--port', String(legacyPort), ...small]);
  assert.equal(first.code, 0, `tox_sender.py: ${first.lines.join(' | ')} ${first.stderr}`);
  assert.deepEqual(first.lines, small.map((f) => `OK ${path.basename(f)}`));

  const procOk = existsSync(`/proc/${pid}/status`);
  const baseline = procOk ? vmRssKiB(pid) : 0;
  let peak = baseline;
  const sampler = setInterval(() => {
    try {
      peak = Math.max(peak, vmRssKiB(pid));
    } catch {
      /* the process is gone: the assertions below say so */
    }
  }, 10);
  const second = await runPeer('tox_sender.py', ['--port', String(legacyPort), big]);
  clearInterval(sampler);
  assert.equal(second.code, 0, `tox_sender.py: ${second.lines.join(' | ')} ${second.stderr}\nagent:\n${cli.output().slice(-2000)}`);
  assert.deepEqual(second.lines, ['OK take1.mov']);

  assert.deepEqual(await hashTree(inbox), expected, 'every file byte-identical under its name');
  const res = await fetch(`http://127.0.0.1:${statusPort}/status`);
  assert.equal(res.status, 200);
  const status = (await res.json()) as { received: Array<{ file: string; via: string; from: string; inbox: string; size: number }> };
  const legacyIn = status.received.filter((r) => r.via === 'legacy');
  assert.deepEqual(legacyIn.map((r) => r.file).sort(), [...expected.keys()].sort());
  for (const r of legacyIn) {
    assert.equal(r.from, '127.0.0.1');
    assert.equal(r.inbox, 'renders');
  }
  assert.equal(legacyIn.find((r) => r.file === 'take1.mov')?.size, 50 * 1024 * 1024);

  if (procOk) {
    const growMiB = (peak - baseline) / 1024;
    console.log(`# agent RSS ${Math.round(baseline / 1024)} MiB before the 50 MB file, peak ${Math.round(peak / 1024)} MiB (+${growMiB.toFixed(1)} MiB)`);
    // Streaming costs a one-time heap/external-buffer growth of ~20-35 MiB (a second 50 or
    // 200 MB file adds nothing); holding the payload (68 MiB of base64), or the decoded file, would add more than the file itself.
    assert.ok(growMiB < 48, `agent RSS grew by ${growMiB.toFixed(1)} MiB while receiving a 50 MB legacy file: it must stream, not buffer`);
  }
  assert.equal(await cli.stop('SIGTERM'), 0);
});

// ---------------------------------------------------------------- 2. agent → TOX receiver

async function senderAgent(dir: string, legacyPort: number, opts: { flatten?: boolean; extraRoutes?: unknown[]; extraPeers?: unknown[]; settleMs?: number } = {}) {
  const port = 0; // nobody connects to it
  const route: Record<string, unknown> = { peer: 'oldbox' };
  if (opts.flatten !== undefined) route.flatten = opts.flatten;
  const cfg = await writeAgentConfig({
    name: 'render',
    dir,
    port,
    extra: {
      inboxes: [],
      outboxes: [{ path: 'outbox', to: [route, ...(opts.extraRoutes ?? [])], after: 'archive', settleMs: opts.settleMs ?? 150 }],
      peers: [{ name: 'oldbox', host: '127.0.0.1', port: legacyPort, protocol: 'legacy' }, ...(opts.extraPeers ?? [])],
    },
  });
  return { cfg, outbox: path.join(dir, 'outbox') };
}

test('agent → TOX receiver: 20 nested files arrive byte-identical under their base names, then are archived', async () => {
  const dir = await root('tdx-leg-out-');
  const target = path.join(dir, 'tox-target');
  await fs.mkdir(target);
  const rx = await toxReceiver(target);
  const { cfg, outbox } = await senderAgent(path.join(dir, 'render'), rx.port);

  const src = path.join(dir, 'src');
  const sizes = smallSizes(20);
  for (const [i, size] of sizes.entries()) await writeSeeded(path.join(src, `shot${i % 4}`, `layer${i % 3}`, `f.${String(i).padStart(4, '0')}.exr`), size);
  const expected = await hashTree(src);
  const byBase = new Map([...expected].map(([rel, h]) => [path.posix.basename(rel), h]));
  assert.equal(byBase.size, 20, 'base names are unique in this set');

  const { agent, log } = await start(cfg);
  await fs.mkdir(outbox, { recursive: true });
  for (const top of await fs.readdir(src)) await fs.rename(path.join(src, top), path.join(outbox, top));

  await rx.waitFor((l) => l.filter((x) => x.startsWith('RECEIVED ')).length === 20, 30_000, 'all 20 at the TOX receiver');
  assert.deepEqual(await hashTree(target), byBase, 'byte-identical, flattened to base names');
  // A handshake or key exchange first would have made the TOX receiver drop the connection.
  assert.deepEqual(rx.lines.filter((l) => !l.line.startsWith('RECEIVED ')), []);
  await waitUntil(async () => (await listFiles(outbox)).every((r) => r.startsWith('sent/')), 10_000, () => 'outbox archived');
  assert.deepEqual(await listFiles(path.join(outbox, 'sent')), [...expected.keys()].sort(), 'archived with their subpaths');
  assert.equal(agent.snapshot().active.length, 0);
  const done = agent.snapshot().recent.filter((j) => j.state === 'done' && j.peer === 'oldbox');
  assert.equal(done.length, 20);
  assert.ok(done.every((j) => j.target === path.posix.basename(j.file)));
  assert.equal(log.records.filter((r) => r.level === 'error').length, 0, logText(log));
});

test('agent → TOX receiver: the first bytes are the TOX header (no key, no handshake); the file leaves the outbox only after {"success": true}', async () => {
  const dir = await root('tdx-leg-hold-');
  const hold = await holdReceiver();
  const { cfg, outbox } = await senderAgent(path.join(dir, 'render'), hold.port);
  const { agent, log } = await start(cfg);
  const rel = 'deep/er/clip.bin';
  await writeSeeded(path.join(outbox, rel), 300_001);
  const want = await fs.readFile(path.join(outbox, rel));

  await waitUntil(() => hold.requests.length === 1, 10_000, () => 'the agent sends the file');
  const r1 = hold.requests[0]!;
  const header = encodeLegacyHeader({ file_name: 'clip.bin', 'content-length': base64MimeLength(want.length) });
  assert.deepEqual(r1.raw.subarray(0, header.length), header, 'the connection starts with the exact TOX header');
  assert.deepEqual(r1.data, want);

  // All bytes are at the receiver but no answer yet: the file must stay where it is. A stated
  // window (no later event exists while the receiver is silent): 2 s, ample for an agent that
  // wrongly archived on the last byte to have done so.
  await quietWindow(2000);
  assert.deepEqual(await listFiles(outbox), [rel]);
  assert.equal(agent.snapshot().active[0]?.state, 'sending');

  // An explicit refusal: still stays, and is sent again later.
  r1.reply(false, 'disk full');
  await waitUntil(() => hold.requests.length === 2, 10_000, () => 'retried after success: false');
  assert.deepEqual(await listFiles(outbox), [rel]);
  assert.match(logText(log), /refused "clip\.bin": disk full/);
  // It answered: the receiver is reachable, the refusal concerns this file only.
  assert.notEqual(agent.snapshot().peers.find((p) => p.name === 'oldbox')?.state, 'unreachable');
  assert.doesNotMatch(logText(log), /oldbox unreachable/);

  hold.requests[1]!.reply(true);
  await waitUntil(async () => (await listFiles(outbox)).join() === `sent/${rel}`, 10_000, () => 'archived after success: true');
  // A later file's request comes next: a resend of the confirmed one would have come before it.
  await writeSeeded(path.join(outbox, 'later.bin'), 10);
  await waitUntil(() => hold.requests.length >= 3, 10_000, () => 'the later file sent');
  assert.ok(hold.requests[2]!.raw.includes(Buffer.from('later.bin')), 'not sent again once confirmed');
  hold.requests[2]!.reply(true);
});

test('agent → TOX receiver with flatten: false and a missing folder there: dropped connection, retried with backoff, the log names the cause; arrives once the folder exists', async () => {
  const dir = await root('tdx-leg-nf-');
  const target = path.join(dir, 'tox-target');
  await fs.mkdir(target);
  const rx = await toxReceiver(target);
  const { cfg, outbox } = await senderAgent(path.join(dir, 'render'), rx.port, { flatten: false });
  const { agent, log } = await start(cfg);
  const rel = 'sub/deep.bin';
  await writeSeeded(path.join(outbox, rel), 70_000);
  const want = await sha256File(path.join(outbox, rel));

  await rx.waitFor((l) => l.filter((x) => x.startsWith('DROPPED sub/deep.bin')).length >= 4, 20_000, 'four dropped attempts');
  // How the retries are spaced is checked on the agent's clock in test/transfer/backoff.test.ts:
  // arrival gaps of the receiver's lines here are bunched when this machine is loaded.
  assert.deepEqual(await listFiles(outbox), [rel], 'the file stays in the outbox');
  const job = agent.snapshot().active.find((j) => j.file === rel);
  assert.ok(job && job.attempts >= 4, `job still pending with several attempts: ${JSON.stringify(job)}`);
  assert.equal(job.target, 'sub/deep.bin');
  const text = logText(log);
  assert.match(text, /oldbox unreachable: .*closed the connection without answering for sub\/deep\.bin: the TOX receiver drops the connection when a folder in the file name does not exist/);

  await fs.mkdir(path.join(target, 'sub'));
  await rx.waitFor((l) => l.some((x) => x.startsWith('RECEIVED sub/deep.bin')), 10_000, 'arrives once the folder exists');
  assert.equal(await sha256File(path.join(target, 'sub', 'deep.bin')), want);
  await waitUntil(async () => (await listFiles(outbox)).join() === `sent/${rel}`, 10_000, () => 'archived');
});

// ---------------------------------------------------------------- 3. mixing

test('one outbox to a tdxfer agent and a TOX receiver: both get every file; archived only once both confirmed', async () => {
  const dir = await root('tdx-leg-mix-');
  const bCfg = await writeAgentConfig({ name: 'playback', dir: path.join(dir, 'playback'), port: 0 });
  const { agent: b } = await start(bCfg);
  const pb = b.listenAddress.port;
  // Named in the sender's config while nothing listens there yet (the TOX machine is "off"):
  // reserved, so no other process can take it before the TOX receiver below does.
  const legacyPort = await reservedPort();
  const { cfg, outbox } = await senderAgent(path.join(dir, 'render'), legacyPort, {
    extraRoutes: [{ peer: 'playback', inbox: 'renders' }],
    extraPeers: [{ name: 'playback', host: '127.0.0.1', port: pb }],
  });
  const { agent: a, log } = await start(cfg);
  const files = ['mix/one.bin', 'two.bin', 'a/b/three.bin'];
  for (const rel of files) await writeSeeded(path.join(outbox, rel), randInt(1, 200_000));
  const expected = await hashTree(outbox);
  const inboxB = path.join(dir, 'playback', 'inbox');

  await waitUntil(async () => (await listFiles(inboxB)).length === files.length, 10_000, () => 'the tdxfer agent has them');
  assert.deepEqual(await hashTree(inboxB), expected, 'tdxfer keeps subpaths');
  // The TOX side is down: nothing may leave the outbox yet. Proof by event: the agent has
  // tried it and failed (logged), and the files are still pending.
  await waitUntil(() => /oldbox unreachable: .*cannot connect to legacy receiver/.test(logText(log)), 10_000, () => 'the TOX side tried and found down');
  assert.deepEqual(await listFiles(outbox), [...expected.keys()].sort());
  assert.equal(a.snapshot().active.filter((j) => j.peer === 'oldbox' && j.state !== 'done').length, files.length);
  assert.match(logText(log), /oldbox unreachable: .*cannot connect to legacy receiver/);

  const target = path.join(dir, 'tox-target');
  await fs.mkdir(target);
  const rx = await toxReceiver(target, legacyPort);
  await rx.waitFor((l) => l.filter((x) => x.startsWith('RECEIVED ')).length === files.length, 15_000, 'the TOX receiver gets them');
  assert.deepEqual(await hashTree(target), new Map([...expected].map(([rel, h]) => [path.posix.basename(rel), h])));
  await waitUntil(async () => (await listFiles(outbox)).every((r) => r.startsWith('sent/')), 10_000, () => 'archived once both confirmed');
  assert.deepEqual(await listFiles(path.join(outbox, 'sent')), [...expected.keys()].sort());
  // Archived means confirmed by both: nothing is in flight any more.
  await waitUntil(() => a.snapshot().active.length === 0, 10_000, () => 'no job left');
  assert.equal(b.snapshot().received.length, files.length, 'the tdxfer agent got each file once');
  assert.equal(rx.lines.length, files.length, 'the TOX receiver got each file once');
});

// ---------------------------------------------------------------- 4. hostile input at the agent's legacy port

test('legacy port: truncated and malformed requests get success false or a closed connection, nothing partial lands; hostile names are confined', async () => {
  const dir = await root('tdx-leg-bad-');
  const agentDir = path.join(dir, 'agent');
  const cfg = await writeAgentConfig({
    name: 'playback',
    dir: agentDir,
    port: 0,
    extra: {
      legacy: { listen: { host: '127.0.0.1', port: 0 }, inbox: 'renders', allow: ['127.0.0.0/8'], maxFileBytes: 1024 * 1024 },
      limits: { idleTimeoutMs: 1500, handshakeTimeoutMs: 1500 },
    },
  });
  const { log } = await start(cfg);
  const legacyPort = legacyPortOf(log);
  const inbox = path.join(agentDir, 'inbox');
  // Where the inbox put its partial files: its `inbox "renders" ready` line says.
  const ready = log.records.find((r) => r.msg === 'inbox "renders" ready');
  assert.ok(typeof ready?.fields.staging === 'string', logText(log));
  const staging = ready.fields.staging;
  const nothingKept = async (what: string): Promise<void> => {
    assert.deepEqual(await listFiles(inbox), [], `${what}: inbox stays empty`);
    // The agent may still be deleting its staging file when the client sees the close.
    await waitUntil(async () => (await listFiles(staging)).length === 0, 3000, () => `${what}: no staging leftovers in ${staging}`);
  };
  const hdr = (file_name: string, len: number, over: Record<string, unknown> = {}): Buffer =>
    frameJson(JSON.stringify({ byteorder: 'little', 'content-type': 'file', 'content-encoding': 'base64', file_name, 'content-length': len, ...over }));
  const b64 = Buffer.from(Buffer.alloc(300, 7).toString('base64'));

  const cases: Array<{ name: string; parts: Array<Buffer | number>; end?: boolean }> = [
    { name: 'payload cut short, then closed', parts: [hdr('cut.bin', b64.length), b64.subarray(0, 150)] },
    { name: 'header cut short, then closed', parts: [hdr('cut2.bin', 10).subarray(0, 20)] },
    { name: 'header not JSON', parts: [frameJson('hello there')] },
    { name: 'header JSON but not a TOX header', parts: [hdr('x.bin', 4, { 'content-type': 'text/json' }), Buffer.from('AAAA')] },
    { name: 'zero-length header', parts: [Buffer.from([0, 0])] },
    { name: 'not base64', parts: [hdr('bad.bin', 8), Buffer.from('!!!!****')] },
    { name: 'data after base64 padding', parts: [hdr('pad.bin', 8), Buffer.from('QQ==QUFB')] },
    { name: 'content-length over legacy.maxFileBytes', parts: [hdr('huge.bin', 10 * 1024 * 1024)], end: false },
    { name: 'negative content-length', parts: [hdr('neg.bin', -1)] },
  ];
  for (const c of cases) {
    const r = await rawLegacy(legacyPort, c.parts, { end: c.end ?? true, timeoutMs: 5000 });
    assert.ok(r.closedByPeer, `${c.name}: the agent closes the connection`);
    assert.ok(r.answer === null || r.answer.success === false, `${c.name}: answer ${JSON.stringify(r.answer)} (raw ${JSON.stringify(r.bytes.toString('latin1'))})`);
    if (r.answer) assert.ok(r.answer.error && r.answer.error.length > 0, `${c.name}: a false answer carries a reason`);
    await nothingKept(c.name);
  }
  // A sender that stops mid-payload and stays silent is dropped after limits.idleTimeoutMs.
  const stalled = await rawLegacy(legacyPort, [hdr('stall.bin', b64.length), b64.subarray(0, 100)], { end: false, timeoutMs: 60_000 });
  assert.ok(stalled.closedByPeer && stalled.answer?.success !== true, `stalled sender dropped: ${JSON.stringify(stalled)}`);
  assert.ok(stalled.ms >= 1200, `dropped by the idle timeout (${stalled.ms} ms)`);
  await nothingKept('stalled sender');

  // Hostile names from a real TOX sender: refused or kept inside the inbox, never outside.
  const payload = path.join(dir, 'payload.bin');
  await writeSeeded(payload, 1234);
  const absTarget = path.join(dir, 'abs-escape.bin');
  const names = ['../../x.bin', 'a/../../y.bin', absTarget, '..\\..\\w.bin', 'sub/ok.bin'];
  const run = await runPeer('tox_sender.py', ['--port', String(legacyPort), ...names.map((n) => `${payload}=${n}`)]);
  const outcome = new Map(run.lines.map((l) => [l.split(' ')[1]!, l.split(' ')[0]!]));
  for (const n of names.slice(0, 4)) assert.equal(outcome.get(n), 'FAIL', `${n}: refused (${run.lines.join(' | ')})`);
  assert.equal(outcome.get('sub/ok.bin'), 'OK', run.lines.join(' | '));
  assert.deepEqual(await listFiles(inbox), ['sub/ok.bin']);
  // Everything under the test folder except the agent's own state: no escaped copy anywhere.
  assert.deepEqual((await listFiles(dir)).filter((f) => !f.startsWith('agent/data/')), ['agent/config.json', 'agent/inbox/sub/ok.bin', 'payload.bin']);
  assert.equal(existsSync(absTarget), false);
  assert.equal(existsSync(path.resolve(inbox, '../../x.bin')), false);
  for (const n of names.slice(0, 4)) {
    const rec = log.records.find((r) => r.msg === 'legacy file failed, nothing kept' && r.fields.file === n);
    assert.ok(rec, `a log line names the refused file ${n}:\n${logText(log)}`);
    assert.match(String(rec.fields.reason), /refuses the file name .*(contains a ".." component|is absolute)/);
    assert.equal(rec.fields.source, '127.0.0.1');
  }
  assert.deepEqual(await listFiles(staging), [], 'no staging leftovers after refused names');

  // Still serving: a bad peer killed only its own connection.
  const good = await runPeer('tox_sender.py', ['--port', String(legacyPort), payload]);
  assert.deepEqual(good.lines, ['OK payload.bin']);
  assert.equal(await sha256File(path.join(inbox, 'payload.bin')), await sha256File(payload));
});

test('legacy.allow refuses other sources with a log line; without a legacy block there is no legacy listener', async () => {
  const dir = await root('tdx-leg-allow-');
  // Reserved: after the restart without a legacy block, nothing may listen there, and no
  // other process can have taken it meanwhile.
  const legacyPort = await reservedPort();
  const agentDir = path.join(dir, 'agent');
  const legacy = { listen: { host: '127.0.0.1', port: legacyPort }, inbox: 'renders', allow: ['192.0.2.0/24', '10.1.2.3'] };
  const cfg = await writeAgentConfig({ name: 'playback', dir: agentDir, port: 0, extra: { legacy } });
  const payload = path.join(dir, 'payload.bin');
  await writeSeeded(payload, 5000);
  const inbox = path.join(agentDir, 'inbox');

  let { agent, log } = await start(cfg);
  const refused = await runPeer('tox_sender.py', ['--port', String(legacyPort), '--timeout', '5', payload]);
  assert.equal(refused.code, 1);
  assert.match(refused.lines[0] ?? '', /^FAIL payload\.bin/);
  assert.deepEqual(await listFiles(inbox), []);
  const line = log.records.find((r) => r.msg.startsWith('legacy connection refused: source address not in legacy.allow'));
  assert.ok(line, logText(log));
  assert.equal(line.fields.source, '127.0.0.1');
  assert.equal(line.level, 'warn');
  await agent.stop(2000);

  // Same config, legacy block removed: the would-be port is closed, the tdxfer port does not speak TOX.
  const raw = JSON.parse(await fs.readFile(cfg, 'utf8')) as Record<string, unknown>;
  delete raw.legacy;
  await fs.writeFile(cfg, JSON.stringify(raw, null, 2));
  const restarted = await start(cfg);
  ({ agent, log } = restarted);
  assert.equal(restarted.config.legacy.listen, null);
  const err = await new Promise<NodeJS.ErrnoException | null>((resolve) => {
    const s = net.connect({ host: '127.0.0.1', port: legacyPort });
    s.once('connect', () => {
      s.destroy();
      resolve(null);
    });
    s.once('error', (e) => resolve(e));
  });
  assert.equal(err?.code, 'ECONNREFUSED', 'nothing listens on the legacy port');
  const toMain = await runPeer('tox_sender.py', ['--port', String(agent.listenAddress.port), '--timeout', '5', payload]);
  assert.match(toMain.lines[0] ?? '', /^FAIL payload\.bin/, 'the tdxfer port does not accept TOX requests');
  assert.deepEqual(await listFiles(inbox), []);
  assert.doesNotMatch(logText(log), /legacy TOX listener/);
});

// ---------------------------------------------------------------- 5. config check

test('tdxfer config check: legacy block errors name the field; a legacy peer route without inbox is valid', async () => {
  const dir = await root('tdx-leg-cfg-');
  const base = {
    name: 'render',
    listen: { host: '127.0.0.1', port: 7770 },
    dataDir: 'data',
    inboxes: [{ name: 'renders', path: 'inbox' }],
    security: { key: Buffer.alloc(32, 1).toString('base64') },
    status: { enabled: false },
  };
  const write = async (name: string, extra: Record<string, unknown>): Promise<string> => {
    const f = path.join(dir, name);
    await fs.writeFile(f, JSON.stringify({ ...base, ...extra }, null, 2));
    return f;
  };

  const [bad, noInbox, badAllowHost, good] = await Promise.all([
    write('bad.json', { legacy: { listen: { host: '127.0.0.1', port: 7000 }, inbox: 'render', allow: ['10.0.0.0/33', '10.0.0.1'] } }),
    write('noinbox.json', { legacy: { listen: { host: '127.0.0.1', port: 7000 } } }),
    write('badhost.json', { legacy: { listen: { host: '127.0.0.1', port: 7000 }, inbox: 'renders', allow: ['tox-pc.local'] } }),
    write('good.json', {
      legacy: { listen: { host: '127.0.0.1', port: 7000 }, inbox: 'renders', allow: ['10.0.0.0/24'] },
      peers: [{ name: 'oldbox', host: '127.0.0.1', port: 7001, protocol: 'legacy' }],
      outboxes: [{ path: 'outbox', to: [{ peer: 'oldbox' }] }],
    }),
  ]);
  const check = (f: string) => runCli(['config', 'check', '--config', f]);
  const [rBad, rNoInbox, rBadHost, rGood] = await Promise.all([check(bad), check(noInbox), check(badAllowHost), check(good)]);

  assert.equal(rBad.code, 2, rBad.out);
  assert.match(rBad.stderr, /`legacy\.allow\[0\]` is "10\.0\.0\.0\/33", not an IP address or CIDR/);
  assert.doesNotMatch(rBad.stderr, /legacy\.allow\[1\]/);
  assert.match(rBad.stderr, /`legacy\.inbox` is "render", which is not an inbox of this agent; did you mean "renders"\?/);

  assert.equal(rNoInbox.code, 2, rNoInbox.out);
  assert.match(rNoInbox.stderr, /`legacy\.inbox` is missing: `legacy\.listen` is set/);

  assert.equal(rBadHost.code, 2, rBadHost.out);
  assert.match(rBadHost.stderr, /`legacy\.allow\[0\]` is "tox-pc\.local"/);

  assert.equal(rGood.code, 0, rGood.out);
  assert.match(rGood.stdout, /TOX receiver on 127\.0\.0\.1:7000 into inbox renders \(from 10\.0\.0\.0\/24\)/);
});
