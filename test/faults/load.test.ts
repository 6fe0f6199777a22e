/**
 * Load: four sending agents push hundreds of small files each plus a few larger ones
 * into ONE receiver (the real CLI, its own process) at the same time. Everything
 * arrives with equal hashes, nothing else is in the inbox, and the receiver's memory
 * (VmRSS sampled from /proc) stays under a ceiling.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import path from 'node:path';
import { createCipheriv, createHash } from 'node:crypto';
import type { Agent } from '../../src/agent/agent.js';
import { memoryLogger } from '../../src/log.js';
import {
  hashTree, listFiles, spawnCli, startAgent, tempDir, waitUntil, writeAgentConfig,
} from '../helpers/agents.js';
import { reservedPort } from '../helpers/ports.js';

const SENDERS = 4;
const SMALL_PER_SENDER = 250;
const LARGE_PER_SENDER = 2;
const LARGE_BYTES = 16 * 1024 * 1024;
const RSS_CEILING_MB = 250;
const SEED = Number(process.env.TDX_SEED ?? Date.now() % 100000);

const cleanup: Array<() => Promise<unknown>> = [];
after(async () => {
  for (const c of cleanup.reverse()) await c().catch(() => undefined);
});

/** Deterministic bytes from (seed, name): a failing run can be replayed with TDX_SEED. */
function bytesFor(name: string, size: number): Buffer {
  const key = createHash('sha256').update(`${SEED}:${name}`).digest();
  const c = createCipheriv('aes-256-ctr', key, Buffer.alloc(16));
  return Buffer.concat([c.update(Buffer.alloc(size)), c.final()]);
}

async function vmRssMb(pid: number): Promise<number> {
  const s = await fs.readFile(`/proc/${pid}/status`, 'utf8');
  const m = /VmRSS:\s+(\d+) kB/.exec(s);
  if (!m) throw new Error(`no VmRSS in /proc/${pid}/status`);
  return Number(m[1]) / 1024;
}

