import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { decode } from 'node-osc';
import { memoryLogger } from '../../src/log.js';
import { HeldTargets } from '../../src/inbox/held.js';
import { OscNotifier } from '../../src/osc/notifier.js';
import { FakeView } from '../helpers/fake-view.js';
import { waitUntil } from '../helpers/wait.js';

interface Decoded {
  address: string;
  args: unknown[];
  /** The OSC type tag string, e.g. ",ssif". */
  tags: string;
}

/** The type tag string straight from the datagram (node-osc's decoder drops the tags). */
function typeTags(buf: Buffer): string {
  const addrEnd = buf.indexOf(0);
  const tagStart = Math.ceil((addrEnd + 1) / 4) * 4;
  return buf.subarray(tagStart, buf.indexOf(0, tagStart)).toString('ascii');
}

async function oscReceiver(): Promise<{ port: number; messages: Decoded[]; close: () => void }> {
  const sock = dgram.createSocket('udp4');
  const messages: Decoded[] = [];
  sock.on('message', (buf) => {
    const m = decode(buf) as { address: string; args: Array<{ value: unknown }> };
    messages.push({ address: m.address, args: m.args.map((a) => a.value), tags: typeTags(buf) });
  });
  await new Promise<void>((resolve) => sock.bind(0, '127.0.0.1', resolve));
  return { port: sock.address().port, messages, close: () => sock.close() };
}

const until = (cond: () => boolean): Promise<void> => waitUntil(cond);

