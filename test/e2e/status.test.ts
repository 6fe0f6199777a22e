/**
 * Issue #6 end to end: the status API of two real agents on loopback (sender "render",
 * receiver "playback"), watched during real transfers slowed by a throttling relay.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { sha256File, tempDir, waitUntil, writeRandomFile, TEST_KEY } from '../helpers/agents.js';
import { followEvents, getJson, httpRequest, metric, runCli, startRunning, writePair, type Running } from './status-helpers.js';

const cleanup: Array<() => Promise<unknown>> = [];
after(async () => {
  for (const c of cleanup.reverse()) await c().catch(() => undefined);
});

async function run(cfg: string): Promise<Running> {
  const r = await startRunning(cfg);
  cleanup.push(() => r.stop());
  return r;
}

async function pair(o: Parameters<typeof writePair>[0] = {}) {
  const p = await writePair(o);
  cleanup.push(() => p.cleanup());
  return p;
}

const MB = 1024 * 1024;

test('GET /health: 200 with version, listen and per-folder writable + free disk; 503 naming the inbox once it is removed', async () => {
  const p = await pair();
  const b = await run(p.receiverCfg);
  const a = await run(p.senderCfg);
  const h = await httpRequest(`${b.base}/health`);
  assert.equal(h.status, 200, h.text);
  const body = h.json();
  assert.equal(body.ok, true);
  assert.equal(body.version, b.agent.version);
  assert.match(body.version, /^\d+\.\d+\.\d+/);
  assert.equal(body.listen, `127.0.0.1:${p.receiverPort}`);
  assert.deepEqual(body.problems, []);
  const inbox = body.folders.find((f: { kind: string }) => f.kind === 'inbox');
  assert.equal(inbox.name, 'renders');
  assert.equal(inbox.path, p.inbox);
  assert.equal(inbox.exists, true);
  assert.equal(inbox.writable, true);
  assert.ok(Number.isInteger(inbox.freeBytes) && inbox.freeBytes > 0, `free bytes of the inbox disk: ${inbox.freeBytes}`);
  // The sender reports its outbox too.
  const ah = await getJson(`${a.base}/health`);
  assert.ok(ah.folders.some((f: { kind: string; path: string; writable: boolean }) => f.kind === 'outbox' && f.path === p.outbox && f.writable));

  await fs.rm(p.inbox, { recursive: true, force: true });
  const bad = await httpRequest(`${b.base}/health`);
  assert.equal(bad.status, 503, bad.text);
  const bb = bad.json();
  assert.equal(bb.ok, false);
  assert.equal(bb.folders[0].exists, false);
  assert.equal(bb.folders[0].freeBytes, null);
  assert.ok(bb.problems.some((x: string) => x.includes('"renders"') && x.includes(p.inbox) && x.includes('missing')), bb.problems.join('; '));

  await fs.mkdir(p.inbox);
  assert.equal((await httpRequest(`${b.base}/health`)).status, 200, 'healthy again once the folder is back');
});

test('during a real throttled transfer: /status shows bytes, percent, rate and ETA, then the done job in recent; /events streams job, progress (≤ 10/s) and received', async () => {
  // 64 KiB chunks: ~640 progress callbacks in ~2.5 s, so an unthrottled stream would show.
  const p = await pair({ throttleBytesPerSec: 16 * MB, senderExtra: { transfer: { chunkBytes: 64 * 1024, retryInitialMs: 100, retryMaxMs: 1000 } } });
  const b = await run(p.receiverCfg);
  const a = await run(p.senderCfg);
  const sEvents = await followEvents(`${a.base}/events`);
  const rEvents = await followEvents(`${b.base}/events`);
  cleanup.push(async () => (sEvents.close(), rEvents.close()));

  const size = 40 * MB;
  const src = path.join(p.root, 'big.mov');
  await writeRandomFile(src, size);
  await fs.rename(src, path.join(p.outbox, 'big.mov'));

  // Poll the way a dashboard or TouchDesigner would, until a mid-transfer snapshot is seen.
  let mid: any = null; // eslint-disable-line @typescript-eslint/no-explicit-any
  await waitUntil(
    async () => {
      const s = await getJson(`${a.base}/status`);
      const j = s.active.find((x: { file: string }) => x.file === 'big.mov');
      if (j && j.state === 'sending' && j.bytesDone > 0 && j.bytesDone < size && j.rate > 0 && j.etaSeconds !== null) mid = j;
      return mid !== null;
    },
    20_000,
    () => 'a /status snapshot with the job mid-transfer',
  );
  assert.equal(mid.bytesTotal, size);
  assert.equal(mid.peer, 'playback');
  assert.equal(mid.inbox, 'renders');
  assert.equal(mid.percent, Math.floor((mid.bytesDone / size) * 1000) / 10);
  assert.ok(mid.percent > 0 && mid.percent < 100);
  // An upper bound only: the relay caps the link at 16 MB/s, load can only make it slower.
  assert.ok(mid.rate > 0 && mid.rate < 400 * MB, `rate ${mid.rate} B/s is plausible for a 16 MB/s link`);
  assert.equal(mid.etaSeconds, Math.ceil((size - mid.bytesDone) / mid.rate));
  const s0 = await getJson(`${a.base}/status`);
  assert.equal(s0.agent.name, 'render');
  assert.ok(s0.queues.some((q: { destination: string; sending: number }) => q.destination === 'playback/renders' && q.sending === 1));

  await waitUntil(async () => (await getJson(`${a.base}/status`)).recent.some((x: { id: string }) => x.id === mid.id), 30_000, () => 'the job in the recent list');
  const s1 = await getJson(`${a.base}/status`);
  const done = s1.recent.find((x: { id: string }) => x.id === mid.id);
  assert.equal(done.state, 'done');
  assert.equal(done.percent, 100);
  assert.equal(done.bytesDone, size);
  assert.equal(done.landedAs, 'big.mov');
  assert.ok(done.finishedAt >= done.startedAt);
  assert.equal(s1.active.length, 0);
  assert.equal(await sha256File(path.join(p.inbox, 'big.mov')), await sha256File(path.join(p.outbox, 'sent', 'big.mov')));
  const rs = await getJson(`${b.base}/status`);
  assert.ok(rs.received.some((r: { file: string; from: string; size: number }) => r.file === 'big.mov' && r.from === 'render' && r.size === size));

  // Server-sent events on both agents.
  await waitUntil(() => rEvents.events.some((e) => e.event === 'received'), 5000, () => 'a received event at the receiver');
  const jobs = sEvents.events.filter((e) => e.event === 'job' && e.data.id === mid.id).map((e) => e.data.state);
  assert.equal(jobs[0], 'queued', `job states ${jobs.join(',')}`);
  assert.ok(jobs.includes('sending'));
  assert.equal(jobs.at(-1), 'done');
  const prog = sEvents.events.filter((e) => e.event === 'progress' && e.data.id === mid.id);
  assert.ok(prog.length >= 5, `${prog.length} progress events over a ~2 s transfer`);
  for (let i = 1; i < prog.length; i++) assert.ok(prog[i]!.data.bytesDone >= prog[i - 1]!.data.bytesDone, 'progress never goes back');
  // The cap is checked on the agent's clock (the job's startedAt..finishedAt), not on arrival
  // times here, which a loaded machine bunches: progress is sent while sending, one per 100 ms at most.
  const spanMs = done.finishedAt - done.startedAt;
  assert.ok(prog.length <= Math.floor(spanMs / 100) + 2, `${prog.length} progress events in a ${spanMs} ms transfer: more than ~10/s`);
  console.log(`${prog.length} SSE progress events over a ${spanMs} ms transfer`);
  for (const e of prog) assert.equal(typeof e.data.percent, 'number');
  const rec = rEvents.events.find((e) => e.event === 'received')!.data;
  assert.deepEqual([rec.inbox, rec.file, rec.path, rec.size, rec.from, rec.via], ['renders', 'big.mov', path.join(p.inbox, 'big.mov'), size, 'render', 'tdxfer']);
});

test('GET /metrics: queue depth while files are in flight, then sent/received bytes and files per peer and the duration histogram', async () => {
  const p = await pair({ throttleBytesPerSec: 4 * MB });
  const b = await run(p.receiverCfg);
  const a = await run(p.senderCfg);
  const sizes = [2 * MB, 3 * MB, 1 * MB + 17];
  const src = path.join(p.root, 'src');
  for (const [i, n] of sizes.entries()) await writeRandomFile(path.join(src, `m${i}.exr`), n);
  for (const f of await fs.readdir(src)) await fs.rename(path.join(src, f), path.join(p.outbox, f));

  let depthSeen = 0;
  await waitUntil(
    async () => {
      const m = (await httpRequest(`${a.base}/metrics`)).text;
      depthSeen = Math.max(depthSeen, metric(m, 'tdxfer_queue_depth', { destination: 'playback/renders' }) ?? 0);
      return depthSeen > 0;
    },
    10_000,
    () => 'tdxfer_queue_depth above 0 while sending',
  );
  await waitUntil(async () => (await getJson(`${a.base}/status`)).recent.length === 3, 30_000, () => 'three files sent');

  const res = await httpRequest(`${a.base}/metrics`);
  assert.equal(res.status, 200);
  assert.match(String(res.headers['content-type']), /^text\/plain/);
  const m = res.text;
  const total = sizes.reduce((x, y) => x + y, 0);
  assert.equal(metric(m, 'tdxfer_sent_bytes_total', { peer: 'playback' }), total);
  assert.equal(metric(m, 'tdxfer_sent_files_total', { peer: 'playback' }), 3);
  assert.equal(metric(m, 'tdxfer_transfer_duration_seconds_count'), 3);
  assert.ok((metric(m, 'tdxfer_transfer_duration_seconds_sum') ?? 0) > 0.2, 'throttled transfers take measurable time');
  assert.equal(metric(m, 'tdxfer_transfer_duration_seconds_bucket', { le: '+Inf' }), 3);
  assert.equal(metric(m, 'tdxfer_queue_depth', { destination: 'playback/renders' }), 0);
  assert.ok(metric(m, 'process_cpu_user_seconds_total') !== null, 'default process metrics are included');

  const rm = (await httpRequest(`${b.base}/metrics`)).text;
  assert.equal(metric(rm, 'tdxfer_received_bytes_total', { peer: 'render' }), total);
  assert.equal(metric(rm, 'tdxfer_received_files_total', { peer: 'render' }), 3);
  assert.equal(metric(rm, 'tdxfer_sent_files_total', { peer: 'playback' }), null, 'the receiver sent nothing');
});

test('POST /send (JSON and form-encoded like TouchDesigner\'s Web Client DAT) queues a file under a target name; GET /jobs/ID shows it done', async () => {
  const p = await pair();
  await run(p.receiverCfg);
  const a = await run(p.senderCfg);
  const take1 = path.join(p.root, 'recordings', 'take1.mov');
  const take2 = path.join(p.root, 'recordings', 'take 2 (final).mov');
  await writeRandomFile(take1, 3 * MB + 5);
  await writeRandomFile(take2, 700_001);

  const r1 = await httpRequest(`${a.base}/send`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ file: take1, peer: 'playback', inbox: 'renders', as: 'takes/take1.mov' }),
  });
  assert.equal(r1.status, 202, r1.text);
  const j1 = r1.json();
  assert.match(j1.id, /^\S+$/);
  assert.equal(j1.target, 'takes/take1.mov');
  assert.equal(j1.source, take1);

  // The Web Client DAT default: application/x-www-form-urlencoded; `target` is the TOX's name for the peer.
  const form = new URLSearchParams({ file: take2, target: 'playback', inbox: 'renders', as: 'takes/take2.mov' }).toString();
  const r2 = await httpRequest(`${a.base}/send`, { method: 'POST', headers: { 'Content-Type': 'application/x-www-form-urlencoded' }, body: form });
  assert.equal(r2.status, 202, r2.text);
  const j2 = r2.json();

  for (const j of [j1, j2]) {
    await waitUntil(async () => (await getJson(`${a.base}/jobs/${encodeURIComponent(j.id)}`)).state === 'done', 15_000, () => `job ${j.id} done`);
    const info = await getJson(`${a.base}/jobs/${encodeURIComponent(j.id)}`);
    assert.equal(info.percent, 100);
    assert.equal(info.landedAs, j.target);
  }
  assert.equal(await sha256File(path.join(p.inbox, 'takes', 'take1.mov')), await sha256File(take1));
  assert.equal(await sha256File(path.join(p.inbox, 'takes', 'take2.mov')), await sha256File(take2));
  // after=keep for POST /send: the source stays where it was.
  await fs.access(take1);
  await fs.access(take2);

  // Bad requests say what is wrong; nothing is queued.
  const missing = await httpRequest(`${a.base}/send`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ file: path.join(p.root, 'nope.mov'), peer: 'playback' }) });
  assert.equal(missing.status, 400);
  assert.match(missing.json().error, /file not found/);
  const unknown = await httpRequest(`${a.base}/send`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ file: take1, peer: 'nobody' }) });
  assert.equal(unknown.status, 400);
  assert.match(unknown.json().error, /nobody/);
  assert.equal((await httpRequest(`${a.base}/jobs/does-not-exist`)).status, 404);
});

test('status.token: requests without it are refused with 401, with it (header or ?token=) they work, including POST /send', async () => {
  const token = randomBytes(16).toString('hex');
  const p = await pair();
  // Re-write the sender's status section with a token (still loopback-only in tests).
  const cfg = JSON.parse(await fs.readFile(p.senderCfg, 'utf8'));
  cfg.status = { enabled: true, host: '127.0.0.1', port: 0, token };
  await fs.writeFile(p.senderCfg, JSON.stringify(cfg, null, 2));
  await run(p.receiverCfg);
  const a = await run(p.senderCfg);

  for (const ep of ['/status', '/health', '/metrics', '/events', '/']) {
    const r = await httpRequest(`${a.base}${ep}`);
    assert.equal(r.status, 401, `${ep} without token`);
    assert.match(r.json().error, /token/);
    const wrong = await httpRequest(`${a.base}${ep}`, { headers: { Authorization: `Bearer ${token}x` } });
    assert.equal(wrong.status, 401, `${ep} with a wrong token`);
  }
  assert.equal((await httpRequest(`${a.base}/status`, { headers: { Authorization: `Bearer ${token}` } })).status, 200);
  assert.equal((await httpRequest(`${a.base}/health?token=${token}`)).status, 200);
  const ev = await followEvents(`${a.base}/events?token=${token}`);
  ev.close();

  const file = path.join(p.root, 'cue.json');
  await fs.writeFile(file, '{"cue": 1}');
  const body = JSON.stringify({ file, peer: 'playback', inbox: 'renders' });
  const refused = await httpRequest(`${a.base}/send`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body });
  assert.equal(refused.status, 401);
  const ok = await httpRequest(`${a.base}/send`, { method: 'POST', headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${token}` }, body });
  assert.equal(ok.status, 202, ok.text);
  await waitUntil(async () => (await fs.readFile(path.join(p.inbox, 'cue.json'), 'utf8').catch(() => '')) === '{"cue": 1}', 10_000, () => 'cue.json delivered');
  // Jobs are queued in order: once the accepted one is done, a job from the refused POST would be listed too.
  await waitUntil(async () => (await getJson(`${a.base}/status?token=${token}`)).recent.length > 0, 10_000, () => 'the accepted job done');
  const after = await getJson(`${a.base}/status?token=${token}`);
  assert.equal(after.active.length + after.recent.length, 1, 'a refused POST queues nothing');
});

test('tdxfer config check: a status API bound beyond loopback needs a token', async () => {
  const dir = await tempDir('tdx-e2e-cfgcheck-');
  cleanup.push(() => fs.rm(dir, { recursive: true, force: true }));
  const file = path.join(dir, 'config.json');
  const base = { name: 'render', dataDir: 'data', inboxes: [{ name: 'renders', path: 'inbox' }], security: { key: TEST_KEY } };
  await fs.writeFile(file, JSON.stringify({ ...base, status: { enabled: true, host: '0.0.0.0', port: 7771 } }));
  const bad = await runCli(['config', 'check', '--config', file]);
  assert.equal(bad.code, 2, bad.out);
  assert.match(bad.out, /status\.token/);
  assert.match(bad.out, /openssl rand -hex 16/);

  await fs.writeFile(file, JSON.stringify({ ...base, status: { enabled: true, host: '0.0.0.0', port: 7771, token: randomBytes(16).toString('hex') } }));
  const good = await runCli(['config', 'check', '--config', file]);
  assert.equal(good.code, 0, good.out);
});
