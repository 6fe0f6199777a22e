/**
 * Issue #14, inbox side of Windows locking: TouchDesigner's Movie File In TOP keeps the
 * file it plays open. When a new version of that name arrives (onCollision "overwrite"),
 * nothing may be lost or half-replaced: the old file stays intact while it is held, the
 * verified new version waits in staging, the sender keeps its file (no ACK, not archived),
 * one log line names the file and the likely holder, and the new version lands as soon
 * as the handle is released; then, and only then, the sender archives it.
 *
 * On Windows (the wine lane) the holder is a real exclusive handle (UV_FS_O_EXLOCK, no
 * sharing, as a player without FILE_SHARE_DELETE); POSIX has no such lock, there a rename
 * over an open file simply succeeds (the second test pins that).
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import { constants } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import type { Agent } from '../../src/agent/agent.js';
import { memoryLogger } from '../../src/log.js';
import { decode } from 'node-osc';
import { OscNotifier } from '../../src/osc/notifier.js';
import { statusText } from '../../src/cli/status-cmd.js';
import { presentSnapshot } from '../../src/status/present.js';
import { sha256File, startAgent, waitUntil, writeRandomFile } from '../helpers/agents.js';
import { isWindows } from '../helpers/platform.js';
import { makePair, runCleanup, stagingData, type Cleanup } from './util.js';

const cleanup: Cleanup = [];
after(() => runCleanup(cleanup));
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
const UV_FS_O_EXLOCK = 0x10000000;

/** A real UDP OSC receiver on 127.0.0.1 (TouchDesigner's OSC In DAT), and the receiving agent's notifier sending to it. */
async function oscOn(rx: Agent): Promise<Array<{ address: string; args: unknown[] }>> {
  const sock = dgram.createSocket('udp4');
  const messages: Array<{ address: string; args: unknown[] }> = [];
  sock.on('message', (buf) => {
    const m = decode(buf) as { address: string; args: Array<{ value: unknown }> };
    messages.push({ address: m.address, args: m.args.map((a) => a.value) });
  });
  await new Promise<void>((resolve) => sock.bind(0, '127.0.0.1', resolve));
  const osc = new OscNotifier(rx, { targets: [{ host: '127.0.0.1', port: sock.address().port }], heartbeatSeconds: 0, progress: false }, { log: memoryLogger(), agentName: 'rx' });
  osc.start();
  cleanup.push(async () => {
    osc.stop();
    sock.close();
  });
  return messages;
}

async function pairWithOldVersion(inboxExtra: Record<string, unknown> = {}) {
  const p = await makePair(cleanup, { onCollision: 'overwrite', settleMs: 100, inboxExtra });
  const rxLog = memoryLogger();
  const txLog = memoryLogger();
  const rx: Agent = await startAgent(p.bCfg, rxLog);
  await p.receiverListening(rx.listenAddress.port);
  cleanup.push(() => rx.stop());
  const tx: Agent = await startAgent(p.aCfg, txLog);
  cleanup.push(() => tx.stop());
  // Version 1 arrives normally and is archived by the sender.
  await fs.mkdir(p.src, { recursive: true });
  await writeRandomFile(path.join(p.src, 'loop.mov'), 200_000);
  const v1 = await sha256File(path.join(p.src, 'loop.mov'));
  await fs.rename(path.join(p.src, 'loop.mov'), path.join(p.outbox, 'loop.mov'));
  await waitUntil(async () => (await fs.stat(path.join(p.sent, 'loop.mov')).catch(() => null)) !== null, 30_000, () => 'version 1 archived');
  assert.equal(await sha256File(path.join(p.inbox, 'loop.mov')), v1);
  await fs.rm(path.join(p.sent, 'loop.mov'));
  return { p, rx, rxLog, txLog, v1 };
}

