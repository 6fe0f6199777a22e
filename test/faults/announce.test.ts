/**
 * Issue #19 item 4: every landing is announced exactly once, crash or not. A long stream of
 * small files flows into a receiver that is killed (SIGKILL) again and again: the moment a
 * new name appears in its inbox (the window between the rename and the announcement), or
 * at a seeded random moment. Each kill is followed by a restart. In the end every file is
 * in the inbox once with the right bytes; per file the onReceive hook (appending a line to
 * a file) ran and a real UDP listener got OSC `/tdxfer/received`, once from the landing
 * itself at most; a second one only as the announcement a restart repeats (flagged
 * recovered), when the kill came while the first was going out (README Guarantees: the
 * mark is written once the hook started and the datagram was sent, so a kill in those
 * milliseconds repeats rather than loses it). No landing is left marked unannounced.
 *
 * Before the fix a file that landed just before a kill was answered "duplicate" after the
 * restart and never announced: its hook and OSC counts were 0.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import path from 'node:path';
import { hashTree, listFiles, spawnCli, waitUntil, writeRandomFile, type Spawned } from '../helpers/agents.js';
import { oscListener } from '../e2e/status-helpers.js';
import { assertDelivered, makePair, runCleanup, seededRandom, sleep, type Cleanup } from './util.js';
import { linuxOnly, deadline } from '../helpers/platform.js';
import { MIN_DEADLINE_MS } from '../helpers/wait.js';

const cleanup: Cleanup = [];
after(() => runCleanup(cleanup));

const ROUNDS = 8;
const PER_ROUND = 30;

/** Resolves with the first name in `dir` not in `known` (polling as fast as readdir allows), or null when `stop()` says so. */
async function firstNewName(dir: string, known: Set<string>, stop: () => boolean): Promise<string | null> {
  // A hang detector: no new name within the deadline fails the test instead of polling for ever.
  const end = Date.now() + deadline(MIN_DEADLINE_MS * 2);
  while (!stop()) {
    if (Date.now() > end) throw new Error(`no new name in ${dir} within ${deadline(MIN_DEADLINE_MS * 2)} ms`);
    const names = await fs.readdir(dir).catch(() => [] as string[]);
    const fresh = names.find((n) => !known.has(n));
    if (fresh !== undefined) return fresh;
    await new Promise((r) => setImmediate(r));
  }
  return null;
}

