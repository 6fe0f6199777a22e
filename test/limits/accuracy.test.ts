/**
 * Issue #17, accuracy end to end: real agents (spawned CLI) on loopback, bytes counted by
 * a proxy between sender and receiver. Limits are a few MB/s, far below what even a
 * loaded machine moves over loopback, so the only way to fail is a limiter that lets too
 * much through or starves a transfer. Bounds: no 5 s window above the limit + 10 %, no
 * window of 200 ms above 2x the limit (windows distorted by a stall of the measuring
 * process are skipped), a fair share per peer. A machine loaded far beyond its cores
 * (load average 25 on 2 cores was seen while writing this) can only undershoot, so the
 * lower bound is a generous 75 % ("nobody starves"). Under wine (the Windows lane) only
 * the upper bounds are checked: a sender paces in slices of 1/40 s and may catch up by
 * 1/20 s at most (limits/limiter.ts), and a node.exe under wine, several times slower per
 * slice, carried 40-70 % of the limit at load 20-40 where Linux at load 15 held 95-100 %:
 * that measures the machine. Wine's timers are not Windows' either (about 1 ms there,
 * 15.6 ms on Windows): pacing under a coarse Windows timer is checked on the pure limiter
 * (test/limits/limiter.test.ts). The measured figures are printed as test diagnostics.
 * The status API is called with node:http
 * (src/cli/http-fetch.ts): the global fetch cannot connect under wine.
 */
