/**
 * Issue #6 end to end: completion triggers of real agents. OSC datagrams to UDP sockets
 * standing in for TouchDesigner (decoded with node-osc), and the inbox `onReceive` hook
 * running for real received files.
 */
import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import path from 'node:path';
import { waitUntil, writeRandomFile } from '../helpers/agents.js';
import { getJson, httpRequest, oscListener, spawnAgent, startRunning, writePair, type OscMessage, type PairLayout, type Running } from './status-helpers.js';
import { linuxOnly } from '../helpers/platform.js';
import { digestFile } from '../helpers/hash.js';

const cleanup: Array<() => Promise<unknown>> = [];
after(async () => {
  for (const c of cleanup.reverse()) await c().catch(() => undefined);
});

const MB = 1024 * 1024;

function only(messages: OscMessage[], address: string): OscMessage[] {
  return messages.filter((m) => m.address === address);
}

async function dropIn(p: PairLayout, outbox: string, rel: string, size: number): Promise<string> {
  const src = path.join(p.root, 'staging-area', rel);
  await writeRandomFile(src, size);
  const dst = path.join(outbox, rel);
  await fs.mkdir(path.dirname(dst), { recursive: true });
  await fs.rename(src, dst);
  return dst;
}

// One pair for the OSC tests: sender "render" → relay (8 MB/s) → receiver "playback",
// each agent with its own OSC listener. The receiver refuses files over 20 MB.
let p: PairLayout;
let a: Running;
let b: Running;
let senderOsc: Awaited<ReturnType<typeof oscListener>>;
let receiverOsc: Awaited<ReturnType<typeof oscListener>>;

before(async () => {
  senderOsc = await oscListener();
  receiverOsc = await oscListener();
  cleanup.push(async () => (senderOsc.close(), receiverOsc.close()));
  p = await writePair({
    throttleBytesPerSec: 8 * MB,
    senderExtra: { osc: { targets: [{ host: '127.0.0.1', port: senderOsc.port }], heartbeatSeconds: 1, progress: true } },
    receiverExtra: {
      osc: { targets: [{ host: '127.0.0.1', port: receiverOsc.port }], heartbeatSeconds: 0 },
      limits: { idleTimeoutMs: 5000, handshakeTimeoutMs: 3000, maxFileBytes: 20 * MB },
    },
  });
  cleanup.push(() => p.cleanup());
  b = await startRunning(p.receiverCfg);
  cleanup.push(() => b.stop());
  a = await startRunning(p.senderCfg);
  cleanup.push(() => a.stop());
});

test('OSC: the receiver sends /tdxfer/received (inbox, relative path, absolute path, size, sender) and the sender /tdxfer/sent, once each', async () => {
  await dropIn(p, p.outbox, 'shots/sh010/comp.0001.exr', 300_001);
  await waitUntil(() => only(senderOsc.messages, '/tdxfer/sent').length >= 1, 10_000, () => '/tdxfer/sent at the sender');
  await waitUntil(() => only(receiverOsc.messages, '/tdxfer/received').length >= 1, 5000, () => '/tdxfer/received at the receiver');
  // A later file's messages on both sides prove a duplicate for the first is not on its way.
  await dropIn(p, p.outbox, 'zz-later.png', 10);
  await waitUntil(() => only(senderOsc.messages, '/tdxfer/sent').some((m) => m.args[2] === 'zz-later.png') && only(receiverOsc.messages, '/tdxfer/received').some((m) => m.args[1] === 'zz-later.png'), 10_000, () => 'messages for the later file');

  const rec = only(receiverOsc.messages, '/tdxfer/received').filter((m) => m.args[1] !== 'zz-later.png');
  assert.equal(rec.length, 1);
  const abs = path.join(p.inbox, 'shots', 'sh010', 'comp.0001.exr');
  assert.deepEqual(rec[0]!.args, ['renders', 'shots/sh010/comp.0001.exr', abs, 300_001, 'render']);
  assert.equal((await fs.stat(rec[0]!.args[2] as string)).size, 300_001, 'the absolute path names the landed file');

  const sent = only(senderOsc.messages, '/tdxfer/sent').filter((m) => m.args[2] !== 'zz-later.png');
  assert.equal(sent.length, 1);
  const [peer, inbox, rel, size, seconds] = sent[0]!.args;
  assert.deepEqual([peer, inbox, rel, size], ['playback', 'renders', 'shots/sh010/comp.0001.exr', 300_001]);
  assert.ok(typeof seconds === 'number' && seconds >= 0, `duration ${String(seconds)}`);
  // The sender's own OSC target never hears the receiver's messages, and vice versa.
  assert.equal(only(senderOsc.messages, '/tdxfer/received').length, 0);
  assert.equal(only(receiverOsc.messages, '/tdxfer/sent').length, 0);
});

