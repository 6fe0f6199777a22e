/**
 * Issue #16: src/touchdesigner/tdxfer.py (the TouchDesigner module) run by the system's
 * python3 against real agents (`tdxfer run`, spawned CLI): QueueJob lands files, the
 * receiving handle's onReceived, onProgress to 100, onFailed, the onAgentDown/onAgentUp
 * canary, QueueJob/Poll never blocking (agent down, or a server that accepts and never
 * answers), and callbacks only inside Poll() on the calling thread.
 *
 * Timing bound: QueueJob and Poll never wait for the network. A blocking implementation
 * would take at least the handle's timeout (2 s here) or a connect attempt; the bound
 * asserted is 100 ms of wall time, generous for a loaded 2-core machine and still 20x
 * below what blocking would cost.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { sha256File, tempDir, waitUntil, writeAgentConfig, writeRandomFile, type Spawned } from '../helpers/agents.js';
import { digestFile } from '../helpers/hash.js';
import { getJson, spawnAgent, writePair, type PairLayout } from '../e2e/status-helpers.js';
import { reservedPort } from '../helpers/ports.js';
import { FaultProxy } from '../helpers/proxy.js';
import { Harness, type HarnessEvent } from './harness.js';

const MB = 1024 * 1024;
const BOUND_MS = 100;

const cleanup: Array<() => Promise<unknown>> = [];
after(async () => {
  for (const c of cleanup.reverse()) await c().catch(() => undefined);
});

async function runAgentCli(cfg: string): Promise<Spawned> {
  const s = await spawnAgent(cfg);
  cleanup.push(() => s.stop('SIGTERM'));
  return s;
}

let p: PairLayout;
let py: Harness;
let srcDir: string;

// "render" (sender) → relay at 16 MB/s → "playback" (receiver), both `tdxfer run`; one
// python process with a handle on each agent's status API.
before(async () => {
  p = await writePair({ throttleBytesPerSec: 16 * MB });
  cleanup.push(() => p.cleanup());
  await runAgentCli(p.receiverCfg);
  await runAgentCli(p.senderCfg);
  srcDir = path.join(p.root, 'renders');
  await fs.mkdir(srcDir, { recursive: true });
  py = new Harness();
  cleanup.push(() => py.quit());
  await py.call({ op: 'open', handle: 'render', url: `http://127.0.0.1:${p.senderStatusPort}`, peer: 'playback', inbox: 'renders' });
  await py.call({ op: 'open', handle: 'playback', url: `http://127.0.0.1:${p.receiverStatusPort}` });
  await py.waitCallback('render', 'onAgentUp');
  await py.waitCallback('playback', 'onAgentUp');
});

function assertOnMainThreadInPoll(events: HarnessEvent[]): void {
  for (const e of events) {
    assert.equal(e.mainThread, true, `${e.cb} ran off the calling thread: ${JSON.stringify(e)}`);
    assert.equal(e.inPoll, true, `${e.cb} ran outside Poll(): ${JSON.stringify(e)}`);
  }
}

test('QueueJob(target_name=…, file_name=…) returns an id at once; the file lands; onSent on the sender, onReceived with the right path on the receiver', async () => {
  const src = path.join(srcDir, 'Banana.tif');
  await writeRandomFile(src, 300_000);
  const q = await py.call({ op: 'queue', handle: 'render', target: 'stills/Banana.tif', file: src });
  assert.match(q.id!, /^td[0-9a-f]{6}-\d+$/);
  assert.ok(q.ms! < BOUND_MS, `QueueJob took ${q.ms} ms`);

  const sent = await py.waitCallback('render', 'onSent', (d) => d.id === q.id);
  assert.equal(sent.data.mine, true);
  assert.equal(sent.data.state, 'done');
  assert.equal(sent.data.target, 'stills/Banana.tif');
  assert.equal(sent.data.peer, 'playback');
  assert.equal(sent.data.inbox, 'renders');
  assert.equal(sent.data.file, src);
  assert.match(sent.data.agentId, /^j/);

  const landed = path.join(p.inbox, 'stills', 'Banana.tif');
  assert.equal(await sha256File(landed), await sha256File(src));
  const got = await py.waitCallback('playback', 'onReceived', (d) => d.relPath === 'stills/Banana.tif');
  assert.deepEqual(
    { inbox: got.data.inbox, relPath: got.data.relPath, absPath: got.data.absPath, size: got.data.size, from: got.data.from },
    { inbox: 'renders', relPath: 'stills/Banana.tif', absPath: landed, size: 300_000, from: 'render' },
  );
  // The verified hash as the two agents negotiated it (XXH3-128); sha256 only when SHA-256 was used.
  assert.deepEqual(
    { hash: got.data.hash, hashAlg: got.data.hashAlg, sha256: got.data.sha256 },
    { hash: await digestFile(landed, 'xxh3-128'), hashAlg: 'xxh3-128', sha256: null },
  );
  // The receiving handle saw no job of its own; the sender's Jobs() has this one, done.
  const jobs = (await py.call({ op: 'jobs', handle: 'render' })).jobs as Array<Record<string, unknown>>;
  const mine = jobs.find((j) => j.id === q.id);
  assert.equal(mine?.state, 'done');
  assert.equal(mine?.percent, 100);
  assert.equal(mine?.agentId, sent.data.agentId);
  assertOnMainThreadInPoll(py.callbacks('render'));
  assertOnMainThreadInPoll(py.callbacks('playback'));
});

test('onProgress climbs to 100 for a large file, before onSent', async () => {
  const src = path.join(srcDir, 'take1.mov');
  await writeRandomFile(src, 24 * MB); // ~1.5 s through the 16 MB/s relay
  const q = await py.call({ op: 'queue', handle: 'render', target: 'takes/take1.mov', file: src });
  const sent = await py.waitCallback('render', 'onSent', (d) => d.id === q.id);
  const all = py.callbacks('render');
  const progress = all.filter((e) => e.cb === 'onProgress' && e.data.id === q.id);
  const percents = progress.map((e) => e.data.percent as number);
  assert.ok(percents.length >= 2, `progress: ${JSON.stringify(percents)}`);
  assert.ok(percents.some((x) => x > 0 && x < 100), `an intermediate percent: ${JSON.stringify(percents)}`);
  for (let i = 1; i < percents.length; i++) assert.ok(percents[i]! >= percents[i - 1]!, `percent never goes back: ${JSON.stringify(percents)}`);
  const last = progress.at(-1)!;
  assert.equal(last.data.percent, 100);
  assert.equal(last.data.bytesDone, 24 * MB);
  assert.equal(last.data.bytesTotal, 24 * MB);
  assert.ok(all.indexOf(last) < all.indexOf(sent), 'onProgress 100 comes before onSent');
  assert.ok(progress.some((e) => e.data.rate > 0), 'a rate while sending');
  await py.waitCallback('playback', 'onReceived', (d) => d.relPath === 'takes/take1.mov');
  assert.equal(await sha256File(path.join(p.inbox, 'takes', 'take1.mov')), await sha256File(src));
});

test('the Folder DAT loop: QueueJob for every file of a folder (relpath as target_name, backslashes too) lands the whole tree', async () => {
  const folder = path.join(p.root, 'folder-loop');
  const rels = ['a.tif', 'b.tif', 'shot010/c.exr', 'shot010/d.exr', 'shot020/deep/e.exr'];
  for (const [i, rel] of rels.entries()) await writeRandomFile(path.join(folder, rel), 1000 + i * 777);
  const ids: string[] = [];
  for (const rel of rels) {
    const target = rel === 'shot010/d.exr' ? 'loop\\shot010\\d.exr' : `loop/${rel}`; // as a Windows relpath column gives it
    ids.push((await py.call({ op: 'queue', handle: 'render', target, file: path.join(folder, rel) })).id!);
  }
  for (const id of ids) await py.waitCallback('render', 'onSent', (d) => d.id === id);
  for (const rel of rels) {
    assert.equal(await sha256File(path.join(p.inbox, 'loop', rel)), await sha256File(path.join(folder, rel)), rel);
    await py.waitCallback('playback', 'onReceived', (d) => d.relPath === `loop/${rel}`);
  }
});

test('onFailed with the agent\'s reason for a missing file and for an unknown peer', async () => {
  const missing = path.join(srcDir, 'no-such-file.tif');
  const a = await py.call({ op: 'queue', handle: 'render', target: 'x.tif', file: missing });
  const b = await py.call({ op: 'queue', handle: 'render', target: 'Banana.tif', file: path.join(srcDir, 'Banana.tif'), peer: 'nobody' });
  const fa = await py.waitCallback('render', 'onFailed', (d) => d.id === a.id);
  assert.equal(fa.data.state, 'failed');
  assert.equal(fa.data.code, 'NO_SUCH_FILE');
  assert.match(fa.data.error, /answered 400: file not found: .*no-such-file\.tif/);
  const fb = await py.waitCallback('render', 'onFailed', (d) => d.id === b.id);
  assert.equal(fb.data.code, 'UNKNOWN_PEER');
  assert.match(fb.data.error, /nobody/);
  assert.equal(py.callbacks('render', 'onSent').filter((e) => e.data.id === a.id || e.data.id === b.id).length, 0);
});

test('callbacks wait for Poll(): none run while the frame loop holds, and Poll(n) runs at most n', async () => {
  await py.call({ op: 'hold', on: true });
  const before = py.events.length;
  const names = ['held/a.tif', 'held/b.tif', 'held/c.tif'];
  for (const n of names) {
    const src = path.join(srcDir, n);
    await writeRandomFile(src, 10_000);
    await py.call({ op: 'queue', handle: 'render', target: n, file: src });
  }
  for (const n of names) await waitUntil(async () => (await fs.stat(path.join(p.inbox, n)).catch(() => null)) !== null, 30_000, () => `${n} landed`);
  // Three onReceived (at least) are waiting on the receiving handle; none has run.
  await waitUntil(async () => ((await py.call({ op: 'pending', handle: 'playback' })).pending as number) >= 3, 30_000, () => 'events reach the receiving handle');
  assert.deepEqual(py.events.slice(before).filter((e) => e.ev === 'cb'), []);
  const one = await py.call({ op: 'pollonce', handle: 'playback', max: 1 });
  assert.equal(one.n, 1);
  assert.equal(py.events.slice(before).filter((e) => e.ev === 'cb').length, 1);
  await py.call({ op: 'hold', on: false });
  for (const n of names) await py.waitCallback('playback', 'onReceived', (d) => d.relPath === n);
  assertOnMainThreadInPoll(py.events.filter((e) => e.ev === 'cb'));
});

test('after the event stream was cut, the handle catches up from /status: a file that landed meanwhile still gets onReceived, once; older history does not', async () => {
  const proxy = await FaultProxy.start({ port: p.receiverStatusPort });
  cleanup.push(() => proxy.close());
  await py.call({ op: 'open', handle: 'relay', url: `http://127.0.0.1:${proxy.port}` });
  await py.waitCallback('relay', 'onAgentUp');
  proxy.setPlan(() => ({ refuse: true }));
  proxy.cutAll();
  await py.waitCallback('relay', 'onAgentDown');

  const src = path.join(srcDir, 'outage.tif');
  await writeRandomFile(src, 4000);
  await py.call({ op: 'queue', handle: 'render', target: 'outage/x.tif', file: src });
  await py.waitCallback('playback', 'onReceived', (d) => d.relPath === 'outage/x.tif'); // landed, seen by the direct handle
  assert.equal(py.callbacks('relay', 'onReceived').length, 0);

  proxy.setPlan(() => ({}));
  await py.waitCallback('relay', 'onAgentUp', (d) => d.downSeconds !== null);
  const caught = await py.waitCallback('relay', 'onReceived', (d) => d.relPath === 'outage/x.tif');
  assert.equal(caught.data.absPath, path.join(p.inbox, 'outage', 'x.tif'));
  // Exactly that file: nothing from before the handle existed, no duplicate.
  await py.call({ op: 'pollonce', handle: 'relay' });
  assert.deepEqual(py.callbacks('relay', 'onReceived').map((e) => e.data.relPath), ['outage/x.tif']);
  assertOnMainThreadInPoll(py.callbacks('relay'));
  await py.call({ op: 'close', handle: 'relay' });
});

test('onAgentDown / onAgentUp when the agent stops and starts again; QueueJob and Poll stay fast while it is down', async () => {
  const dir = await tempDir('tdx-td-solo-');
  cleanup.push(() => fs.rm(dir, { recursive: true, force: true }));
  // Reserved: the handle keeps this URL while the agent is down for a while and restarts.
  const statusPort = await reservedPort();
  const cfg = await writeAgentConfig({
    name: 'solo',
    dir,
    port: 0,
    extra: {
      status: { enabled: true, host: '127.0.0.1', port: statusPort },
      // "ghost": a peer nobody answers for, so a job to it waits across the restart.
      peers: [{ name: 'playback', host: '127.0.0.1', port: p.receiverPort }, { name: 'ghost', host: '127.0.0.1', port: await reservedPort() }],
    },
  });
  let solo = await runAgentCli(cfg);
  await py.call({ op: 'open', handle: 'solo', url: `http://127.0.0.1:${statusPort}`, peer: 'playback', inbox: 'renders', opts: { timeout: 2 } });
  const up1 = await py.waitCallback('solo', 'onAgentUp');
  assert.equal(up1.data.name, 'solo');
  assert.equal((await py.call({ op: 'alive', handle: 'solo' })).alive, true);
  const ghostSrc = path.join(srcDir, 'for-ghost.tif');
  await writeRandomFile(ghostSrc, 1000);
  const ghost = await py.call({ op: 'queue', handle: 'solo', target: 'for-ghost.tif', file: ghostSrc, peer: 'ghost' });
  await waitUntil(async () => ((await py.call({ op: 'jobs', handle: 'solo' })).jobs as Array<{ id: string; state: string }>).some((j) => j.id === ghost.id && j.state === 'waiting'), 30_000, () => 'the ghost job waits for its peer');

  await solo.stop('SIGTERM');
  const down = await py.waitCallback('solo', 'onAgentDown');
  assert.match(down.data.error, /closed the event stream|cannot reach/);
  assert.equal((await py.call({ op: 'alive', handle: 'solo' })).alive, false);

  await py.call({ op: 'resetstats' });
  const src = path.join(srcDir, 'while-down.tif');
  await writeRandomFile(src, 1000);
  const ids: string[] = [];
  for (let i = 0; i < 10; i++) {
    const q = await py.call({ op: 'queue', handle: 'solo', target: `down/${i}.tif`, file: src });
    assert.ok(q.ms! < BOUND_MS, `QueueJob took ${q.ms} ms with the agent down`);
    ids.push(q.id!);
  }
  for (const id of ids) {
    const f = await py.waitCallback('solo', 'onFailed', (d) => d.id === id);
    assert.match(f.data.error, /cannot reach the tdxfer agent at http:\/\/127\.0\.0\.1:\d+ \(connection refused\)/);
  }
  // Let the reconnect loop try a few times while the frame loop runs.
  const downs = py.callbacks('solo', 'onAgentDown').length;
  const stats = await py.call({ op: 'stats' });
  assert.ok((stats.maxPollMs as number) < BOUND_MS, `Poll took up to ${String(stats.maxPollMs)} ms over ${String(stats.polls)} calls`);
  assert.ok((stats.maxQueueMs as number) < BOUND_MS);

  solo = await runAgentCli(cfg);
  const up2 = await py.waitCallback('solo', 'onAgentUp', (d) => d.downSeconds !== null);
  assert.equal(up2.data.name, 'solo');
  assert.ok(up2.data.downSeconds > 0);
  assert.equal((await py.call({ op: 'alive', handle: 'solo' })).alive, true);
  assert.equal(py.callbacks('solo', 'onAgentDown').length, downs, 'one onAgentDown per outage, not one per retry');
  // The restarted agent does not know the waiting job: the handle says so. (Should the
  // agent keep jobs across restarts, it must keep clientId with them: then the job is
  // still listed, under the same id, and nothing failed.)
  await waitUntil(
    async () =>
      py.callbacks('solo', 'onFailed').some((e) => e.data.id === ghost.id && /the agent restarted and no longer knows this job/.test(e.data.error)) ||
      ((await getJson(`http://127.0.0.1:${statusPort}/status`)).active as Array<{ clientId?: string }>).some((j) => j.clientId === ghost.id) &&
        py.callbacks('solo', 'onFailed').every((e) => e.data.id !== ghost.id),
    30_000,
    () => 'the ghost job reported failed (forgotten) or still waiting',
  );
  // Works again after the restart.
  const again = path.join(srcDir, 'after-restart.tif');
  await writeRandomFile(again, 5000);
  const q = await py.call({ op: 'queue', handle: 'solo', target: 'after-restart.tif', file: again });
  await py.waitCallback('solo', 'onSent', (d) => d.id === q.id);
  await py.waitCallback('playback', 'onReceived', (d) => d.relPath === 'after-restart.tif' && d.from === 'solo');
  // A handle dropped without Close() (a recompiled DAT) stops its threads when collected.
  const prefix = ids[0]!.split('-')[0]!;
  const threads = async (): Promise<string[]> => ((await py.call({ op: 'threads' })).names as string[]).filter((n) => n.endsWith(`-${prefix}`));
  assert.equal((await threads()).length, 2);
  await py.call({ op: 'drop', handle: 'solo' });
  await waitUntil(async () => (await threads()).length === 0, 30_000, () => 'the dropped handle\'s threads end');
  await solo.stop('SIGTERM');
});

test('a server that accepts and never answers: QueueJob and Poll never block, jobs fail after the timeout, the canary says down', async () => {
  const sockets = new Set<net.Socket>();
  const hang = net.createServer((s) => {
    sockets.add(s);
    s.on('error', () => undefined).on('close', () => sockets.delete(s));
  });
  await new Promise<void>((resolve) => hang.listen(0, '127.0.0.1', resolve));
  cleanup.push(async () => {
    for (const s of sockets) s.destroy();
    await new Promise((r) => hang.close(r));
  });
  const port = (hang.address() as net.AddressInfo).port;

  await py.call({ op: 'resetstats' });
  await py.call({ op: 'open', handle: 'hang', url: `http://127.0.0.1:${port}`, peer: 'playback', inbox: 'renders', opts: { timeout: 2 } });
  const ids: string[] = [];
  for (let i = 0; i < 20; i++) {
    const q = await py.call({ op: 'queue', handle: 'hang', target: `h/${i}.tif`, file: path.join(srcDir, 'Banana.tif') });
    assert.ok(q.ms! < BOUND_MS, `QueueJob took ${q.ms} ms against a hung server`);
    ids.push(q.id!);
  }
  await waitUntil(() => sockets.size >= 2, 30_000, () => 'the module connected (events + send)');
  const down = await py.waitCallback('hang', 'onAgentDown');
  assert.match(down.data.error, /no answer within the timeout/);
  for (const id of ids) {
    const f = await py.waitCallback('hang', 'onFailed', (d) => d.id === id);
    assert.match(f.data.error, /cannot reach the tdxfer agent .*no answer within the timeout/);
  }
  assert.equal((await py.call({ op: 'alive', handle: 'hang' })).alive, false);
  const stats = await py.call({ op: 'stats' });
  assert.ok((stats.polls as number) > 100, `the frame loop kept running: ${String(stats.polls)} polls`);
  assert.ok((stats.maxPollMs as number) < BOUND_MS, `Poll took up to ${String(stats.maxPollMs)} ms over ${String(stats.polls)} calls`);
  assert.ok((stats.maxQueueMs as number) < BOUND_MS);
  assertOnMainThreadInPoll(py.callbacks('hang'));
  // Close() ends the handle's threads even while a connection hangs.
  const prefix = ids[0]!.split('-')[0]!;
  const threads = async (): Promise<string[]> => ((await py.call({ op: 'threads' })).names as string[]).filter((n) => n.endsWith(`-${prefix}`));
  assert.deepEqual(await threads(), [`tdxfer-events-${prefix}`, `tdxfer-send-${prefix}`].sort());
  await py.call({ op: 'close', handle: 'hang' });
  await waitUntil(async () => (await threads()).length === 0, 30_000, () => 'the handle\'s threads end after Close()');
});

test('status.token: the right token= works, a wrong one is onAgentDown (401, with the fix) and onFailed for QueueJob', async () => {
  const dir = await tempDir('tdx-td-token-');
  cleanup.push(() => fs.rm(dir, { recursive: true, force: true }));
  const token = 'td-test-token-0123456789';
  const cfg = await writeAgentConfig({
    name: 'locked',
    dir,
    port: 0,
    extra: { status: { enabled: true, host: '127.0.0.1', port: 0, token }, peers: [{ name: 'playback', host: '127.0.0.1', port: p.receiverPort }] },
  });
  const locked = await runAgentCli(cfg);
  const url = `http://127.0.0.1:${await locked.statusPort()}`;
  await py.call({ op: 'open', handle: 'good', url, token, peer: 'playback', inbox: 'renders' });
  await py.call({ op: 'open', handle: 'bad', url, token: 'not-the-token', peer: 'playback', inbox: 'renders' });
  assert.equal((await py.waitCallback('good', 'onAgentUp')).data.name, 'locked');
  const down = await py.waitCallback('bad', 'onAgentDown');
  assert.match(down.data.error, /refused the token \(401\).*pass token=/);

  const src = path.join(srcDir, 'token.tif');
  await writeRandomFile(src, 2000);
  const ok = await py.call({ op: 'queue', handle: 'good', target: 'token/ok.tif', file: src });
  const refused = await py.call({ op: 'queue', handle: 'bad', target: 'token/no.tif', file: src });
  await py.waitCallback('good', 'onSent', (d) => d.id === ok.id);
  await py.waitCallback('playback', 'onReceived', (d) => d.relPath === 'token/ok.tif' && d.from === 'locked');
  const f = await py.waitCallback('bad', 'onFailed', (d) => d.id === refused.id);
  assert.match(f.data.error, /401/);
  assert.equal(py.callbacks('bad', 'onAgentUp').length, 0);
  await py.call({ op: 'close', handle: 'good' });
  await py.call({ op: 'close', handle: 'bad' });
  await locked.stop('SIGTERM');
});