test('Windows: a new version of a file another program holds open waits staged, the old one stays intact, and it lands (then is archived) once released', { skip: isWindows ? false : 'Windows-only: POSIX has no mandatory file locks (see the next test)' }, async () => {
  const { p, rx, rxLog, v1 } = await pairWithOldVersion();
  const osc = await oscOn(rx);
  const target = path.join(p.inbox, 'loop.mov');
  // The "player": an exclusive handle on the file the receiver is about to replace.
  const player = await fs.open(target, constants.O_RDONLY | UV_FS_O_EXLOCK);
  let released = false;
  cleanup.push(async () => {
    if (!released) await player.close();
  });

  await writeRandomFile(path.join(p.src, 'loop.mov'), 300_000);
  const v2 = await sha256File(path.join(p.src, 'loop.mov'));
  await fs.rename(path.join(p.src, 'loop.mov'), path.join(p.outbox, 'loop.mov'));
  await waitUntil(() => rxLog.records.some((r) => r.level === 'warn' && r.msg.includes('another program holds it open') && r.msg.includes('loop.mov')), 60_000, () => `the "held open" warning; receiver log: ${JSON.stringify(rxLog.records.slice(-10))}`);
  // Held across several sender retries: nothing changes hands.
  const heldSince = Date.now();
  while (Date.now() - heldSince < 3000) await sleep(250);
  const buf = Buffer.alloc(16);
  assert.equal((await player.read(buf, 0, 16, 0)).bytesRead, 16, 'the player still reads its file');
  assert.ok(await fs.stat(path.join(p.outbox, 'loop.mov')), 'the sender keeps the file in its outbox (no ACK yet)');
  assert.equal(await fs.stat(path.join(p.sent, 'loop.mov')).catch(() => null), null, 'not archived while not landed');
  assert.equal((await stagingData(p.staging)).length, 1, 'the verified new version waits in staging');
  assert.equal(rxLog.records.filter((r) => r.msg.includes('another program holds it open')).length, 1, 'one log line per held episode');
  const held = rx.snapshot().held ?? [];
  assert.deepEqual(held.map((h) => [h.inbox, h.rel, h.path]), [['renders', 'loop.mov', target]], 'the status lists the held file');
  assert.ok(held[0]!.sinceMs <= heldSince && held[0]!.likelyHolder.length > 0);
  // `tdxfer status` prints the /status document (presentSnapshot) with this section.
  assert.match(statusText(presentSnapshot(rx.snapshot()), null), /\nheld \(waiting for another program to let go\):\n {2}inbox "renders": loop\.mov held open by .*Movie File In TOP.* for \d+ s \(E[A-Z]+\); the new version waits staged\n/);
  await waitUntil(() => osc.some((m) => m.address === '/tdxfer/waiting'), 30_000, () => `OSC /tdxfer/waiting; got ${JSON.stringify(osc)}`);
  const waiting = osc.filter((m) => m.address === '/tdxfer/waiting');
  assert.deepEqual(waiting[0]!.args.slice(0, 3), ['renders', 'loop.mov', target]);
  assert.equal(typeof waiting[0]!.args[3], 'number', 'held seconds');
  assert.equal(osc.some((m) => m.address === '/tdxfer/received'), false, 'no /tdxfer/received while held');

  await player.close();
  released = true;
  await waitUntil(async () => (await fs.stat(path.join(p.sent, 'loop.mov')).catch(() => null)) !== null, 60_000, () => 'version 2 landed and archived after the release');
  assert.equal(await sha256File(target), v2, 'the inbox has the new version');
  assert.notEqual(v1, v2);
  assert.deepEqual(await stagingData(p.staging), [], 'nothing left in staging');
  assert.deepEqual((await fs.readdir(p.inbox)).sort(), ['loop.mov'], 'replaced in place, no second copy');
  assert.ok(rxLog.records.some((r) => r.msg.includes('released by the program that held it')));
  assert.deepEqual(rx.snapshot().held, [], 'no longer listed once replaced');
  assert.doesNotMatch(statusText(presentSnapshot(rx.snapshot()), null), /held \(waiting/);
  await waitUntil(() => osc.some((m) => m.address === '/tdxfer/received'), 30_000, () => `OSC /tdxfer/received after the release; got ${JSON.stringify(osc)}`);
  const received = osc.find((m) => m.address === '/tdxfer/received')!;
  assert.deepEqual(received.args.slice(0, 3), ['renders', 'loop.mov', target]);
  assert.ok(osc.indexOf(received) > osc.findLastIndex((m) => m.address === '/tdxfer/waiting'), 'received comes after the last waiting');
});

test('Windows: after heldMaxSeconds the new version lands beside the held file as "name (1).ext", acknowledged once; the held file stays intact', { skip: isWindows ? false : 'Windows-only: POSIX has no mandatory file locks' }, async () => {
  const { p, rx, rxLog, v1 } = await pairWithOldVersion({ heldMaxSeconds: 2 });
  const target = path.join(p.inbox, 'loop.mov');
  const player = await fs.open(target, constants.O_RDONLY | UV_FS_O_EXLOCK);
  let closed = false;
  cleanup.push(async () => {
    if (!closed) await player.close();
  });
  await writeRandomFile(path.join(p.src, 'loop.mov'), 300_000);
  const v2 = await sha256File(path.join(p.src, 'loop.mov'));
  await fs.rename(path.join(p.src, 'loop.mov'), path.join(p.outbox, 'loop.mov'));
  await waitUntil(async () => (await fs.stat(path.join(p.sent, 'loop.mov')).catch(() => null)) !== null, 120_000, () => `version 2 landed beside the held file and archived; receiver log: ${JSON.stringify(rxLog.records.slice(-10))}`);
  assert.equal(await sha256File(path.join(p.inbox, 'loop (1).mov')), v2, 'the new version under the collision-renamed name');
  assert.deepEqual((await fs.readdir(p.inbox)).sort(), ['loop (1).mov', 'loop.mov']);
  assert.equal(rxLog.records.filter((r) => r.level === 'warn' && r.msg.includes('landed beside it')).length, 1, 'one warning says so');
  assert.deepEqual(rx.snapshot().held, [], 'no longer waiting');
  assert.deepEqual(await stagingData(p.staging), [], 'nothing left in staging');
  await player.close();
  closed = true;
  assert.equal(await sha256File(target), v1, 'the held file is unchanged');
});

test('POSIX: a new version replaces a file that is open for reading; the reader keeps the old bytes', { skip: isWindows ? 'Windows is the case above' : false }, async () => {
  const { p } = await pairWithOldVersion();
  const target = path.join(p.inbox, 'loop.mov');
  const reader = await fs.open(target, 'r');
  cleanup.push(() => reader.close());
  const before = Buffer.alloc(200_000);
  await writeRandomFile(path.join(p.src, 'loop.mov'), 300_000);
  const v2 = await sha256File(path.join(p.src, 'loop.mov'));
  await fs.rename(path.join(p.src, 'loop.mov'), path.join(p.outbox, 'loop.mov'));
  await waitUntil(async () => (await fs.stat(path.join(p.sent, 'loop.mov')).catch(() => null)) !== null, 30_000, () => 'version 2 archived');
  assert.equal(await sha256File(target), v2);
  assert.equal((await reader.read(before, 0, before.length, 0)).bytesRead, 200_000, 'the open handle still reads the complete old version');
});