test('OSC: /tdxfer/progress during a throttled transfer (progress: true), at most ~4/s, rising to the end', async () => {
  const size = 18 * MB;
  const before = senderOsc.messages.length;
  await dropIn(p, p.outbox, 'take.mov', size);
  await waitUntil(() => senderOsc.messages.slice(before).some((m) => m.address === '/tdxfer/sent' && m.args[2] === 'take.mov'), 20_000, () => '/tdxfer/sent for take.mov');
  const prog = only(senderOsc.messages.slice(before), '/tdxfer/progress').filter((m) => m.args[1] === 'take.mov');
  assert.ok(prog.length >= 3, `${prog.length} progress messages for a ~2 s transfer`);
  for (const m of prog) {
    const [peer, rel, percent, done, total] = m.args as [string, string, number, number, number];
    assert.equal(peer, 'playback');
    assert.equal(rel, 'take.mov');
    assert.equal(total, size);
    assert.ok(done > 0 && done <= size);
    assert.ok(Math.abs(percent - (done / size) * 100) < 0.01, `percent ${percent} matches ${done}/${size}`);
  }
  for (let i = 1; i < prog.length; i++) assert.ok((prog[i]!.args[3] as number) >= (prog[i - 1]!.args[3] as number), 'progress never goes back');
  // The cap is checked against the agent's own clock (the duration in /tdxfer/sent), not the
  // arrival times here, which a loaded machine bunches: progress goes out only while sending,
  // at most one per 250 ms of it.
  const sentMsg = senderOsc.messages.slice(before).find((m) => m.address === '/tdxfer/sent' && m.args[2] === 'take.mov')!;
  const seconds = sentMsg.args[4] as number;
  assert.ok(prog.length <= Math.floor(seconds * 4) + 2, `${prog.length} progress messages in a ${seconds} s transfer: more than ~4/s`);
  console.log(`${prog.length} OSC progress messages over a ${seconds.toFixed(2)} s transfer`);
  // The /tdxfer/sent comes after the last progress message.
  assert.ok(senderOsc.messages.indexOf(sentMsg) > senderOsc.messages.indexOf(prog.at(-1)!));
});

test('OSC: /tdxfer/failed when the peer refuses a file (too large, bad name); nothing lands', async () => {
  const before = senderOsc.messages.length;
  await dropIn(p, p.outbox, 'huge.mov', 20 * MB + 1);
  await waitUntil(() => only(senderOsc.messages.slice(before), '/tdxfer/failed').length >= 1, 15_000, () => '/tdxfer/failed for huge.mov');
  const [peer, inbox, rel, error] = only(senderOsc.messages.slice(before), '/tdxfer/failed')[0]!.args as string[];
  assert.deepEqual([peer, inbox, rel], ['playback', 'renders', 'huge.mov']);
  assert.match(error!, /large|limit|maxFileBytes/i);

  // A name the receiver cannot accept, queued through POST /send (the QueueJob path).
  const src = path.join(p.root, 'escape.mov');
  await fs.writeFile(src, 'not allowed out of the inbox');
  const r = await httpRequest(`${a.base}/send`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ file: src, peer: 'playback', inbox: 'renders', as: '../escape.mov' }) });
  if (r.status === 202) {
    const id = r.json().id as string;
    await waitUntil(() => senderOsc.messages.slice(before).some((m) => m.address === '/tdxfer/failed' && m.args[2] === '../escape.mov'), 10_000, () => '/tdxfer/failed for ../escape.mov');
    const job = await getJson(`${a.base}/jobs/${id}`);
    assert.equal(job.state, 'failed');
  } else {
    // Refused before queueing is as good, as long as it says why.
    assert.equal(r.status, 400, r.text);
    assert.match(r.json().error, /\.\.|name|travers/i);
  }
  assert.equal(only(receiverOsc.messages, '/tdxfer/received').some((m) => /huge|escape/.test(String(m.args[1]))), false);
  await assert.rejects(fs.stat(path.join(p.inbox, 'huge.mov')));
  await assert.rejects(fs.stat(path.join(path.dirname(p.inbox), 'escape.mov')));
  // The refused file stays in the outbox (rename or shrink it to send it).
  await fs.access(path.join(p.outbox, 'huge.mov'));
});