test(`${SENDERS} senders × (${SMALL_PER_SENDER} small + ${LARGE_PER_SENDER} × ${LARGE_BYTES >> 20} MiB) into one receiver: all arrive intact, receiver RSS < ${RSS_CEILING_MB} MB`, { skip: process.platform !== 'linux' ? 'reads /proc/<pid>/status (Linux only)' : false }, async () => {
  console.log(`load.test seed=${SEED} (replay with TDX_SEED=${SEED})`);
  const root = await tempDir('tdx-load-');
  cleanup.push(() => fs.rm(root, { recursive: true, force: true }));
  // reservedPort: the receiver logs at warn only (its load stays the subject), so it prints no
  // "listening for transfers" line to read a port 0 back from.
  const rPort = await reservedPort();
  const rCfg = await writeAgentConfig({
    name: 'playback', dir: path.join(root, 'receiver'), port: rPort,
    extra: { log: { level: 'warn', file: null }, limits: { idleTimeoutMs: 15_000, handshakeTimeoutMs: 5000 } },
  });
  const receiver = spawnCli(['run', '--config', rCfg]);
  cleanup.push(() => receiver.stop());
  await waitUntil(async () => (await fs.stat(path.join(root, 'receiver', 'inbox')).catch(() => null)) !== null, 15_000, () => `receiver started:\n${receiver.output()}`);
  const inbox = path.join(root, 'receiver', 'inbox');
  const pid = receiver.child.pid!;

  // Build every sender's files outside its outbox first.
  const expected = new Map<string, string>();
  const senders: Array<{ cfg: string; outbox: string; staged: string }> = [];
  for (let s = 0; s < SENDERS; s++) {
    const dir = path.join(root, `sender${s}`);
    const staged = path.join(dir, 'staged', `s${s}`);
    for (let i = 0; i < SMALL_PER_SENDER; i++) {
      const rel = `s${s}/shot${i % 4}/f.${String(i).padStart(4, '0')}.png`;
      const data = bytesFor(rel, 1 + ((i * 7919 + s * 104729 + SEED) % (48 * 1024)));
      await fs.mkdir(path.join(dir, 'staged', path.dirname(rel)), { recursive: true });
      await fs.writeFile(path.join(dir, 'staged', rel), data);
      expected.set(rel, createHash('sha256').update(data).digest('hex'));
    }
    for (let i = 0; i < LARGE_PER_SENDER; i++) {
      const rel = `s${s}/movie${i}.mov`;
      const data = bytesFor(rel, LARGE_BYTES + i);
      await fs.writeFile(path.join(dir, 'staged', rel), data);
      expected.set(rel, createHash('sha256').update(data).digest('hex'));
    }
    const cfg = await writeAgentConfig({
      name: `render${s}`, dir, port: 0,
      extra: {
        outboxes: [{ path: 'outbox', to: [{ peer: 'playback', inbox: 'renders' }], after: 'delete', settleMs: 300 }],
        peers: [{ name: 'playback', host: '127.0.0.1', port: rPort }],
        limits: { idleTimeoutMs: 15_000, handshakeTimeoutMs: 5000 },
      },
    });
    senders.push({ cfg, outbox: path.join(dir, 'outbox'), staged });
  }
  const agents: Agent[] = [];
  for (const s of senders) {
    const a = await startAgent(s.cfg, memoryLogger());
    cleanup.push(() => a.stop(2000));
    agents.push(a);
  }

  let peak = await vmRssMb(pid);
  const baseline = peak;
  let sampling = true;
  const sampler = (async () => {
    while (sampling) {
      peak = Math.max(peak, await vmRssMb(pid).catch(() => peak));
      await new Promise((r) => setTimeout(r, 100));
    }
  })();

  const t0 = Date.now();
  // Each render "finishes" at once: its whole folder moves into the outbox.
  await Promise.all(senders.map((s, i) => fs.rename(s.staged, path.join(s.outbox, `s${i}`))));
  try {
    await waitUntil(async () => (await listFiles(inbox)).length >= expected.size, 180_000, () => `all ${expected.size} files in the inbox`);
    // Every sender saw every file confirmed (after: delete empties the outboxes).
    await waitUntil(async () => (await Promise.all(senders.map((s) => listFiles(s.outbox)))).every((l) => l.length === 0), 10_000, () => 'outboxes emptied');
  } finally {
    sampling = false;
    await sampler;
  }
  const secs = (Date.now() - t0) / 1000;
  const total = [...expected.keys()].length;
  console.log(`${total} files (${Math.round((SENDERS * LARGE_PER_SENDER * LARGE_BYTES) / 1e6)} MB in large ones) in ${secs.toFixed(1)} s; receiver VmRSS baseline ${baseline.toFixed(0)} MB, peak ${peak.toFixed(0)} MB`);

  const got = await hashTree(inbox);
  assert.deepEqual([...got.keys()].sort(), [...expected.keys()].sort(), 'the inbox holds exactly the sent files (no temp files)');
  for (const [rel, h] of expected) assert.equal(got.get(rel), h, `hash of ${rel}`);
  assert.deepEqual(await listFiles(path.join(root, 'receiver', '.inbox.tdxfer-staging')), [], 'no partial left in staging');
  assert.ok(peak < RSS_CEILING_MB, `receiver peak VmRSS ${peak.toFixed(0)} MB ≥ ${RSS_CEILING_MB} MB`);
  assert.equal(receiver.child.exitCode, null, 'the receiver is still running');
  assert.doesNotMatch(receiver.output(), /ERROR/, 'no errors logged by the receiver');

  // And it keeps serving: one more file afterwards.
  const last = bytesFor('after-load', 123_456);
  await fs.writeFile(path.join(senders[0]!.outbox, 'after-load.bin'), last);
  await waitUntil(async () => (await listFiles(inbox)).includes('after-load.bin'), 10_000, () => 'a file after the load');
  assert.deepEqual(await fs.readFile(path.join(inbox, 'after-load.bin')), last);
});
