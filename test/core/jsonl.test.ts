/** The shared JSON-lines journal file (src/jsonl.ts): reading torn files, ordered appends, atomic rewrites, compaction. */
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync, readdirSync, readlinkSync, realpathSync } from 'node:fs';
import { mkdir, readFile, readdir, rm } from 'node:fs/promises';
import path from 'node:path';
import { IDLE_CLOSE_MS, JsonlWriter, parseJsonl, readJsonl } from '../../src/jsonl.js';
import { tempDirForFile } from '../helpers/tmp.js';
import { deadline, underWine } from '../helpers/platform.js';
import { waitUntil } from '../helpers/wait.js';

/** This process's descriptors open on `file` (Linux: /proc/self/fd); null where there is no /proc. */
function descriptorsOn(file: string): number | null {
  if (process.platform !== 'linux' || !existsSync('/proc/self/fd')) return null;
  const real = realpathSync(file);
  let n = 0;
  for (const fd of readdirSync('/proc/self/fd')) {
    try {
      if (readlinkSync(`/proc/self/fd/${fd}`) === real) n++;
    } catch {
      // closed since the listing (the listing's own descriptor)
    }
  }
  return n;
}

const num = (v: unknown): number | null => (typeof v === 'object' && v !== null && typeof (v as { n?: unknown }).n === 'number' ? (v as { n: number }).n : null);

describe('parseJsonl / readJsonl', () => {
  test('accepted lines in order; refused and non-JSON lines in the middle are bad; empty lines ignored', () => {
    const r = parseJsonl('{"n":1}\n\n{"x":2}\nnot json\n{"n":3}\n', num);
    assert.deepEqual(r, { items: [1, 3], bad: 2, torn: false, unterminated: false, lines: 4 });
  });

  test('an unfinished last line (a crash during an append) is torn, not bad; a finished but refused one is bad', () => {
    assert.deepEqual(parseJsonl('{"n":1}\n{"n":', num), { items: [1], bad: 0, torn: true, unterminated: true, lines: 2 });
    assert.deepEqual(parseJsonl('{"n":1}\n{"x":1}\n', num), { items: [1], bad: 1, torn: false, unterminated: false, lines: 2 });
    // A complete record without its newline is read, but an append would continue its line.
    assert.deepEqual(parseJsonl('{"n":1}', num), { items: [1], bad: 0, torn: false, unterminated: true, lines: 1 });
    assert.deepEqual(parseJsonl('', num), { items: [], bad: 0, torn: false, unterminated: false, lines: 0 });
  });

  test('a missing file reads as empty; another read error is thrown', async () => {
    const dir = await tempDirForFile('tdx-jsonl-');
    assert.deepEqual((await readJsonl(path.join(dir, 'none.jsonl'), num)).items, []);
    await assert.rejects(readJsonl(dir, num), (e: Error & { code?: string }) => e.code === 'EISDIR');
  });
});