describe('OscNotifier', () => {
  test('a held inbox target sends /tdxfer/waiting on each blocked landing attempt (held seconds), nothing on release', async (t) => {
    const r = await oscReceiver();
    const view = new FakeView();
    const osc = new OscNotifier(view, { targets: [{ host: '127.0.0.1', port: r.port }], heartbeatSeconds: 0, progress: false }, { log: memoryLogger(), agentName: 'playback-1' });
    osc.start();
    t.after(() => {
      osc.stop();
      r.close();
    });
    // The inbox's real registry, wired to the view as the agent wires it (Inbox.onHeldChange → 'held').
    const held = new HeldTargets();
    held.onChange = (c) => view.emit('held', c);
    const abs = '/srv/tdxfer/clips/loop.mov';
    held.hold({ inbox: 'clips', rel: 'loop.mov', path: abs, code: 'EBUSY' }, 1_000_000);
    held.hold({ inbox: 'clips', rel: 'loop.mov', path: abs, code: 'EBUSY' }, 1_012_500);
    await until(() => r.messages.length >= 2);
    assert.equal(held.release(abs, 1_020_000), true);
    view.receive({ inbox: 'clips', file: 'loop.mov', path: abs, size: 10, from: 'render-1' });
    await until(() => r.messages.length >= 3);
    assert.deepEqual(r.messages.map((m) => m.address), ['/tdxfer/waiting', '/tdxfer/waiting', '/tdxfer/received']);
    assert.deepEqual(r.messages[0]!.args, ['clips', 'loop.mov', abs, 0]);
    assert.equal(r.messages[0]!.tags, ',sssf');
    assert.deepEqual(r.messages[1]!.args, ['clips', 'loop.mov', abs, 12.5]);
  });

  test('received, sent and failed reach every target with the documented arguments and types', async (t) => {
    const a = await oscReceiver();
    const b = await oscReceiver();
    const view = new FakeView();
    const log = memoryLogger();
    const osc = new OscNotifier(view, { targets: [{ host: '127.0.0.1', port: a.port }, { host: '127.0.0.1', port: b.port }], heartbeatSeconds: 0, progress: false }, { log, agentName: 'render-1' });
    osc.start();
    t.after(() => {
      osc.stop();
      a.close();
      b.close();
    });

    view.receive({ inbox: 'renders', file: 'takes/t1.mov', path: '/srv/tdxfer/renders/takes/t1.mov', size: 123456, from: 'render-2' });
    view.addPeer({ name: 'playback-1' });
    const j = view.queueJob('/out/t2.mov', 'playback-1', { size: 5_000_000_000, target: 'takes/t2.mov' });
    view.start(j.id);
    const startedAt = view.jobs.get(j.id)!.startedAt!;
    view.progress(j.id, 100); // progress is off in this config
    view.finish(j.id, { finishedAt: startedAt + 1500, landedAs: 'takes/t2 (1).mov' });
    view.finish(j.id, { finishedAt: startedAt + 1500, landedAs: 'takes/t2 (1).mov' }); // re-emitted: no second trigger
    const f = view.queueJob('/out/t3.mov', 'playback-1', { size: 1, inbox: null });
    view.fail(f.id, 'HASH_MISMATCH: checksum differs');

    for (const r of [a, b]) await until(() => r.messages.length >= 3);
    // A 4th message would be a second /tdxfer/sent: a later datagram proves it was not sent.
    view.receive({ file: 'marker' });
    for (const r of [a, b]) await until(() => r.messages.some((m) => m.args[1] === 'marker'));
    for (const r of [a, b]) r.messages.pop();
    for (const r of [a, b]) {
      assert.deepEqual(r.messages.map((m) => m.address), ['/tdxfer/received', '/tdxfer/sent', '/tdxfer/failed']);
      const [received, sent, failed] = r.messages as [Decoded, Decoded, Decoded];
      assert.deepEqual(received.args, ['renders', 'takes/t1.mov', '/srv/tdxfer/renders/takes/t1.mov', 123456, 'render-2']);
      assert.equal(received.tags, ',sssis');
      assert.equal(sent.tags, ',sssff'); // 5 GB does not fit int32: float
      assert.deepEqual(sent.args.slice(0, 3), ['playback-1', 'renders', 'takes/t2 (1).mov']);
      assert.equal(sent.args[3], Math.fround(5_000_000_000));
      assert.equal(sent.args[4], 1.5);
      assert.deepEqual(failed.args, ['playback-1', '', 't3.mov', 'HASH_MISMATCH: checksum differs']);
      assert.equal(failed.tags, ',ssss');
    }
    assert.deepEqual(log.records.filter((r) => r.level === 'warn'), []);
  });

  test('progress is sent only when enabled and at most ~4/s per job', async (t) => {
    const r = await oscReceiver();
    const view = new FakeView();
    const osc = new OscNotifier(view, { targets: [{ host: '127.0.0.1', port: r.port }], heartbeatSeconds: 0, progress: true }, { log: memoryLogger(), agentName: 'a' });
    osc.start();
    t.after(() => {
      osc.stop();
      r.close();
    });
    view.addPeer({ name: 'p' });
    const j = view.queueJob('/out/x.bin', 'p', { size: 1000 });
    view.start(j.id);
    // Updates for at least 600 ms, the last one after the loop: at least two messages (the
    // first, and one >= 250 ms later). Sends are gated on Date.now(), so over the measured
    // span at most span/250 + 1 can go out, however loaded the machine (load only loosens it).
    const t0 = Date.now();
    let n = 0;
    while (Date.now() - t0 < 600) {
      view.progress(j.id, Math.min(1000, ++n));
      await sleep(2);
    }
    view.progress(j.id, Math.min(1000, ++n));
    const spanMs = Date.now() - t0;
    view.receive({ file: 'marker' }); // datagrams arrive in order on loopback: the end of the progress
    await until(() => r.messages.some((m) => m.address === '/tdxfer/received'));
    const progress = r.messages.filter((m) => m.address === '/tdxfer/progress');
    assert.ok(progress.length >= 2 && progress.length <= Math.floor(spanMs / 250) + 1, `${progress.length} progress messages for ${n} updates in ${spanMs} ms: expected 2 to one per 250 ms`);
    assert.equal(progress[0]!.tags, ',ssfii');
    assert.deepEqual(progress[0]!.args, ['p', 'x.bin', 0.10000000149011612, 1, 1000]);
  });

  test('alive heartbeat carries the agent name, uptime and role; 0 turns it off', async () => {
    const r = await oscReceiver();
    const view = new FakeView({ startedAt: Date.now() - 42_000 });
    const osc = new OscNotifier(view, { targets: [{ host: '127.0.0.1', port: r.port }], heartbeatSeconds: 0.05, progress: false }, { log: memoryLogger(), agentName: 'render-1', role: 'render' });
    osc.start();
    await until(() => r.messages.length >= 3);
    osc.stop();
    const first = r.messages[0]!;
    assert.equal(first.address, '/tdxfer/alive');
    assert.equal(first.tags, ',sis');
    assert.equal(first.args[0], 'render-1');
    assert.ok((first.args[1] as number) >= 42 && (first.args[1] as number) <= 43);
    assert.equal(first.args[2], 'render');

    const off = new OscNotifier(view, { targets: [{ host: '127.0.0.1', port: r.port }], heartbeatSeconds: 0, progress: false }, { log: memoryLogger(), agentName: 'x' });
    const before = r.messages.length;
    off.start();
    // An enabled heartbeat beats at start(); a later datagram from the same notifier proves none came.
    view.receive({ file: 'marker' });
    await until(() => r.messages.length > before);
    off.stop();
    r.close();
    assert.deepEqual(r.messages.slice(before).map((m) => m.address), ['/tdxfer/received']);
  });

  test('a failing target is logged once per state change, never thrown; others still get messages', async (t) => {
    const r = await oscReceiver();
    const view = new FakeView();
    const log = memoryLogger();
    const osc = new OscNotifier(
      view,
      // Port 0 cannot be sent to: every datagram to it fails synchronously or in the callback.
      { targets: [{ host: '127.0.0.1', port: 0 }, { host: '127.0.0.1', port: r.port }], heartbeatSeconds: 0, progress: false },
      { log, agentName: 'a' },
    );
    osc.start();
    t.after(() => {
      osc.stop();
      r.close();
    });
    for (let i = 0; i < 5; i++) view.receive({ file: `f${i}.mov` });
    await until(() => r.messages.length === 5);
    view.receive({ file: 'f5.mov' }); // the first five sends' callbacks have run once this one arrives
    await until(() => r.messages.length === 6);
    const warns = log.records.filter((x) => x.level === 'warn');
    assert.equal(warns.length, 1, JSON.stringify(warns));
    assert.equal(warns[0]!.fields.target, '127.0.0.1:0');
  });

  test('without targets it does nothing and registers no listeners', () => {
    const view = new FakeView();
    const osc = new OscNotifier(view, { targets: [], heartbeatSeconds: 5, progress: true }, { log: memoryLogger(), agentName: 'a' });
    osc.start();
    assert.equal(view.listenerCount('received') + view.listenerCount('job') + view.listenerCount('progress'), 0);
    osc.stop();
  });
  test('after ready(), /tdxfer/received leaves inside the event: a process killed right after emitting it (same tick) still sent it, to an IP and to a host name', async (t) => {
    const r = await oscReceiver();
    t.after(() => r.close());
    const dir = await mkdtemp(path.join(os.tmpdir(), 'tdx-osc-kill-'));
    t.after(() => rm(dir, { recursive: true, force: true }));
    const script = path.join(dir, 'emit-and-die.mjs');
    const notifier = new URL('../../src/osc/notifier.js', import.meta.url).href;
    await writeFile(
      script,
      `import { EventEmitter } from 'node:events';
import { OscNotifier } from ${JSON.stringify(notifier)};
const view = new EventEmitter();
const log = { debug() {}, info() {}, warn() {}, error() {}, child() { return log; } };
const osc = new OscNotifier(view, { targets: [{ host: '127.0.0.1', port: ${r.port} }, { host: 'localhost', port: ${r.port} }], heartbeatSeconds: 0, progress: false }, { log, agentName: 'x' });
osc.start();
await osc.ready();
setTimeout(() => {
  view.emit('received', { inbox: 'in', file: 'a.mov', path: '/in/a.mov', size: 1, from: 'render', via: 'tdxfer', durationMs: 0, at: 0 });
  process.kill(process.pid, 'SIGKILL');
}, 10);
`,
    );
    const child = spawn(process.execPath, [script], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const [, signal] = (await once(child, 'exit')) as [number | null, string | null];
    assert.ok(signal === 'SIGKILL' || process.platform === 'win32', `the child was killed (${signal}): ${stderr}`);
    await waitUntil(() => r.messages.length >= 2, 10_000, () => `both datagrams arrived (got ${r.messages.length}); child said: ${stderr}`);
    assert.deepEqual(r.messages.map((m) => [m.address, m.args[1]]), [['/tdxfer/received', 'a.mov'], ['/tdxfer/received', 'a.mov']]);
  });
});