test(`kill -9 of the receiver right after landings and at random moments, ${ROUNDS} rounds: every file there once, its hook run and OSC message once each`, { skip: linuxOnly('/bin/sh (the hook command)') }, async () => {
  const rnd = seededRandom('announce rounds');
  const osc = await oscListener();
  cleanup.push(async () => osc.close());
  const hookLog = path.join(await fs.mkdtemp(path.join((await import('node:os')).tmpdir(), 'tdx-hooklog-')), 'hooks.log');
  cleanup.push(() => fs.rm(path.dirname(hookLog), { recursive: true, force: true }));
  const p = await makePair(cleanup, {
    onCollision: 'rename',
    after: 'archive',
    settleMs: 100,
    inboxExtra: { onReceive: { command: ['/bin/sh', '-c', 'echo "$TDXFER_REL ${TDXFER_RECOVERED:-0}" >> "$1"', 'hook', hookLog] } },
    receiverExtra: { osc: { targets: [{ host: '127.0.0.1', port: osc.port }], heartbeatSeconds: 0 } },
  });

  const sizes = new Map<string, number>();
  const batches: string[] = [];
  for (let b = 0; b <= ROUNDS; b++) {
    const dir = path.join(p.root, `batch${b}`);
    for (let i = 0; i < PER_ROUND; i++) {
      const rel = `r${String(b).padStart(2, '0')}-${String(i).padStart(3, '0')}.bin`;
      const n = rnd.int(1, 24 * 1024);
      await writeRandomFile(path.join(dir, rel), n);
      sizes.set(rel, n);
    }
    batches.push(dir);
  }
  const expected = new Map<string, string>();
  for (const dir of batches) for (const [k, v] of await hashTree(dir)) expected.set(k, v);
  const drop = async (b: number): Promise<void> => {
    for (const f of await fs.readdir(batches[b]!)) await fs.rename(path.join(batches[b]!, f), path.join(p.outbox, f));
  };

  let receiver: Spawned | null = null;
  let pinned = false;
  const startReceiver = async (): Promise<Spawned> => {
    const s = spawnCli(['run', '--config', p.bCfg]);
    cleanup.push(() => s.stop('SIGKILL'));
    receiver = s;
    await s.waitFor(/listening for transfers/);
    // The first start picks a port (0); makePair then writes the sender's config with it and
    // pins it in the receiver's config, so every restart listens on the same port.
    if (!pinned) await p.receiverListening(await s.transferPort());
    pinned = true;
    return s;
  };
  await startReceiver();
  const sender = spawnCli(['run', '--config', p.aCfg]);
  cleanup.push(() => sender.stop('SIGKILL'));
  await drop(0);

  const kills: string[] = [];
  let rightAfterLanding = 0;
  for (let round = 1; round <= ROUNDS; round++) {
    await drop(round);
    const victim: Spawned = receiver!;
    if (round % 3 !== 0) {
      // Right after a landing: the moment a new name shows in the inbox.
      const known = new Set(await fs.readdir(p.inbox).catch(() => [] as string[]));
      const allThere = (): boolean => known.size >= sizes.size || victim.child.exitCode !== null;
      const name = await firstNewName(p.inbox, known, allThere);
      victim.child.kill('SIGKILL');
      if (name !== null) rightAfterLanding++;
      kills.push(`round ${round}: right after ${name ?? '(nothing new)'} landed`);
    } else {
      const delay = rnd.int(0, 400);
      await sleep(delay);
      victim.child.kill('SIGKILL');
      kills.push(`round ${round}: after ${delay} ms`);
    }
    await victim.stop();
    await startReceiver();
  }
  process.stdout.write(`# kills: ${kills.join('; ')}\n`);
  assert.ok(rightAfterLanding >= 3, `at least 3 kills came right after a landing (${kills.join('; ')})`);

  const hookLines = async (): Promise<string[]> => (await fs.readFile(hookLog, 'utf8').catch(() => '')).split('\n').filter((l) => l !== '');
  const oscFiles = (): string[] => osc.messages.filter((m) => m.address === '/tdxfer/received').map((m) => String(m.args[1]));
  const count = (names: string[]): Map<string, number> => {
    const m = new Map<string, number>();
    for (const n of names) m.set(n, (m.get(n) ?? 0) + 1);
    return m;
  };
  const outputs = (): string => `receiver:\n${receiver!.output().slice(-3000)}\nsender:\n${sender.output().slice(-1500)}`;
  await waitUntil(async () => (await listFiles(p.sent)).length === sizes.size, 90_000, () => `everything confirmed and archived (${kills.join('; ')})\n${outputs()}`);
  await waitUntil(
    async () => {
      const hooks = count((await hookLines()).map((l) => l.split(' ')[0]!));
      const oscs = count(oscFiles());
      return [...sizes.keys()].every((f) => hooks.has(f) && oscs.has(f));
    },
    60_000,
    () => `every file announced (hook and OSC) (${kills.join('; ')})\n${outputs()}`,
  );
  // A clean stop: every announcement under way finishes and is marked in the journal.
  await receiver!.stop('SIGTERM');
  await sender.stop('SIGTERM');

  await assertDelivered(p, expected);
  const lines = await hookLines();
  const hooks = count(lines.map((l) => l.split(' ')[0]!));
  const oscs = count(oscFiles());
  const plain = count(lines.filter((l) => l.endsWith(' 0')).map((l) => l.split(' ')[0]!));
  const wrong: string[] = [];
  const repeated: string[] = [];
  for (const f of sizes.keys()) {
    if ((hooks.get(f) ?? 0) < 1) wrong.push(`${f}: no hook run`);
    if ((oscs.get(f) ?? 0) < 1) wrong.push(`${f}: no OSC message`);
    // The announcement of the landing itself comes once; any other is a recovered repeat.
    if ((plain.get(f) ?? 0) > 1) wrong.push(`${f}: ${plain.get(f)} hook runs not flagged recovered`);
    if ((hooks.get(f) ?? 0) > 1 || (oscs.get(f) ?? 0) > 1) repeated.push(`${f} (${hooks.get(f)} hook runs, ${oscs.get(f)} OSC)`);
  }
  const recovered = lines.filter((l) => l.endsWith(' 1')).length;
  process.stdout.write(`# ${sizes.size} files, ${recovered} hook runs after a restart (recovered); repeated: ${repeated.join(', ') || 'none'}\n`);
  assert.deepEqual(wrong, [], `each file announced, once unless recovered (kills: ${kills.join('; ')})`);
  // A kill repeats at most the announcements going out at that moment (a landing batch).
  assert.ok(repeated.length <= kills.length * 16, `repeated announcements: ${repeated.join(', ')}`);
  assert.deepEqual([...hooks.keys()].filter((f) => !sizes.has(f)), [], 'no hook run for a file that was not sent');

  // Nothing is left marked "landed, not yet announced" in the inbox journal.
  const journal = path.join(p.root, 'b', 'data', 'state', 'inboxes', 'renders', 'landed.jsonl');
  const pending = new Set<string>();
  for (const line of (await fs.readFile(journal, 'utf8')).split('\n').filter((l) => l !== '')) {
    const r = JSON.parse(line) as { source?: string; rel?: string; at?: number; pending?: boolean; announced?: { source: string; rel: string; at: number } };
    if (r.announced) pending.delete(`${r.announced.source}/${r.announced.rel}/${r.announced.at}`);
    else if (r.pending) pending.add(`${r.source}/${r.rel}/${r.at}`);
  }
  assert.deepEqual([...pending], [], 'no landing left unannounced in the journal');
});
