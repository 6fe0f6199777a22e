/**
 * Issue #11 item 2 end to end: the receiving machine sees what is arriving. A real
 * transfer between two agents goes through a throttling relay and a fault proxy that
 * cuts the first connection (so the second one resumes) and then holds the second one
 * mid-stream; while it is held, the receiver's /status, /events, /metrics, `tdxfer
 * status` and `tdxfer status --watch` show the file, sender, inbox, bytes done/total,
 * resumed-from; once released, the transfer ends as done everywhere.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import path from 'node:path';
import { spawnCli, waitUntil, writeRandomFile, sha256File } from '../helpers/agents.js';
import { FaultProxy } from '../helpers/proxy.js';
import { followEvents, getJson, httpRequest, metric, runCli, startRunning, writePair } from './status-helpers.js';
import type { IncomingView, SnapshotView } from '../../src/status/present.js';
import { EXIT_AFTER_KILL } from '../helpers/platform.js';

const cleanup: Array<() => Promise<unknown>> = [];
after(async () => {
  for (const c of cleanup.reverse()) await c().catch(() => undefined);
});

const MB = 1024 * 1024;

test('a transfer held mid-stream is visible on the receiver: /status, /events, /metrics, tdxfer status and --watch', async () => {
  // Idle timeouts far longer than the test: the held connection must stay held.
  const limits = { limits: { idleTimeoutMs: 300_000, handshakeTimeoutMs: 5000 } };
  const p = await writePair({ throttleBytesPerSec: 4 * MB, senderExtra: limits, receiverExtra: limits });
  cleanup.push(() => p.cleanup());
  // sender → fault proxy → throttling relay → receiver. Connection 0 is cut after 3 MB
  // (the receiver keeps the partial), connection 1 resumes and is held after 2 MB more.
  const proxy = await FaultProxy.start({ port: p.relay!.port }, (i) => (i === 0 ? { cutAfter: 3 * MB } : { stallAfter: 2 * MB }));
  cleanup.push(() => proxy.close());
  const cfg = JSON.parse(await fs.readFile(p.senderCfg, 'utf8')) as { peers: Array<{ port: number }> };
  cfg.peers[0]!.port = proxy.port;
  await fs.writeFile(p.senderCfg, JSON.stringify(cfg));

  const receiver = await startRunning(p.receiverCfg);
  cleanup.push(() => receiver.stop());
  const sender = await startRunning(p.senderCfg);
  cleanup.push(() => sender.stop());
  const sse = await followEvents(`${receiver.base}/events`);
  cleanup.push(async () => sse.close());

  const size = 12 * MB + 321;
  const src = path.join(p.root, 'big.mov');
  await writeRandomFile(src, size);
  await fs.rename(src, path.join(p.outbox, 'big.mov'));

  // Held: the second connection stalls with a resumed partial on the receiver.
  let held: IncomingView | undefined;
  await waitUntil(
    async () => {
      const s = await getJson<SnapshotView>(`${receiver.base}/status`);
      held = s.incoming.find((i) => i.resumedFrom > 0);
      // Held for real: bytes past the resume point arrived, then nothing for over 2 s.
      return held !== undefined && proxy.conns[1]?.stalled === true && held.bytesDone > held.resumedFrom && Date.now() - held.updatedAt > 2500;
    },
    60_000,
    () => `a resumed, held incoming transfer; proxy: ${JSON.stringify(proxy.conns)}; receiver log:\n${receiver.log.records.slice(-20).map((r) => r.msg).join('\n')}`,
  );
  const h = held!;
  assert.equal(h.file, 'big.mov');
  assert.equal(h.inbox, 'renders');
  assert.equal(h.from, 'render');
  assert.equal(h.via, 'tdxfer');
  assert.equal(h.state, 'receiving');
  assert.equal(h.bytesTotal, size);
  assert.ok(h.resumedFrom > 0 && h.resumedFrom < size, `resumedFrom ${h.resumedFrom}`);
  assert.ok(h.bytesDone > h.resumedFrom && h.bytesDone < size, `bytesDone ${h.bytesDone}`);
  assert.equal(h.percent, Math.floor((h.bytesDone / size) * 1000) / 10);
  assert.equal(h.rate, 0); // stalled: no rate, no ETA
  assert.equal(h.etaSeconds, null);
  // The sender's own view is unchanged: it still shows its job.
  assert.equal((await getJson<SnapshotView>(`${sender.base}/status`)).incoming.length, 0);

  // Events: a start, progress with a rate and an ETA while bytes flowed, the interrupted first attempt.
  const inEvents = sse.events.filter((e) => e.event === 'incoming').map((e) => e.data as IncomingView);
  assert.ok(inEvents.some((e) => e.state === 'interrupted' && /kept for resume/.test(e.error ?? '')), JSON.stringify(inEvents.slice(0, 3)));
  assert.ok(inEvents.some((e) => e.state === 'receiving' && e.rate > 0 && e.etaSeconds !== null && e.etaSeconds > 0), 'progress with rate and ETA');
  assert.ok(inEvents.some((e) => e.id === h.id && e.resumedFrom === h.resumedFrom));

  const m = (await httpRequest(`${receiver.base}/metrics`)).text;
  assert.equal(metric(m, 'tdxfer_incoming_files', { inbox: 'renders' }), 1);
  assert.equal(metric(m, 'tdxfer_incoming_bytes_size', { inbox: 'renders' }), size);
  assert.equal(metric(m, 'tdxfer_incoming_bytes_done', { inbox: 'renders' }), h.bytesDone);

  const st = await runCli(['status', '--config', p.receiverCfg]);
  assert.equal(st.code, 0, st.out);
  assert.match(st.out, /\nincoming:\n {2}↓ renders\/big\.mov ← render {2}receiving {2}\d+\.\d % {2}[\d.]+ MB\/12\.6 MB {2}ETA -- {2}\(resumed from [\d.]+ MB\)\n/);

  const watch = spawnCli(['status', '--watch', '--config', p.receiverCfg]);
  cleanup.push(() => watch.stop('SIGINT'));
  await watch.waitFor(/↓ renders\/big\.mov ← render {2}receiving {2}\d+\.\d %/, 30_000);

  // Released: the file lands, and every view says so.
  proxy.unstall();
  await waitUntil(async () => (await fs.stat(path.join(p.inbox, 'big.mov')).catch(() => null)) !== null, 60_000, () => 'big.mov landed');
  assert.equal(await sha256File(path.join(p.inbox, 'big.mov')), await sha256File(path.join(p.outbox, 'sent', 'big.mov')).catch(() => sha256File(path.join(p.outbox, 'big.mov'))));
  await waitUntil(() => sse.events.some((e) => e.event === 'incoming' && e.data.id === h.id && e.data.state === 'done'), 30_000, () => 'done event');
  const done = sse.events.find((e) => e.event === 'incoming' && e.data.id === h.id && e.data.state === 'done')!.data as IncomingView;
  assert.equal(done.percent, 100);
  assert.equal(done.landedAs, 'big.mov');
  await watch.waitFor(/↓ renders\/big\.mov ← render received/, 30_000);
  // Windows: kill('SIGINT') terminates (a console's real Ctrl-C is not a kill()): exit code null there.
  assert.equal(await watch.stop('SIGINT'), EXIT_AFTER_KILL, watch.output());
  assert.deepEqual((await getJson<SnapshotView>(`${receiver.base}/status`)).incoming, []);
  const m2 = (await httpRequest(`${receiver.base}/metrics`)).text;
  assert.equal(metric(m2, 'tdxfer_incoming_files', { inbox: 'renders' }), null);
});
