/**
 * Fan-out (issue #19): one sender, three receivers, real agents and sockets on loopback.
 * A file going to every receiver is read from disk and hashed once per algorithm (one
 * receiver speaks SHA-256 only, as an older peer would); a receiver that stops reading
 * (a proxy holding its bytes) never stalls the others, and gets every file once it reads
 * again. Every file lands at every receiver exactly once, with the right content.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import path from 'node:path';
import { Agent } from '../../src/agent/agent.js';
import { loadConfig } from '../../src/config/load.js';
import { SendSources } from '../../src/transfer/sources.js';
import { newSendSources } from '../../src/agent/shared.js';
import { TEST_KEY, hashTree, listFiles, tempDir, waitUntil, writeAgentConfig, writeRandomFile, verboseLogger } from '../helpers/agents.js';
import { FaultProxy } from '../helpers/proxy.js';

const MiB = 1024 * 1024;
const cleanup: Array<() => Promise<unknown>> = [];
after(async () => {
  for (const c of cleanup.reverse()) await c().catch(() => undefined);
});

/** The agent, and the sources of outgoing bytes it was handed (the test's own when `sources` is given). */
async function start(cfgFile: string, sources?: (chunkBytes: number) => SendSources): Promise<{ agent: Agent; sources: SendSources }> {
  const log = verboseLogger();
  const cfg = await loadConfig(cfgFile, { createKey: true, log });
  const own = sources ? sources(cfg.transfer.chunkBytes) : newSendSources(cfg, log);
  const agent = await Agent.start(cfg, { log, sources: own });
  cleanup.push(() => agent.stop(2000));
  return { agent, sources: own };
}

/** Writes the load outside the outbox: big streamed files, medium ones, small eager ones, an empty one. */
async function writeLoad(src: string): Promise<number> {
  const files: Array<[string, number]> = [
    ['movie/take1.mov', 20 * MiB + 123],
    ['movie/take2.mov', 3 * MiB],
    ['stills/empty.png', 0],
  ];
  for (let i = 0; i < 24; i++) files.push([`stills/s${String(i).padStart(2, '0')}.png`, 1000 + i * 20_000]);
  let total = 0;
  for (const [rel, size] of files) {
    await writeRandomFile(path.join(src, rel), size);
    total += size;
  }
  return total;
}

/** A sender with its outbox sending to all three receivers (static peers; "*" needs discovery, kept off here). */
async function fanout(opts: { stallLast?: boolean; sources?: (chunkBytes: number) => SendSources }) {
  const root = await tempDir('tdx-fanout-');
  cleanup.push(() => fs.rm(root, { recursive: true, force: true }));
  // Long idle timeouts: a held connection stays held (no ping cuts it) until the test lets it go.
  const limits = { idleTimeoutMs: 120_000, handshakeTimeoutMs: 10_000 };
  const receivers: Array<{ name: string; agent: Agent; inbox: string; port: number }> = [];
  for (const [i, name] of ['play1', 'play2', 'play3'].entries()) {
    // play2 speaks SHA-256 only (a peer from before XXH3-128): a second algorithm for the same files.
    const extra = { limits, ...(i === 1 ? { security: { key: TEST_KEY, hashes: ['sha256'] } } : {}) };
    const cfg = await writeAgentConfig({ name, dir: path.join(root, name), port: 0, extra });
    const { agent } = await start(cfg);
    receivers.push({ name, agent, inbox: path.join(root, name, 'inbox'), port: agent.listenAddress.port });
  }
  let proxy: FaultProxy | null = null;
  if (opts.stallLast) {
    // play3's connections carry 256 KiB, then the proxy stops reading: TCP backpressure on the sender.
    proxy = await FaultProxy.start({ port: receivers[2]!.port }, () => ({ stallAfter: 256 * 1024 }));
    cleanup.push(() => proxy!.close());
    receivers[2]!.port = proxy.port;
  }
  const sCfg = await writeAgentConfig({
    name: 'render',
    dir: path.join(root, 'render'),
    port: 0,
    extra: {
      limits,
      outboxes: [{ path: 'outbox', to: receivers.map((r) => ({ peer: r.name, inbox: 'renders' })), after: 'keep', settleMs: 200 }],
      peers: receivers.map((r) => ({ name: r.name, host: '127.0.0.1', port: r.port })),
    },
  });
  const sender = await start(sCfg, opts.sources);
  const src = path.join(root, 'src');
  const total = await writeLoad(src);
  const expected = await hashTree(src);
  await fs.mkdir(path.join(root, 'render', 'outbox'), { recursive: true });
  return { root, sender, receivers, proxy, total, expected, go: () => fs.rename(src, path.join(root, 'render', 'outbox', 'shot')) };
}

/** Every file of the load at this receiver, once (no second copy under another name), with its content. */
async function holdsAll(inbox: string, expected: Map<string, string>): Promise<boolean> {
  const names = await listFiles(path.join(inbox, 'shot'));
  if (names.length < expected.size) return false;
  assert.deepEqual(names, [...expected.keys()], 'exactly the files sent, each once');
  assert.deepEqual(await hashTree(path.join(inbox, 'shot')), expected);
  return true;
}

test('every receiver keeping up: each file is read from disk once and hashed once per algorithm', async () => {
  // A grace far longer than the run: no receiver is dropped from a shared read for being
  // a little late on this loaded machine, so the count below is exact.
  const f = await fanout({ sources: (chunkBytes) => new SendSources({ chunkBytes, log: verboseLogger(), graceMs: 120_000 }) });
  await f.go();
  for (const r of f.receivers) await waitUntil(() => holdsAll(r.inbox, f.expected), 120_000, () => `${r.name} to hold every file`);
  const stats = f.sender.sources.stats;
  assert.equal(stats.read, f.total, 'one read of each file for the three receivers');
  assert.equal(stats.hashed, 2 * f.total, 'each file hashed once in XXH3-128 (play1, play3) and once in SHA-256 (play2)');
  assert.equal(f.sender.sources.reading, 0, 'no shared read left open');
  assert.ok(f.sender.sources.eager.used <= f.sender.sources.eager.budget, 'small files held within the agent-wide budget');
});

test('a receiver that stops reading does not hold the others; it gets every file once it reads again', async () => {
  const f = await fanout({ stallLast: true, sources: (chunkBytes) => new SendSources({ chunkBytes, log: verboseLogger(), graceMs: 200 }) });
  await f.go();
  const [play1, play2, play3] = f.receivers;
  await waitUntil(() => holdsAll(play1!.inbox, f.expected), 120_000, () => 'play1 to hold every file while play3 is held');
  await waitUntil(() => holdsAll(play2!.inbox, f.expected), 120_000, () => 'play2 to hold every file while play3 is held');
  assert.ok(f.proxy!.conns.some((c) => c.stalled), 'play3 was held meanwhile');
  assert.equal(await holdsAll(play3!.inbox, f.expected), false, 'play3 cannot have everything yet');
  // What play3 fell behind on, it reads on its own: at most one more read of the load, never one per file and receiver.
  assert.ok(f.sender.sources.stats.read <= 2 * f.total, `read ${f.sender.sources.stats.read} bytes for a load of ${f.total}`);
  f.proxy!.setPlan(() => ({}));
  f.proxy!.unstall();
  await waitUntil(() => holdsAll(play3!.inbox, f.expected), 120_000, () => 'play3 to hold every file once released');
  // The others got nothing twice meanwhile.
  assert.equal(await holdsAll(play1!.inbox, f.expected), true);
  assert.equal(await holdsAll(play2!.inbox, f.expected), true);
});