test('OSC: /tdxfer/alive every heartbeatSeconds (1 s) with the agent name and a rising uptime', async () => {
  const from = senderOsc.messages.length;
  // Judged by the uptime the agent puts in each beat (its own clock), not by arrival gaps here,
  // which a loaded machine stretches and bunches: over N seconds of uptime at most N + 2 beats.
  const beats = () => only(senderOsc.messages.slice(from), '/tdxfer/alive');
  const span = () => (beats().at(-1)?.args[1] as number) - (beats()[0]?.args[1] as number);
  await waitUntil(() => beats().length >= 3 && span() >= 2, 6000, () => 'three heartbeats over 2 s of uptime');
  const alive = beats();
  for (const m of alive) {
    assert.equal(m.args[0], 'render');
    assert.ok(Number.isInteger(m.args[1]) && (m.args[1] as number) >= 0);
  }
  for (let i = 1; i < alive.length; i++) assert.ok((alive[i]!.args[1] as number) >= (alive[i - 1]!.args[1] as number), 'uptime never goes back');
  const up = (alive.at(-1)!.args[1] as number) - (alive[0]!.args[1] as number);
  assert.ok(alive.length <= up + 2, `${alive.length} heartbeats over ${up} s of uptime for heartbeatSeconds 1`);
  assert.equal(only(receiverOsc.messages, '/tdxfer/alive').length, 0, 'heartbeatSeconds 0 sends none');
});

test('onReceive hook: runs for a real received file with the TDXFER_* environment; a failing or hanging hook is logged and never holds up delivery', { skip: linuxOnly('/bin/sh (the hook commands)') }, async () => {
  const q = await writePair({
    senderExtra: {
      outboxes: [
        { path: 'outbox', to: [{ peer: 'playback', inbox: 'renders' }], after: 'archive', settleMs: 100 },
        { path: 'out-failing', to: [{ peer: 'playback', inbox: 'failing' }], after: 'archive', settleMs: 100 },
        { path: 'out-slow', to: [{ peer: 'playback', inbox: 'slow' }], after: 'archive', settleMs: 100 },
      ],
    },
  });
  cleanup.push(() => q.cleanup());
  const hookOut = path.join(q.root, 'hook-out');
  await fs.mkdir(hookOut);
  const cfg = JSON.parse(await fs.readFile(q.receiverCfg, 'utf8'));
  cfg.inboxes = [
    {
      name: 'renders',
      path: 'inbox',
      onReceive: { command: ['/bin/sh', '-c', 'env | grep "^TDXFER_" | sort > "$1/$(basename "$TDXFER_REL").env"', 'hook', hookOut] },
    },
    { name: 'failing', path: 'inbox-failing', onReceive: { command: ['/bin/sh', '-c', 'echo "media server unreachable" >&2; exit 3'] } },
    { name: 'slow', path: 'inbox-slow', onReceive: { command: ['/bin/sh', '-c', 'sleep 30'], timeoutMs: 1500 } },
  ];
  await fs.writeFile(q.receiverCfg, JSON.stringify(cfg, null, 2));
  const rb = await startRunning(q.receiverCfg);
  cleanup.push(() => rb.stop());
  const ra = await startRunning(q.senderCfg);
  cleanup.push(() => ra.stop());
  const aDir = q.senderDir;
  const bDir = q.receiverDir;

  // 1. The environment of a real received file.
  await dropIn(q, q.outbox, 'cues/cue 7 (final).json', 4321);
  const envFile = path.join(hookOut, 'cue 7 (final).json.env');
  await waitUntil(async () => (await fs.readFile(envFile, 'utf8').catch(() => '')).includes('TDXFER_SIZE'), 10_000, () => 'the hook wrote its environment');
  const landed = path.join(q.inbox, 'cues', 'cue 7 (final).json');
  const env = Object.fromEntries(
    (await fs.readFile(envFile, 'utf8'))
      .trim()
      .split('\n')
      .map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)])
      // TDXFER_* variables of the test's own environment (e.g. TDXFER_WINEPREFIX) reach the hook
      // through the agent too: only the ones the agent sets are checked.
      .filter(([k]) => !(k! in process.env)),
  );
  assert.deepEqual(env, {
    TDXFER_FILE: landed,
    TDXFER_FROM: 'render',
    TDXFER_INBOX: 'renders',
    TDXFER_REL: 'cues/cue 7 (final).json',
    // Two agents of this version negotiate XXH3-128: its digest is TDXFER_HASH, and
    // TDXFER_SHA256 stays empty (it is set whenever SHA-256 was used: test/service/hooks).
    TDXFER_SHA256: '',
    TDXFER_HASH: await digestFile(landed, 'xxh3-128'),
    TDXFER_HASH_ALG: 'xxh3-128',
    TDXFER_SIZE: '4321',
  });

  // 2. A failing hook: the file is delivered and the failure logged with its exit code and stderr.
  await dropIn(q, path.join(aDir, 'out-failing'), 'f.png', 5000);
  await waitUntil(() => rb.log.records.some((r) => r.msg === 'onReceive hook failed'), 10_000, () => 'the hook failure in the log');
  const failed = rb.log.records.find((r) => r.msg === 'onReceive hook failed')!;
  assert.equal(failed.level, 'warn');
  assert.equal(failed.fields.exitCode, 3);
  assert.match(String(failed.fields.stderr), /media server unreachable/);
  assert.equal((await fs.stat(path.join(bDir, 'inbox-failing', 'f.png'))).size, 5000);

  // 3. A hanging hook: the sender has its confirmation long before the hook is stopped.
  await dropIn(q, path.join(aDir, 'out-slow'), 's1.png', 6000);
  await waitUntil(async () => (await getJson(`${ra.base}/status`)).recent.some((j: { file: string; state: string }) => j.file === 's1.png' && j.state === 'done'), 10_000, () => 's1.png confirmed');
  assert.equal(rb.log.records.some((r) => r.msg.includes('timed out')), false, 'confirmed while the hook still runs');
  // Deliveries to the same inbox go on while it hangs.
  await dropIn(q, path.join(aDir, 'out-slow'), 's2.png', 7000);
  await waitUntil(async () => (await fs.stat(path.join(bDir, 'inbox-slow', 's2.png')).catch(() => null))?.size === 7000, 10_000, () => 's2.png delivered while hooks hang');
  await waitUntil(() => rb.log.records.filter((r) => r.msg === 'onReceive hook timed out and was stopped').length === 2, 10_000, () => 'both slow hooks stopped after 1.5 s');
  const to = rb.log.records.find((r) => r.msg === 'onReceive hook timed out and was stopped')!;
  assert.equal(to.level, 'warn');
  assert.equal(to.fields.timeoutMs, 1500);
  assert.match(String(to.fields.hint), /timeoutMs/);
  assert.equal((await fs.stat(path.join(bDir, 'inbox-slow', 's1.png'))).size, 6000);
  const h = await getJson(`${rb.base}/health`);
  assert.equal(h.ok, true);
});