import { after, describe, test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { httpFetch } from '../../src/cli/http-fetch.js';
import { deadline, underWine } from '../helpers/platform.js';
import { spawnCli, tempDir, waitUntil, writeAgentConfig, writeRandomFile, type Spawned } from '../helpers/agents.js';
import { MeterProxy } from './meter.js';

const MB = 1_000_000;
/** The lower bound, as a share of the limit (see the file header): none under wine, where it would measure the machine. */
const LOWER = underWine ? 0 : 0.75;
const cleanups: Array<() => Promise<unknown>> = [];
after(async () => {
  for (const c of cleanups.reverse()) await c().catch(() => undefined);
});

interface Setup {
  dir: string;
  sender: Spawned;
  statusUrl: string;
  proxies: MeterProxy[];
  receivers: Spawned[];
  outbox: string;
  inboxes: string[];
}

/** `n` receiver agents, each behind its own MeterProxy, and one sender with an outbox routed to all of them. */
async function setup(n: number, senderExtra: Record<string, unknown>, receiverExtra: Record<string, unknown> = {}): Promise<Setup> {
  const dir = await tempDir('tdx-limit-');
  cleanups.push(() => fs.rm(dir, { recursive: true, force: true }));
  const proxies: MeterProxy[] = [];
  const receivers: Spawned[] = [];
  const inboxes: string[] = [];
  const peers: Array<Record<string, unknown>> = [];
  for (let i = 0; i < n; i++) {
    const rdir = path.join(dir, `recv${i}`);
    const cfg = await writeAgentConfig({ name: `recv${i}`, dir: rdir, port: 0, extra: { limits: { idleTimeoutMs: 10_000, handshakeTimeoutMs: 5000, ...((receiverExtra.limits as object) ?? {}) } } });
    const r = spawnCli(['run', '--config', cfg]);
    cleanups.push(() => r.stop());
    receivers.push(r);
    const port = await r.transferPort(30_000);
    const proxy = await MeterProxy.start(port);
    cleanups.push(() => proxy.close());
    proxies.push(proxy);
    inboxes.push(path.join(rdir, 'inbox'));
    peers.push({ name: `recv${i}`, host: '127.0.0.1', port: proxy.port });
  }
  const sdir = path.join(dir, 'sender');
  const outbox = path.join(sdir, 'out');
  const { peers: extraPeers, ...rest } = senderExtra as { peers?: Array<Record<string, unknown>> };
  const cfg = await writeAgentConfig({
    name: 'sender',
    dir: sdir,
    port: 0,
    extra: {
      outboxes: [{ path: 'out', to: peers.map((p) => ({ peer: p.name, inbox: 'renders' })), settleMs: 100, after: 'keep' }],
      peers: peers.map((p, i) => ({ ...p, ...(extraPeers?.[i] ?? {}) })),
      status: { enabled: true, host: '127.0.0.1', port: 0 },
      limits: { idleTimeoutMs: 10_000, handshakeTimeoutMs: 5000 },
      ...rest,
    },
  });
  await fs.mkdir(outbox, { recursive: true });
  const sender = spawnCli(['run', '--config', cfg]);
  cleanups.push(() => sender.stop());
  const statusPort = await sender.statusPort(30_000);
  return { dir, sender, statusUrl: `http://127.0.0.1:${statusPort}`, proxies, receivers, outbox, inboxes };
}

/** Writes files outside the outbox, then moves them in (each appears whole). */
async function drop(s: Setup, files: Array<[string, number]>): Promise<void> {
  const stage = path.join(s.dir, 'stage');
  await fs.mkdir(stage, { recursive: true });
  for (const [name, size] of files) await writeRandomFile(path.join(stage, name), size);
  for (const [name] of files) await fs.rename(path.join(stage, name), path.join(s.outbox, name));
}

async function inboxCount(dir: string): Promise<number> {
  return (await fs.readdir(dir).catch(() => [])).filter((f) => !f.startsWith('.')).length;
}

/** Every 5 s window at most `limit` + 10 % and at least LOWER of it, every unstalled 200 ms window at most 2x. */
function assertHolds(t: TestContext, p: MeterProxy, from: number, to: number, limit: number, what: string): void {
  const five = p.windows(from, to, 5000);
  assert.ok(five.length > 0, `${what}: no full 5 s window between ${from.toFixed(0)} and ${to.toFixed(0)}`);
  const rates = five.map((w) => w.rate / limit);
  t.diagnostic(`${what}: ${five.length} windows of 5 s at ${(Math.min(...rates) * 100).toFixed(1)} % to ${(Math.max(...rates) * 100).toFixed(1)} % of the limit`);
  for (const w of five) {
    assert.ok(w.rate <= limit * 1.1 && w.rate >= limit * LOWER, `${what}: 5 s window at +${((w.at - from) / 1000).toFixed(1)} s carried ${(w.rate / MB).toFixed(3)} MB/s, limit ${(limit / MB).toFixed(3)} MB/s`);
  }
  const short = p.windows(from - 1000, to, 200, 20).filter((w) => !w.stalled);
  assert.ok(short.length > 0, `${what}: every 200 ms window overlapped a stall of the test process`);
  t.diagnostic(`${what}: highest 200 ms window ${((Math.max(...short.map((w) => w.rate)) / limit) * 100).toFixed(0)} % of the limit (${short.length} checked)`);
  for (const w of short) assert.ok(w.rate <= 2 * limit, `${what}: 200 ms burst at ${(w.rate / MB).toFixed(2)} MB/s, more than 2x ${(limit / MB).toFixed(2)} MB/s`);
}

/** httpFetch (node:http), not the global fetch: undici's socket fails to connect under wine (see src/cli/http-fetch.ts). */
async function postLimit(url: string, body: unknown): Promise<Response> {
  return httpFetch(`${url}/limits`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body) });
}