describe('JsonlWriter', () => {
  for (const keepOpen of [true, false]) {
    test(`appends land in call order, one line per value, folder created${keepOpen ? '' : ' (file opened per append)'}`, async () => {
      const dir = await tempDirForFile('tdx-jsonl-');
      const file = path.join(dir, 'state', 'j.jsonl');
      const w = await JsonlWriter.open(file, { keepOpen });
      await Promise.all([w.append([{ n: 1 }, { n: 2 }], { sync: true }), w.append([{ n: 3 }], { sync: false }), w.append([{ n: 4 }], { sync: true })]);
      assert.equal(w.linesInFile, 4);
      assert.equal(await readFile(file, 'utf8'), '{"n":1}\n{"n":2}\n{"n":3}\n{"n":4}\n');
      await w.close();
      await assert.rejects(w.append([{ n: 5 }], { sync: true }), /closed/);
    });
  }

  for (const keepOpen of [true, false]) {
    test(`appends made before an earlier one is written are written together, in call order${keepOpen ? '' : ' (file opened per append)'}`, async () => {
      const dir = await tempDirForFile('tdx-jsonl-');
      const file = path.join(dir, 'j.jsonl');
      const w = await JsonlWriter.open(file, { keepOpen });
      const first = w.append([{ n: 0 }], { sync: false });
      // All called before the first one's write starts: one write for the 100, one datasync for all.
      const rest = Array.from({ length: 99 }, (_, i) => w.append([{ n: i + 1 }], { sync: i === 50 }));
      await Promise.all([first, ...rest]);
      assert.equal(w.writes, 1);
      assert.deepEqual((await readJsonl(file, num)).items, Array.from({ length: 100 }, (_, i) => i));
      assert.equal(w.linesInFile, 100);
      await w.append([{ n: 100 }], { sync: true });
      assert.equal(w.writes, 2, 'an append after the others ended is a write of its own');
      await w.close();
    });
  }

  test('rewrite replaces the file with the snapshot taken when it runs (after the appends queued before it); no temp file is left', async () => {
    const dir = await tempDirForFile('tdx-jsonl-');
    const file = path.join(dir, 'j.jsonl');
    let state: number[] = [];
    const w = await JsonlWriter.open(file, { snapshot: () => state.map((n) => ({ n })) });
    state = [1, 2];
    const a = w.append([{ n: 1 }, { n: 2 }, { n: 1 }], { sync: true });
    state = [2, 7]; // applied in memory before the rewrite runs
    const r = w.rewrite();
    const b = w.append([{ n: 9 }], { sync: true });
    await Promise.all([a, r, b]);
    assert.equal(await readFile(file, 'utf8'), '{"n":2}\n{"n":7}\n{"n":9}\n', 'the append after the rewrite goes to the new file');
    assert.equal(w.linesInFile, 3);
    assert.deepEqual(await readdir(dir), ['j.jsonl']);
    await w.close();
  });

  test('compactWhen: an append past the bound is followed by a rewrite; the file stays bounded however long it runs', async () => {
    const dir = await tempDirForFile('tdx-jsonl-');
    const file = path.join(dir, 'j.jsonl');
    const live = new Set<number>();
    let rewrites = 0;
    const w = await JsonlWriter.open(file, {
      snapshot: () => (rewrites++, [...live].map((n) => ({ n }))),
      compactWhen: (lines) => lines > Math.max(10, 2 * live.size),
    });
    let maxLines = 0;
    for (let i = 0; i < 200; i++) {
      live.add(i);
      await w.append([{ n: i }], { sync: false });
      live.delete(i - 2); // a few stay, the rest ends
      maxLines = Math.max(maxLines, (await readFile(file, 'utf8')).split('\n').length - 1);
    }
    assert.ok(rewrites >= 10, `${rewrites} compactions`);
    assert.ok(maxLines <= 11, `the file held ${maxLines} lines at most`);
    assert.deepEqual((await readJsonl(file, num)).items.sort((x, y) => x - y).slice(-2), [198, 199]);
    await w.close();
  });

  test('appendSync: the line is in the file when it returns; lines appended synchronously while a rewrite runs are in the file after it', async () => {
    const dir = await tempDirForFile('tdx-jsonl-');
    const file = path.join(dir, 'j.jsonl');
    const live = new Set<number>();
    let snapshotTaken = false;
    const w = await JsonlWriter.open(file, { keepOpen: false, snapshot: () => ((snapshotTaken = true), [...live].map((n) => ({ n }))) });
    let next = 0;
    const add = (): void => {
      live.add(next);
      w.appendSync([{ n: next++ }]);
    };
    add();
    assert.equal(readFileSync(file, 'utf8'), '{"n":0}\n', 'written before appendSync returned');
    // During each rewrite: a synchronous append on every turn of the event loop, some
    // between its snapshot and its rename (those would be lost without the late copy).
    let duringRewrite = 0;
    for (let round = 0; round < 20; round++) {
      snapshotTaken = false;
      let done = false;
      const r = w.rewrite().finally(() => (done = true));
      while (!done) {
        add();
        if (snapshotTaken) duringRewrite++;
        await new Promise((resolve) => setImmediate(resolve));
      }
      await r;
      const inFile = new Set((await readJsonl(file, num)).items);
      assert.deepEqual([...live].filter((n) => !inFile.has(n)), [], `round ${round}: every line appended is in the file`);
      assert.equal(w.linesInFile, (await readFile(file, 'utf8')).split('\n').length - 1, 'linesInFile counts them');
    }
    assert.ok(duringRewrite >= 20, `${duringRewrite} appends came after a snapshot, before its rewrite ended`);
    assert.deepEqual(await readdir(dir), ['j.jsonl'], 'no temp file left');
    await w.flush(); // closes the descriptor the appends shared (Windows: the folder can be removed)
  });

  test('keepOpen false: appends that follow each other share one descriptor; flush(), a rewrite and a quiet period close it', async () => {
    const dir = await tempDirForFile('tdx-jsonl-');
    const file = path.join(dir, 'j.jsonl');
    const w = await JsonlWriter.open(file, { keepOpen: false, snapshot: () => [{ n: 0 }] });
    const open = (): number | null => descriptorsOn(file);
    w.appendSync([{ n: 1 }]);
    await w.append([{ n: 2 }], { sync: true });
    w.appendSync([{ n: 3 }]);
    await Promise.all([w.append([{ n: 4 }], { sync: false }), w.append([{ n: 5 }], { sync: true })]);
    if (open() !== null) assert.equal(open(), 1, 'one descriptor for all of them');
    assert.deepEqual((await readJsonl(file, num)).items, [1, 2, 3, 4, 5]);
    await w.flush();
    if (open() !== null) assert.equal(open(), 0, 'flush() closed it');
    // A rewrite replaces the file: the descriptor of the old one must not take later lines.
    w.appendSync([{ n: 6 }]);
    await w.rewrite();
    w.appendSync([{ n: 7 }]);
    await w.append([{ n: 8 }], { sync: true });
    assert.deepEqual((await readJsonl(file, num)).items, [0, 7, 8]);
    if (open() !== null) {
      assert.equal(open(), 1);
      await waitUntil(() => open() === 0, deadline(IDLE_CLOSE_MS + 30_000), () => `the descriptor closed once idle (${open()} open)`);
    } else {
      await w.flush();
    }
    // Nothing holds the folder (Windows: an open file would keep it from being removed).
    await rm(dir, { recursive: true });
  });

  test('appendSync queues a compaction past the bound', async () => {
    const dir = await tempDirForFile('tdx-jsonl-');
    const file = path.join(dir, 'j.jsonl');
    const live = new Set<number>();
    const w = await JsonlWriter.open(file, { keepOpen: false, snapshot: () => [...live].map((n) => ({ n })), compactWhen: (lines) => lines > 10 });
    for (let i = 0; i < 50; i++) {
      live.clear();
      live.add(i);
      w.appendSync([{ n: i }]);
    }
    await w.flush();
    assert.ok(w.linesInFile <= 10, `${w.linesInFile} lines after the compaction`);
    assert.ok((await readJsonl(file, num)).items.includes(49));
  });

  test('a failed compaction is reported, the append still resolves and the old file stays valid', async () => {
    const dir = await tempDirForFile('tdx-jsonl-');
    const file = path.join(dir, 'j.jsonl');
    const errors: unknown[] = [];
    const w = await JsonlWriter.open(file, {
      keepOpen: false,
      snapshot: () => {
        throw new Error('snapshot failed');
      },
      compactWhen: (lines) => lines > 1,
      onCompactError: (err) => errors.push(err),
    });
    await w.append([{ n: 1 }], { sync: true });
    await w.append([{ n: 2 }], { sync: true });
    assert.equal(errors.length, 1);
    assert.deepEqual((await readJsonl(file, num)).items, [1, 2]);    await w.flush();
  });

  test('an append error rejects that append (and those written with it) only; later appends still run', async () => {
    const dir = await tempDirForFile('tdx-jsonl-');
    const file = path.join(dir, 'sub', 'j.jsonl');
    const w = await JsonlWriter.open(file, { keepOpen: false });
    // A folder where the file belongs: the per-append open fails (EISDIR).
    await mkdir(file);
    // Under wine the open of a folder for appending succeeds and the write fails with EBADF (measured).
    await assert.rejects(w.append([{ n: 1 }], { sync: true }), (e: Error & { code?: string }) => e.code === 'EISDIR' || (underWine && e.code === 'EBADF'));
    await rm(file, { recursive: true });
    await w.append([{ n: 2 }], { sync: true });
    assert.deepEqual((await readJsonl(file, num)).items, [2]);    await w.flush();
  });
});