test('onReceive hook still running when `tdxfer run` gets SIGTERM: the hook is stopped and the agent exits 0 promptly', { skip: linuxOnly('/bin/sh (the hook commands) and SIGTERM') }, async () => {
  const q = await writePair();
  cleanup.push(() => q.cleanup());
  const pidFile = path.join(q.root, 'hook.pid');
  const cfg = JSON.parse(await fs.readFile(q.receiverCfg, 'utf8'));
  // Default timeoutMs (30 s) on purpose: longer than run's 20 s hard-exit timer.
  cfg.inboxes = [{ name: 'renders', path: 'inbox', onReceive: { command: ['/bin/sh', '-c', 'echo $$ > "$1"; exec sleep 60', 'hook', pidFile] } }];
  await fs.writeFile(q.receiverCfg, JSON.stringify(cfg, null, 2));
  const rb = await spawnAgent(q.receiverCfg, 20_000);
  cleanup.push(() => rb.stop('SIGKILL'));
  const ra = await startRunning(q.senderCfg);
  cleanup.push(() => ra.stop());
  await dropIn(q, q.outbox, 'late.png', 2048);
  await waitUntil(async () => (await fs.readFile(pidFile, 'utf8').catch(() => '')).trim() !== '', 10_000, () => 'the hook started');
  const pid = Number((await fs.readFile(pidFile, 'utf8')).trim());
  const alive = (): boolean => {
    try {
      process.kill(pid, 0);
      return true;
    } catch {
      return false;
    }
  };
  assert.ok(alive(), 'the hook runs');
  // Exit code 0 is the bound: the hook's own timeout (30 s) outlasts the 20 s hard-exit timer,
  // which would exit with 1, so the agent did not wait for the hook.
  assert.equal(await rb.stop('SIGTERM'), 0, rb.output().slice(-2000));
  assert.match(rb.output(), /onReceive hook stopped: the agent is shutting down/);
  await waitUntil(() => !alive(), 3000, () => `hook process ${pid} still running after the agent stopped`);
  assert.equal((await fs.stat(path.join(q.inbox, 'late.png'))).size, 2048);
});
