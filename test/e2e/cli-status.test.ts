/**
 * Issue #6 end to end: the `tdxfer status`, `peers` and `doctor` commands (spawned CLI)
 * against agents started with `tdxfer run` (spawned too), and without any agent.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { spawnCli, waitUntil, writeRandomFile, type Spawned } from '../helpers/agents.js';
import { runCli, spawnAgent, writePair, type PairLayout } from './status-helpers.js';
import { reservedPort } from '../helpers/ports.js';
import { EXIT_AFTER_KILL, isWindows } from '../helpers/platform.js';

const cleanup: Array<() => Promise<unknown>> = [];
after(async () => {
  for (const c of cleanup.reverse()) await c().catch(() => undefined);
});

const MB = 1024 * 1024;

async function runAgentCli(cfg: string): Promise<Spawned> {
  const s = await spawnAgent(cfg, 20_000);
  cleanup.push(() => s.stop('SIGTERM'));
  return s;
}

async function dropIn(p: PairLayout, rel: string, size: number): Promise<void> {
  const src = path.join(p.root, 'staging-area', rel);
  await writeRandomFile(src, size);
  await fs.rename(src, path.join(p.outbox, rel));
}

// Sender "render" → relay (8 MB/s) → receiver "playback", both as `tdxfer run` processes.
let p: PairLayout;
let sender: Spawned;
let receiver: Spawned;

before(async () => {
  p = await writePair({ throttleBytesPerSec: 8 * MB });
  cleanup.push(() => p.cleanup());
  // One after the other: the sender's config names the port the receiver got.
  receiver = await runAgentCli(p.receiverCfg);
  sender = await runAgentCli(p.senderCfg);
  await dropIn(p, 'first.png', 123_456);
  await waitUntil(async () => (await fs.stat(path.join(p.inbox, 'first.png')).catch(() => null)) !== null, 15_000, () => `first.png delivered; sender said:\n${sender.output().slice(-2000)}`);
  await waitUntil(async () => (await fs.stat(path.join(p.outbox, 'sent', 'first.png')).catch(() => null)) !== null, 5000, () => 'first.png archived');
});

test('tdxfer status and --json against running agents: health, peers, queues, recent and received', async () => {
  const s = await runCli(['status', '--config', p.senderCfg]);
  assert.equal(s.code, 0, s.out);
  assert.match(s.out, new RegExp(`^render \\(tdxfer \\d+\\.\\d+\\.\\d+\\S*\\) listening 127\\.0\\.0\\.1:\\d+, discovery off, up \\d+:\\d\\d, healthy\\n`));
  assert.match(s.out, new RegExp(`playback +127\\.0\\.0\\.1:${p.relay!.port} +renders +- +up`)); // inboxes as its WELCOME announced them
  assert.match(s.out, /playback\/renders +0 +0 +0 +0/);
  assert.match(s.out, /active: nothing in flight/);
  assert.match(s.out, /✓ first\.png → playback\/renders {2}123 KB/);

  const r = await runCli(['status', '--config', p.receiverCfg]);
  assert.equal(r.code, 0, r.out);
  assert.match(r.out, /^playback \(tdxfer /);
  assert.match(r.out, /↓ renders\/first\.png {2}123 KB from render\n/);

  const j = await runCli(['status', '--json', '--config', p.senderCfg]);
  assert.equal(j.code, 0, j.out);
  const doc = JSON.parse(j.out);
  assert.equal(doc.agent.name, 'render');
  assert.equal(doc.recent[0].file, 'first.png');
  assert.equal(doc.recent[0].state, 'done');
  assert.equal(doc.recent[0].percent, 100);
  assert.deepEqual(doc.active, []);
});

test('tdxfer peers and --json list the peers of a running agent', async () => {
  const t = await runCli(['peers', '--config', p.senderCfg]);
  assert.equal(t.code, 0, t.out);
  const lines = t.out.trimEnd().split('\n');
  assert.match(lines[0]!, /^NAME +ADDRESS +INBOXES +VERSION +STATE +LAST SEEN$/);
  assert.ok(lines.some((l) => /^render \(self\) +127\.0\.0\.1:\d+ +renders +\d+\.\d+\.\d+\S* +up +-$/.test(l)), t.out);
  assert.ok(lines.some((l) => new RegExp(`^playback +127\\.0\\.0\\.1:${p.relay!.port} +renders +- +up +(?:never|\\d+ s ago|\\d+ min ago)$`).test(l)), t.out); // last seen: its last successful connection (minutes ago on a loaded machine)

  const j = await runCli(['peers', '--json', '--config', p.senderCfg]);
  assert.equal(j.code, 0, j.out);
  const peers = JSON.parse(j.out) as Array<{ name: string; source: string; state: string; port: number }>;
  assert.deepEqual(peers.map((x) => [x.name, x.source, x.state]).sort(), [['playback', 'static', 'up'], ['render', 'self', 'up']]);
  assert.equal(peers.find((x) => x.name === 'playback')!.port, p.relay!.port);
});

test('tdxfer status --watch prints live progress of a real transfer and ends with exit 0 on Ctrl-C', async () => {
  const w = spawnCli(['status', '--watch', '--config', p.senderCfg]);
  cleanup.push(() => w.stop('SIGKILL'));
  await w.waitFor(/^render at http:\/\/127\.0\.0\.1:\d+ — peers: (render up, playback up|playback up, render up)\n/m, 15_000);
  // The header is printed once the event stream is open (status --watch opens it first).
  await dropIn(p, 'watch.mov', 16 * MB);
  await w.waitFor(/✓ watch\.mov → playback\/renders {2}16\.8 MB/, 30_000);
  // Windows: kill('SIGINT') terminates (a console's real Ctrl-C is not a kill()): exit code null there.
  assert.equal(await w.stop('SIGINT'), EXIT_AFTER_KILL, w.output());
  const out = w.output();
  const percents = [...out.matchAll(/… watch\.mov → playback\/renders {2}sending {2}(\d+\.\d) %/g)].map((m) => Number(m[1]));
  assert.ok(new Set(percents).size >= 2, `several progress lines while sending:\n${out}`);
  for (let i = 1; i < percents.length; i++) assert.ok(percents[i]! >= percents[i - 1]!, out);
  assert.match(out, /… watch\.mov → playback\/renders {2}sending {2}\d+\.\d % {2}[\d.]+ [KMG]?B\/s {2}ETA \d+:\d\d/);
  assert.equal(out.indexOf('✓ watch.mov'), out.lastIndexOf('✓ watch.mov'), 'the finished job is printed once');
});

test("tdxfer doctor: exit 0 on the config of a healthy running agent; exit 1 naming an uncreatable folder, a missing hook, a taken port and another agent's status port, with fixes", async () => {
  const ok = await runCli(['doctor', '--config', p.senderCfg]);
  assert.equal(ok.code, 0, ok.out);
  assert.match(ok.out, /✓ config: .* is valid \(agent "render"\)/);
  assert.match(ok.out, /✓ transfer port 127\.0\.0\.1:\d+: held by this config's running agent "render"/);
  assert.match(ok.out, /✓ status port 127\.0\.0\.1:\d+: held by this config's running agent "render"/);
  assert.match(ok.out, /✓ outbox 1 \(after: archive\)/);
  assert.match(ok.out, /\nall checks passed\n$/);
  const okB = await runCli(['doctor', '--config', p.receiverCfg]);
  assert.equal(okB.code, 0, okB.out);
  assert.match(okB.out, /✓ inbox "renders": .* exists and is writable/);
  assert.match(okB.out, /✓ inbox "renders" disk: [\d.]+ (GiB|MiB) free/);

  // Broken: an inbox folder cannot be created (a file stands in its way), another one is only missing
  // (`run` creates it), its onReceive command does not exist, another program holds the transfer port
  // and the sender agent ("render") holds the status port.
  const taken = net.createServer((s) => s.destroy());
  await new Promise<void>((r) => taken.listen(0, '127.0.0.1', r));
  cleanup.push(() => new Promise((r) => taken.close(r)));
  const takenPort = (taken.address() as net.AddressInfo).port;
  const dir = path.join(p.root, 'broken');
  await fs.mkdir(dir);
  const cfg = JSON.parse(await fs.readFile(p.receiverCfg, 'utf8'));
  cfg.name = 'broken';
  cfg.listen = { host: '127.0.0.1', port: takenPort };
  const senderCfg = JSON.parse(await fs.readFile(p.senderCfg, 'utf8'));
  cfg.status = { enabled: true, host: '127.0.0.1', port: senderCfg.status.port };
  await fs.writeFile(path.join(dir, 'a-file'), 'x');
  cfg.inboxes = [
    { name: 'renders', path: 'a-file/renders' },
    { name: 'stills', path: 'no-such-inbox', onReceive: { command: ['no-such-hook-command-tdxfer'] } },
  ];
  const file = path.join(dir, 'config.json');
  await fs.writeFile(file, JSON.stringify(cfg, null, 2));
  const bad = await runCli(['doctor', '--config', file]);
  assert.equal(bad.code, 1, bad.out);
  const esc = (x: string): string => x.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  const blocked = path.join(dir, 'a-file', 'renders');
  assert.match(bad.out, new RegExp(`✗ inbox "renders": ${esc(blocked)} does not exist and cannot be created\\n    fix: .*a file stands where a folder is needed`));
  assert.ok(bad.out.includes(`✓ inbox "stills": ${path.join(dir, 'no-such-inbox')} does not exist yet: will be created by \`tdxfer run\``), bad.out);
  assert.match(bad.out, /✗ inbox "stills" onReceive: "no-such-hook-command-tdxfer" was not found on the agent's PATH .*\n {4}fix: use the absolute path/);
  assert.match(bad.out, new RegExp(`✗ transfer port 127\\.0\\.0\\.1:${takenPort}: in use by another program.*\\n    fix: .*change listen\\.port`));
  assert.match(bad.out, new RegExp(`✗ status port 127\\.0\\.0\\.1:${senderCfg.status.port}: held by the running tdxfer agent "render" .*which is not this config's agent`));
  assert.match(bad.out, /\n4 problems to fix\n$/);
});

test('with no agent running, tdxfer status and peers exit 3 with a hint', async () => {
  const port = await reservedPort(); // nothing listens there
  const dir = path.join(p.root, 'idle');
  await fs.mkdir(dir);
  const file = path.join(dir, 'config.json');
  const cfg = JSON.parse(await fs.readFile(p.receiverCfg, 'utf8'));
  cfg.status = { enabled: true, host: '127.0.0.1', port };
  await fs.writeFile(file, JSON.stringify(cfg));
  for (const cmd of [['status'], ['peers', '--json']]) {
    const r = await runCli([...cmd, '--config', file]);
    assert.equal(r.code, 3, `${cmd.join(' ')}: ${r.out}`);
    assert.equal(r.out, `no tdxfer agent answering at http://127.0.0.1:${port} — start it with \`tdxfer run\` or check status.port\n`);
  }
});

// Windows has no SIGTERM (kill() terminates the process there): `tdxfer stop` is its
// graceful stop, asking the agent over its status API.
async function gracefulStop(agent: Spawned, cfg: string): Promise<number | null> {
  if (!isWindows) return agent.stop('SIGTERM');
  const exited = new Promise<number | null>((resolve) => (agent.child.exitCode !== null ? resolve(agent.child.exitCode) : agent.child.once('exit', (c) => resolve(c))));
  const r = await runCli(['stop', '--config', cfg]);
  assert.equal(r.code, 0, r.out);
  return exited;
}

test(`the spawned agents stop cleanly on ${isWindows ? '`tdxfer stop`' : 'SIGTERM'}`, async () => {
  assert.equal(await gracefulStop(sender, p.senderCfg), 0, sender.output().slice(-2000));
  assert.equal(await gracefulStop(receiver, p.receiverCfg), 0, receiver.output().slice(-2000));
  assert.doesNotMatch(sender.output() + receiver.output(), /\b(error|internal error)\b.*status/i);
});

test('tdxfer run warns at start about an onReceive command that does not exist (which inbox, how to fix)', async () => {
  const dir = path.join(p.root, 'hookwarn');
  await fs.mkdir(dir);
  const cfg = JSON.parse(await fs.readFile(p.receiverCfg, 'utf8'));
  cfg.name = 'hookwarn';
  cfg.dataDir = path.join(dir, 'data');
  cfg.listen = { host: '127.0.0.1', port: 0 };
  cfg.status = { enabled: false };
  const hook = path.join(dir, 'hooks', 'notify-td');
  cfg.inboxes = [{ name: 'renders', path: path.join(dir, 'inbox'), onReceive: { command: [hook, '--flag'] } }];
  const file = path.join(dir, 'config.json');
  await fs.writeFile(file, JSON.stringify(cfg, null, 2));
  const s = spawnCli(['run', '--config', file]);
  cleanup.push(() => s.stop('SIGTERM'));
  const esc = hook.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  await s.waitFor(new RegExp(`inbox "renders": its onReceive command cannot start: ${esc} does not exist; fix: install it there or correct onReceive\\.command\\[0\\]`), 20_000);
  await s.stop('SIGTERM');
});