describe('bandwidth limits on loopback (real agents, bytes counted by a proxy)', { timeout: deadline(240_000) }, () => {
  test('one big file: transfer.maxBytesPerSecond holds over 5 s windows, no burst', async (t) => {
    const limit = 3 * MB;
    const s = await setup(1, { transfer: { maxBytesPerSecond: limit, retryInitialMs: 100, retryMaxMs: 1000 } });
    const size = 24 * MB;
    await drop(s, [['big.bin', size]]);
    const p = s.proxies[0]!;
    await waitUntil(async () => (await inboxCount(s.inboxes[0]!)) === 1, 90_000, () => `big.bin at the receiver (${p.total} bytes through)`);
    const first = p.timeAt(1)!;
    const last = p.timeAt(size)!;
    assertHolds(t, p, first + 500, last - 200, limit, 'one big file');
    assert.equal((await fs.stat(path.join(s.inboxes[0]!, 'big.bin'))).size, size);
  });

  test('many small files: framing and per-file overhead stay inside the limit', async (t) => {
    // Under wine 200 files at 1 MB/s: still over 6 s at the limit, at a third of the cost.
    const limit = underWine ? 1 * MB : 2 * MB;
    // A deep window: the receiver's fsync per landing batch (a shared, busy disk) must not be what limits the rate.
    const s = await setup(1, { transfer: { maxBytesPerSecond: limit, window: 256, retryInitialMs: 100, retryMaxMs: 1000 } });
    const files: Array<[string, number]> = Array.from({ length: underWine ? 200 : 500 }, (_, i) => [`f${String(i).padStart(4, '0')}.bin`, 32 * 1024]);
    await drop(s, files);
    const p = s.proxies[0]!;
    await waitUntil(async () => (await inboxCount(s.inboxes[0]!)) === files.length, 90_000, () => `${files.length} files at the receiver (${p.total} bytes through)`);
    const first = p.timeAt(1)!;
    const last = p.timeAt(p.total - 64 * 1024)!;
    assertHolds(t, p, first + 500, last, limit, 'many small files');
  });

  test('three peers share the agent-wide limit fairly; a per-peer cap holds inside it', async (t) => {
    const limit = 3 * MB;
    const s = await setup(3, { transfer: { maxBytesPerSecond: limit, retryInitialMs: 100, retryMaxMs: 1000 }, peers: [{}, {}, { maxBytesPerSecond: 500_000 }] });
    const size = 12 * MB;
    await drop(s, [['shared.bin', size]]);
    await waitUntil(() => s.proxies.every((p) => p.total > 0), 30_000, () => 'all three peers receiving');
    // A common 5 s span while all three are busy (peer 2 at 0.5 MB/s needs 24 s for the file).
    const start = Math.max(...s.proxies.map((p) => p.timeAt(1)!)) + 1000;
    await waitUntil(() => performance.now() > start + 5000, 60_000);
    const rates = s.proxies.map((p) => p.bytesIn(start, start + 5000) / 5);
    const total = rates.reduce((a, b) => a + b, 0);
    const detail = rates.map((r) => (r / MB).toFixed(3)).join(', ');
    // Lower bounds and shares only when this process did not stall in the span (see the file header).
    t.diagnostic(`three peers over 5 s: ${detail} MB/s`);
    assert.ok(total <= limit * 1.1 && total >= limit * LOWER, `all peers together ${(total / MB).toFixed(3)} MB/s (${detail}), limit 3 MB/s`);
    assert.ok(rates[2]! <= 500_000 * 1.1 && rates[2]! >= 500_000 * LOWER, `capped peer got ${detail}`);
    // The other two share the rest (2.5 MB/s) evenly; under wine, evenly whatever they got together.
    const share = underWine ? (rates[0]! + rates[1]!) / 2 : 1_250_000;
    for (const i of [0, 1]) assert.ok(Math.abs(rates[i]! - share) <= share * 0.15, `uncapped peer ${i}: ${detail} MB/s, fair share ${(share / MB).toFixed(3)}`);
  });

  test('a lowered limit takes effect on a file in flight within a second; 0 restores full speed', async (t) => {
    const s = await setup(1, { transfer: { maxBytesPerSecond: 6 * MB, retryInitialMs: 100, retryMaxMs: 1000 } });
    const size = 48 * MB;
    await drop(s, [['long.bin', size]]);
    const p = s.proxies[0]!;
    await waitUntil(() => p.total > 6 * MB, 60_000, () => `first 6 MB (${p.total})`);
    const r1 = await postLimit(s.statusUrl, { rate: '8Mbit/s' }); // 1 MB/s
    assert.equal(r1.status, 200, await r1.clone().text());
    const changed = performance.now();
    assert.equal(((await r1.json()) as { outgoing: { maxBytesPerSecond: number } }).outgoing.maxBytesPerSecond, 1 * MB);
    await waitUntil(() => performance.now() > changed + 6500, 60_000);
    assertHolds(t, p, changed + 1000, changed + 6500, 1 * MB, 'after lowering to 1 MB/s');
    // Status, CLI and metrics show it while it runs.
    const status = (await (await httpFetch(`${s.statusUrl}/status`)).json()) as { limits: { outgoing: { maxBytesPerSecond: number; bytesPerSecond: number } } };
    assert.equal(status.limits.outgoing.maxBytesPerSecond, 1 * MB);
    assert.ok(status.limits.outgoing.bytesPerSecond > 0 && status.limits.outgoing.bytesPerSecond <= 1 * MB * 1.5, JSON.stringify(status.limits));
    const metrics = await (await httpFetch(`${s.statusUrl}/metrics`)).text();
    assert.match(metrics, /tdxfer_limit_bytes_per_second\{direction="outgoing",peer=""\} 1000000/);
    assert.match(metrics, /tdxfer_rate_bytes_per_second\{direction="outgoing",peer=""\} [1-9]/);
    // 0 lifts it: the rest goes unthrottled; at 1 MB/s it would need its size in MB seconds.
    const r2 = await postLimit(s.statusUrl, { rate: 0 });
    assert.equal(r2.status, 200);
    const off = performance.now();
    const left = size - p.total;
    assert.ok(left > 10 * MB, `still ${left} bytes to go when the limit was lifted`);
    await waitUntil(async () => (await inboxCount(s.inboxes[0]!)) === 1, 60_000);
    const took = (p.timeAt(size)! - off) / 1000;
    t.diagnostic(`after the limit went to 0, the last ${(left / MB).toFixed(1)} MB took ${took.toFixed(2)} s`);
    assert.ok(took < left / MB / 2, `the last ${(left / MB).toFixed(1)} MB took ${took.toFixed(1)} s after the limit went to 0: still throttled?`);
    // The CLI: `tdxfer limit RATE --peer NAME` against the running agent, then `limit` shows it.
    const code = (c: Spawned): Promise<number | null> => new Promise((resolve) => (c.child.exitCode !== null ? resolve(c.child.exitCode) : c.child.once('exit', resolve)));
    const set = spawnCli(['limit', '160Mbit/s', '--peer', 'recv0', '--url', s.statusUrl]);
    assert.equal(await code(set), 0, set.output());
    assert.match(set.output(), /to recv0: limit 20\.0 MB\/s \(160 Mbit\/s\)/);
    const bad = spawnCli(['limit', '20Mb/s', '--url', s.statusUrl]);
    assert.equal(await code(bad), 2);
    assert.match(bad.output(), /ambiguous/);
    const show = spawnCli(['status', '--url', s.statusUrl]);
    assert.equal(await code(show), 0, show.output());
    assert.match(show.output(), /bandwidth:\n {2}outgoing \(all peers\): limit unlimited/);
    assert.match(show.output(), /to recv0: limit 20\.0 MB\/s/);
  });

  test('limits.maxIncomingBytesPerSecond: the receiver reads less and the unlimited sender slows down', async (t) => {
    const limit = 3 * MB;
    const s = await setup(1, { transfer: { retryInitialMs: 100, retryMaxMs: 1000 } }, { limits: { maxIncomingBytesPerSecond: limit } });
    const size = 30 * MB;
    await drop(s, [['in.bin', size]]);
    const p = s.proxies[0]!;
    await waitUntil(async () => (await inboxCount(s.inboxes[0]!)) === 1, 90_000, () => `in.bin at the receiver (${p.total} through)`);
    // The kernel's socket buffers take a few MB at full speed before backpressure reaches
    // the sender: measure from 2 s in, 5 s windows only.
    const first = p.timeAt(1)!;
    const last = p.timeAt(size)!;
    const five = p.windows(first + 2000, last, 5000);
    assert.ok(five.length > 0, 'transfer too short to measure');
    t.diagnostic(`incoming: 5 s windows at ${five.map((w) => ((w.rate / limit) * 100).toFixed(0)).join(' ')} % of the limit`);
    for (const w of five) assert.ok(w.rate <= limit * 1.1 && w.rate >= limit * LOWER, `5 s window at ${(w.rate / MB).toFixed(3)} MB/s, incoming limit 3 MB/s`);
    assert.equal((await fs.stat(path.join(s.inboxes[0]!, 'in.bin'))).size, size);
  });
});
