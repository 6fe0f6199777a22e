import { test } from 'node:test';
import assert from 'node:assert/strict';
import { appendFile, mkdir, readFile, stat, writeFile } from 'node:fs/promises';
import { tempDirForFile } from '../helpers/tmp.js';
import path from 'node:path';
import { memoryLogger } from '../../src/log.js';
import { COMPACT_MIN_LINES, SentJournal } from '../../src/outbox/journal.js';

// Removed after the whole file, once every test closed its journals: a test's own after
// hooks run in the order they were added, and Windows cannot remove a folder holding an
// open file (ENOTEMPTY).
/** An absolute outbox path on this platform (`C:\\ob` on Windows): the journal stores resolved paths. */
const OB = path.resolve('/ob');

const tempDir = (_t: unknown): Promise<string> => tempDirForFile('tdxfer-journal-');

const keepAll = { exists: () => true };

test('round trip: records survive a reopen', async (t) => {
  const dir = await tempDir(t);
  const file = path.join(dir, 'data', 'sent.jsonl');
  const ob = path.join(dir, 'outbox');
  const j = await SentJournal.open(file, keepAll);
  await j.record(ob, 'a.png', 10, 1000.5);
  await j.record(ob, 'shot1/f.0001.png', 20, 2000, ['peerA/in', 'peerB/in']);
  await j.recordDestination(ob, 'big.mov', 30, 3000, 'peerA/in');
  await j.record(ob, 'gone.png', 1, 1);
  await j.forget(ob, 'gone.png');
  assert.equal(j.has(ob, 'a.png', 10, 1000.5), true);
  await j.close();

  const k = await SentJournal.open(file, keepAll);
  t.after(() => k.close());
  assert.equal(k.has(ob, 'a.png', 10, 1000.5), true);
  assert.equal(k.has(ob, 'a.png', 10, 1000.6), false, 'another mtime is another version');
  assert.equal(k.has(ob, 'a.png', 11, 1000.5), false, 'another size is another version');
  assert.equal(k.has(path.join(dir, 'other'), 'a.png', 10, 1000.5), false);
  assert.equal(k.has(ob, 'shot1/f.0001.png', 20, 2000), true);
  assert.deepEqual([...k.doneDestinations(ob, 'shot1/f.0001.png', 20, 2000)].sort(), ['peerA/in', 'peerB/in']);
  assert.equal(k.has(ob, 'big.mov', 30, 3000), false, 'one destination is not "sent"');
  assert.deepEqual([...k.doneDestinations(ob, 'big.mov', 30, 3000)], ['peerA/in']);
  assert.equal(k.has(ob, 'gone.png', 1, 1), false);
  assert.equal(k.size, 3);
  // the outbox path is normalised
  assert.equal(k.has(ob + path.sep + '.', 'a.png', 10, 1000.5), true);
});

test('per-destination progress: a new version starts over', async (t) => {
  const dir = await tempDir(t);
  const j = await SentJournal.open(path.join(dir, 'j.jsonl'), keepAll);
  t.after(() => j.close());
  await j.recordDestination(OB, 'f.mov', 100, 1, 'A');
  await j.recordDestination(OB, 'f.mov', 100, 1, 'B');
  assert.deepEqual([...j.doneDestinations(OB, 'f.mov', 100, 1)].sort(), ['A', 'B']);
  assert.deepEqual([...j.doneDestinations(OB, 'f.mov', 100, 2)], []);
  await j.recordDestination(OB, 'f.mov', 200, 2, 'A');
  assert.deepEqual([...j.doneDestinations(OB, 'f.mov', 200, 2)], ['A']);
  assert.deepEqual([...j.doneDestinations(OB, 'f.mov', 100, 1)], [], 'the old version is replaced');
  const copy = j.doneDestinations(OB, 'f.mov', 200, 2);
  copy.add('X');
  assert.deepEqual([...j.doneDestinations(OB, 'f.mov', 200, 2)], ['A'], 'callers get a copy');
});

test('a torn last line is skipped and removed; appends after it are readable', async (t) => {
  const dir = await tempDir(t);
  const file = path.join(dir, 'j.jsonl');
  const j = await SentJournal.open(file, keepAll);
  await j.record(OB, 'a.png', 1, 1);
  await j.record(OB, 'b.png', 2, 2);
  await j.close();
  await appendFile(file, '{"op":"sent","o":"/ob","r":"c.png","s":3,'); // crash mid-write

  const log = memoryLogger();
  const k = await SentJournal.open(file, { ...keepAll, log });
  assert.equal(k.has(OB, 'a.png', 1, 1), true);
  assert.equal(k.has(OB, 'b.png', 2, 2), true);
  assert.equal(k.has(OB, 'c.png', 3, 3), false);
  assert.equal(log.records.filter((r) => r.level === 'warn').length, 0, 'a torn tail is normal after a crash');
  await k.record(OB, 'd.png', 4, 4);
  await k.close();
  const text = await readFile(file, 'utf8');
  for (const line of text.trim().split('\n')) JSON.parse(line); // every line whole
  const m = await SentJournal.open(file, keepAll);
  t.after(() => m.close());
  assert.equal(m.has(OB, 'd.png', 4, 4), true);
  assert.equal(m.size, 3);
});

test('unreadable lines in the middle are dropped with a warning', async (t) => {
  const dir = await tempDir(t);
  const file = path.join(dir, 'j.jsonl');
  await writeFile(
    file,
    [
      JSON.stringify({ op: 'sent', o: OB, r: 'a', s: 1, m: 1 }),
      'garbage',
      JSON.stringify({ op: 'sent', o: OB, r: 'b', s: 'x', m: 1 }),
      JSON.stringify({ op: 'dest', o: OB, r: 'c', s: 1, m: 1, d: 7 }),
      JSON.stringify({ op: 'sent', o: OB, r: 'e', s: 1, m: 1 }),
      '',
    ].join('\n'),
  );
  const log = memoryLogger();
  const j = await SentJournal.open(file, { ...keepAll, log });
  t.after(() => j.close());
  assert.equal(j.size, 2);
  assert.equal(j.has(OB, 'a', 1, 1), true);
  assert.equal(j.has(OB, 'e', 1, 1), true);
  const warns = log.records.filter((r) => r.level === 'warn');
  assert.equal(warns.length, 1);
  assert.match(warns[0]!.msg, /3 unreadable line/);
});

test('compaction on open: by default keeps only versions still on disk; maxEntries keeps the newest', async (t) => {
  const dir = await tempDir(t);
  const ob = path.join(dir, 'outbox');
  await mkdir(path.join(ob, 'sub'), { recursive: true });
  await writeFile(path.join(ob, 'sub', 'here.png'), 'hello');
  await writeFile(path.join(ob, 'changed.png'), 'v1');
  const here = await stat(path.join(ob, 'sub', 'here.png'));
  const changed = await stat(path.join(ob, 'changed.png'));
  const file = path.join(dir, 'j.jsonl');
  const j = await SentJournal.open(file);
  await j.record(ob, 'sub/here.png', here.size, here.mtimeMs);
  await j.record(ob, 'changed.png', changed.size, changed.mtimeMs);
  await j.record(ob, 'archived.png', 3, 3);
  await j.close();
  await writeFile(path.join(ob, 'changed.png'), 'version 2');

  const k = await SentJournal.open(file);
  assert.equal(k.size, 1);
  assert.equal(k.has(ob, 'sub/here.png', here.size, here.mtimeMs), true);
  await k.close();
  assert.equal((await readFile(file, 'utf8')).trim().split('\n').length, 1, 'the file is rewritten compacted');

  const many = await SentJournal.open(path.join(dir, 'many.jsonl'), keepAll);
  for (let i = 0; i < 10; i++) await many.record(OB, `f${i}`, i, i);
  await many.record(OB, 'f0', 0, 0); // touched again: now the newest
  await many.close();
  const few = await SentJournal.open(path.join(dir, 'many.jsonl'), { ...keepAll, maxEntries: 3 });
  t.after(() => few.close());
  assert.equal(few.size, 3);
  assert.deepEqual(['f0', 'f8', 'f9'].map((r) => few.has(OB, r, Number(r.slice(1)), Number(r.slice(1)))), [true, true, true]);
});

test('writes after close fail with a clear error', async (t) => {
  const dir = await tempDir(t);
  const j = await SentJournal.open(path.join(dir, 'j.jsonl'), keepAll);
  await j.close();
  await assert.rejects(j.record(OB, 'a', 1, 1), (e: Error & { code?: string }) => e.code === 'JOURNAL_CLOSED');
});

test('an unreadable journal path is reported with what to do', async (t) => {
  const dir = await tempDir(t);
  const asDir = path.join(dir, 'is-a-folder');
  await mkdir(asDir);
  await assert.rejects(SentJournal.open(asDir), (e: Error & { code?: string }) => e.code === 'JOURNAL_READ_FAILED' && e.message.includes(asDir));
});

test('concurrent records are all durable and whole', async (t) => {
  const dir = await tempDir(t);
  const file = path.join(dir, 'j.jsonl');
  const j = await SentJournal.open(file, keepAll);
  await Promise.all(Array.from({ length: 50 }, (_, i) => (i % 2 ? j.record(OB, `f${i}`, i, i) : j.recordDestination(OB, `f${i}`, i, i, 'A'))));
  await j.close();
  const lines = (await readFile(file, 'utf8')).trim().split('\n');
  assert.equal(lines.length, 50);
  const k = await SentJournal.open(file, keepAll);
  t.after(() => k.close());
  assert.equal(k.size, 50);
  assert.equal(k.has(OB, 'f49', 49, 49), true);
  assert.deepEqual([...k.doneDestinations(OB, 'f48', 48, 48)], ['A']);
});

test('while running, the file is compacted once it holds more than twice the lines needed (weeks of sending stay bounded, issue #20)', async (t) => {
  const dir = await tempDir(t);
  const file = path.join(dir, 'j.jsonl');
  const j = await SentJournal.open(file, keepAll);
  t.after(() => j.close());
  await j.record(OB, 'kept.png', 1, 1); // after: keep, stays known
  let most = 0;
  // Files that are archived after sending: each leaves a `sent` and a `forget` line.
  for (let i = 0; i < 2 * COMPACT_MIN_LINES; i++) {
    await j.record(OB, `f${i}.png`, i, i);
    await j.forget(OB, `f${i}.png`);
    most = Math.max(most, j.linesInFile);
  }
  assert.ok(most <= COMPACT_MIN_LINES + 1, `the file held ${most} lines at most`);
  const lines = (await readFile(file, 'utf8')).trim().split('\n').length;
  assert.ok(lines <= COMPACT_MIN_LINES + 1, `${lines} lines now`);
  assert.equal(j.has(OB, 'kept.png', 1, 1), true);
  // Closed first, as the agent does: on Windows the reopening journal's compaction cannot
  // replace a file that another journal still holds open.
  await j.close();
  const k = await SentJournal.open(path.join(dir, 'j.jsonl'), keepAll);
  t.after(() => k.close());
  assert.equal(k.size, 1, 'reopened: only the kept file, the archived ones are forgotten');
  assert.equal(k.has(OB, 'kept.png', 1, 1), true);
});
