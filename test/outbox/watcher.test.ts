import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { mkdir, open, rename, rm, unlink, writeFile } from 'node:fs/promises';
import { mkdirAfterRemove, tempDir as makeTempDir } from '../helpers/tmp.js';
import { deadline, wineFlaw } from '../helpers/platform.js';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import type { OutboxConfig } from '../../src/config/types.js';
import { memoryLogger } from '../../src/log.js';
import { OutboxWatcher, type ReadyFile } from '../../src/outbox/watcher.js';
import { quietWindow, waitUntil } from '../helpers/wait.js';

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

type T = { after: (fn: () => Promise<void>) => void };

/** The watchers each test started: its temp folder is removed only after they are stopped. */
const watchersOf = new WeakMap<T, OutboxWatcher[]>();

/**
 * A temp folder removed when test `t` ends, after the watchers the test started are stopped:
 * `t.after` hooks run in the order they were added, and on Windows a folder that a watcher
 * still holds cannot be removed (ENOTEMPTY; its entries stay delete-pending).
 */
async function tempDir(t: T): Promise<string> {
  const dir = await makeTempDir('tdxfer-outbox-');
  t.after(async () => {
    for (const w of watchersOf.get(t) ?? []) await w.stop();
    await rm(dir, { recursive: true, force: true, maxRetries: 5 });
  });
  return dir;
}

function cfg(p: string, over: Partial<OutboxConfig> = {}): OutboxConfig {
  return { path: p, to: [], include: [], exclude: [], after: 'archive', settleMs: 150, ...over };
}

async function put(root: string, rel: string, data: string | Buffer = 'x'): Promise<void> {
  const abs = path.join(root, ...rel.split('/'));
  await mkdir(path.dirname(abs), { recursive: true });
  await writeFile(abs, data);
}

/** A started watcher with every event recorded (and the time it arrived). */
async function started(t: { after: (fn: () => Promise<void>) => void }, outbox: OutboxConfig, extra: { ignore?: string[]; pollMs?: number } = {}) {
  const log = memoryLogger();
  const w = new OutboxWatcher(outbox, { log, ...extra });
  const ready: Array<ReadyFile & { at: number }> = [];
  const gone: string[] = [];
  w.on('ready', (f) => ready.push({ ...f, at: performance.now() }));
  w.on('gone', (g) => gone.push(g.rel));
  watchersOf.set(t, [...(watchersOf.get(t) ?? []), w]);
  t.after(() => w.stop());
  await w.start();
  const waitFor = (what: string, pred: () => boolean, timeoutMs?: number): Promise<void> =>
    waitUntil(pred, timeoutMs, () => `${what}; ready=${JSON.stringify(ready.map((r) => r.rel))} gone=${JSON.stringify(gone)} log=${JSON.stringify(log.records.filter((r) => r.level !== 'debug'))}`);
  const readyFor = (rel: string) => ready.filter((r) => r.rel === rel);
  let barriers = 0;
  /**
   * Proves that nothing written before it is still on its way: a new file, written now, is
   * emitted only after everything written earlier (same settle rule, events in order), so
   * once it is, any extra or repeated event would have been seen. Returns its name.
   */
  const barrier = async (): Promise<string> => {
    const rel = `zz-barrier-${++barriers}.png`;
    await put(outbox.path, rel);
    await waitFor(rel, () => readyFor(rel).length === 1);
    return rel;
  };
  /** Events other than the barriers'. */
  const readyRels = (): string[] => ready.map((r) => r.rel).filter((r) => !r.startsWith('zz-barrier-'));
  return { w, log, ready, gone, waitFor, readyFor, barrier, readyRels };
}

describe('OutboxWatcher', () => {
  test('existing files are emitted after settling, keep their subpath; ignored names, sent/, agent folders and excluded files never are', async (t) => {
    const root = await tempDir(t);
    const stage = path.join(root, 'stage');
    // On Windows and macOS `Sent/` is the archive folder `sent/` (case-insensitive volumes).
    const caseless = process.platform === 'win32' || process.platform === 'darwin';
    const wanted = ['a.png', 'shot1/f.0001.png', 'shot1/deep/f.0002.png', ...(caseless ? [] : ['Sent/x.png']), 'shot1/sent/y.png'];
    const unwanted = [...(caseless ? ['Sent/x.png'] : []), '.DS_Store', 'Thumbs.db', 'desktop.ini', 'r.tmp', 'm.mov.part', '~$doc.docx', 'v.swp', 'bak~', 'sent/old.png', 'sent/shot/old.png', '.hidden/a.png', 'notes.txt', 'shot1/notes.txt', 'stage/partial.bin'];
    for (const rel of [...wanted, ...unwanted]) await put(root, rel, `content of ${rel}`);
    const written = performance.now();
    const outbox = cfg(root, { exclude: ['**/*.txt'] });
    const s = await started(t, outbox, { ignore: [stage] });
    await s.waitFor('all wanted files', () => s.ready.length >= wanted.length);
    assert.deepEqual(s.ready.map((r) => r.rel).sort(), [...wanted].sort());
    for (const r of s.ready) {
      // A lower bound only (not emitted before it settled): load can only make it later.
      assert.ok(r.at - written >= outbox.settleMs - 5, `${r.rel} emitted ${Math.round(r.at - written)} ms after writing, before settleMs`);
      assert.equal(r.abs, path.join(root, ...r.rel.split('/')));
      assert.equal(r.size, Buffer.byteLength(`content of ${r.rel}`));
      assert.equal(r.outbox, outbox);
    }
    // Files arriving later in ignored places stay ignored too.
    for (const rel of ['sent/new.png', '.hidden/new.png', 'stage/new.bin', 'late.tmp', 'late.txt']) await put(root, rel);
    await put(root, 'late.png');
    await s.waitFor('late.png', () => s.readyFor('late.png').length === 1);
    await s.barrier();
    assert.equal(s.readyRels().length, wanted.length + 1, JSON.stringify(s.readyRels()));
    assert.equal(s.w.pendingCount, 0);
  });

  test('include globs: **/*.png matches at the root and below, *.exr only at the root', async (t) => {
    const root = await tempDir(t);
    for (const rel of ['a.png', 'd/b.png', 'c.exr', 'd/c.exr', 'e.mov']) await put(root, rel);
    const s = await started(t, cfg(root, { include: ['**/*.png', '*.exr'], settleMs: 50 }));
    await s.waitFor('3 files', () => s.ready.length >= 3);
    await s.barrier();
    assert.deepEqual(s.readyRels().sort(), ['a.png', 'c.exr', 'd/b.png']);
  });

  test('a file written in 5 slow bursts (pauses < settleMs) is emitted exactly once, complete', async (t) => {
    const root = await tempDir(t);
    // Pauses of 150 ms against a settle time of 3 s: a stall of ~2.8 s on a loaded machine
    // would be needed to make a pause look like the end of the file.
    const outbox = cfg(root, { settleMs: 3000 });
    const s = await started(t, outbox);
    const fh = await open(path.join(root, 'slow.exr'), 'w');
    const chunk = Buffer.alloc(64 * 1024, 7);
    let lastWrite = 0;
    for (let i = 0; i < 5; i++) {
      await fh.write(chunk);
      lastWrite = performance.now();
      if (i < 4) await sleep(150);
    }
    await fh.close();
    await s.waitFor('slow.exr', () => s.ready.length > 0);
    await s.barrier();
    assert.deepEqual(s.readyRels(), ['slow.exr']);
    assert.equal(s.ready[0]!.size, 5 * chunk.length);
    assert.ok(s.ready[0]!.at - lastWrite >= outbox.settleMs - 5, 'emitted before the last burst had settled');
  });

  test('a 0-byte file that then grows is emitted once with its final size', async (t) => {
    const root = await tempDir(t);
    // A 150 ms pause against a settle time of 3 s (see the slow-bursts test).
    const s = await started(t, cfg(root, { settleMs: 3000 }));
    const fh = await open(path.join(root, 'td.mov'), 'w');
    await sleep(150);
    await fh.write(Buffer.alloc(1000, 1));
    await fh.close();
    await s.waitFor('td.mov', () => s.ready.length > 0);
    await s.barrier();
    assert.deepEqual(s.readyRels(), ['td.mov']);
    assert.equal(s.ready[0]!.size, 1000);
  });

  test('a stable empty file is emitted (after settleMs)', async (t) => {
    const root = await tempDir(t);
    const s = await started(t, cfg(root, { settleMs: 100 }));
    await put(root, 'empty.flag', '');
    await s.waitFor('empty.flag', () => s.ready.length === 1);
    assert.equal(s.ready[0]!.size, 0);
  });

  test('a file replaced after emit is emitted again with the new version; an untouched one is not', async (t) => {
    const root = await tempDir(t);
    const s = await started(t, cfg(root, { settleMs: 100 }));
    await put(root, 'r.png', 'v1');
    await s.waitFor('v1', () => s.ready.length === 1);
    const first = s.ready[0]!;
    s.w.release('r.png');
    await sleep(30); // make sure the mtime differs even on coarse clocks
    await put(root, 'r.png', 'version two');
    await s.waitFor('v2', () => s.ready.length === 2);
    const second = s.ready[1]!;
    assert.equal(second.rel, 'r.png');
    assert.equal(second.size, Buffer.byteLength('version two'));
    assert.notEqual(second.mtimeMs, first.mtimeMs);
    await s.barrier();
    assert.deepEqual(s.readyRels(), ['r.png', 'r.png']);
  });

  test('gone: for emitted and pending files, not for released ones', async (t) => {
    const root = await tempDir(t);
    const s = await started(t, cfg(root, { settleMs: 400 }));
    await put(root, 'a.png');
    await put(root, 'kept.png');
    await s.waitFor('a and kept', () => s.ready.length === 2);
    s.w.release('kept.png');
    await unlink(path.join(root, 'a.png'));
    await unlink(path.join(root, 'kept.png'));
    await s.waitFor('gone a.png', () => s.gone.includes('a.png'));
    await put(root, 'pending.png');
    await s.waitFor('pending.png seen', () => s.w.pendingCount === 1);
    await unlink(path.join(root, 'pending.png'));
    await s.waitFor('gone pending.png', () => s.gone.includes('pending.png'));
    await s.barrier();
    assert.deepEqual(s.gone.sort(), ['a.png', 'pending.png']);
    assert.deepEqual(s.readyRels().sort(), ['a.png', 'kept.png']);
  });

  // How fast is measured by `npm run bench`; this test checks that none is lost or repeated.
  test('2000 files dropped at once are all emitted, each once', async (t) => {
    const base = await tempDir(t);
    const root = path.join(base, 'outbox');
    const incoming = path.join(base, 'incoming');
    await mkdir(root);
    const settleMs = 200;
    const n = 2000;
    const body = Buffer.alloc(4096, 1);
    // Prepared outside the outbox, then dropped in by two folder renames (like a copy
    // finishing or a user dragging two folders in).
    for (const d of ['batchA', 'batchB']) await mkdir(path.join(incoming, d), { recursive: true });
    for (let i = 0; i < n; i += 100) {
      await Promise.all(Array.from({ length: 100 }, (_, k) => writeFile(path.join(incoming, (i + k) % 2 ? 'batchA' : 'batchB', `f${i + k}.bin`), body)));
    }
    const s = await started(t, cfg(root, { settleMs }));
    await rename(path.join(incoming, 'batchA'), path.join(root, 'batchA'));
    await rename(path.join(incoming, 'batchB'), path.join(root, 'batchB'));
    await s.waitFor(`${n} files`, () => s.ready.length >= n, 120_000);
    await s.barrier();
    const rels = s.readyRels();
    assert.equal(new Set(rels).size, n, 'each file');
    assert.equal(rels.length, n, 'each file exactly once');
    assert.ok(rels.includes('batchA/f1.bin') && rels.includes('batchB/f0.bin'));
  });

  // inotify drops events silently once its queue (fs.inotify.max_queued_events, 16,384 by
  // default) is full; the watcher must still find every file (dirwatch.ts re-reads folders).
  test('more files than the OS queues events for, written while the event loop is blocked, are all emitted, each once', async (t) => {
    const root = await tempDir(t);
    const n = 10_000; // two events each (create, modify): 20,000 > 16,384
    const s = await started(t, cfg(root, { settleMs: 100 }));
    // Synchronous writes: nothing reads the event queue meanwhile, so it overflows.
    for (let i = 0; i < n; i++) writeFileSync(path.join(root, `f${i}.bin`), 'x');
    await s.waitFor(`${n} files`, () => s.ready.length >= n, 300_000);
    await s.barrier();
    const rels = s.readyRels();
    assert.equal(new Set(rels).size, n, 'each file');
    assert.equal(rels.length, n, 'each file exactly once');
  });

  test('stop() leaves no timers or handles and no events follow', async (t) => {
    const root = await tempDir(t);
    const before = countHandles();
    const s = await started(t, cfg(root, { settleMs: 50 }));
    await put(root, 'a.png');
    await s.waitFor('a.png', () => s.ready.length === 1);
    await put(root, 'pending.png');
    await s.w.stop();
    // chokidar closes fs.watch handles asynchronously and lets its 50 ms throttle timers
    // run out; none of ours may remain, and theirs must drain by themselves.
    let after = countHandles();
    for (let i = 0; i < 100 && (after.Timeout > before.Timeout || after.FSEvent > before.FSEvent); i++) {
      await sleep(10);
      after = countHandles();
    }
    assert.ok(after.Timeout <= before.Timeout, `timers left: ${JSON.stringify({ before, after })}`);
    assert.ok(after.FSEvent <= before.FSEvent, `fs watchers left: ${JSON.stringify({ before, after })}`);
    await put(root, 'b.png');
    // No later event can prove a stopped watcher silent, so this is a stated window: a live
    // watcher with settleMs 50 emits a new file after ~50 ms plus one poll turn (<= 50 ms);
    // 3 s is 30 times that, and a miss under extreme load could only hide a bug, not fail.
    await quietWindow(3000);
    assert.equal(s.ready.length, 1);
  });

  test('a process using the watcher exits by itself after stop()', async (t) => {
    const root = await tempDir(t);
    const watcherUrl = pathToFileURL(path.join(path.dirname(fileURLToPath(import.meta.url)), '../../src/outbox/watcher.js')).href;
    const logUrl = pathToFileURL(path.join(path.dirname(fileURLToPath(import.meta.url)), '../../src/log.js')).href;
    const script = `
      const { OutboxWatcher } = await import(${JSON.stringify(watcherUrl)});
      const { memoryLogger } = await import(${JSON.stringify(logUrl)});
      const fs = await import('node:fs/promises');
      const w = new OutboxWatcher({ path: ${JSON.stringify(root)}, to: [], include: [], exclude: [], after: 'keep', settleMs: 50 }, { log: memoryLogger() });
      const got = new Promise((r) => w.once('ready', r));
      await w.start();
      await fs.writeFile(${JSON.stringify(path.join(root, 'x.png'))}, 'x');
      await got;
      await fs.writeFile(${JSON.stringify(path.join(root, 'y.png'))}, 'y');
      await w.stop();
      console.log('stopped');
    `;
    // Under tsx the .js specifiers resolve to the .ts sources; compiled, they are the .js files.
    const child = spawn(process.execPath, [...process.execArgv, '--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    const code = await new Promise<number | null>((resolve) => {
      const killer = setTimeout(() => {
        child.kill('SIGKILL');
        resolve(null);
      }, deadline(15_000));
      child.on('exit', (c) => {
        clearTimeout(killer);
        resolve(c);
      });
    });
    assert.equal(code, 0, `child did not exit by itself: ${out}`);
    assert.match(out, /stopped/);
  });

  test('a throwing listener is logged and the watcher keeps working', async (t) => {
    const root = await tempDir(t);
    const s = await started(t, cfg(root, { settleMs: 30 }));
    s.w.prependListener('ready', () => {
      throw new Error('listener bug');
    });
    await put(root, 'a.png');
    await put(root, 'b.png');
    await s.waitFor('both', () => s.log.records.filter((r) => r.msg.includes('listener bug')).length >= 2 && s.w.pendingCount === 0);
    await put(root, 'c.png');
    await s.waitFor('c.png attempted', () => s.log.records.filter((r) => r.msg.includes('listener bug')).length >= 3);
  });

  test('recovers when the outbox folder is moved away, replaced, or missing at start; does not re-emit sent versions', async (t) => {
    const base = await tempDir(t);
    const root = path.join(base, 'outbox');
    // Missing at start: start() resolves with a warning, files are picked up once it exists.
    const s = await started(t, cfg(root, { settleMs: 50 }));
    assert.ok(s.log.records.some((r) => r.level === 'warn' && r.msg.includes('missing')), 'missing folder is logged');
    await mkdir(root);
    await put(root, 'a.png');
    await s.waitFor('a.png after the folder appeared', () => s.readyFor('a.png').length === 1, 8000);

    // Moved away and back: same folder identity, same file version -> not emitted again.
    await rename(root, `${root}.away`);
    await s.waitFor('problem logged', () => s.log.records.some((r) => r.level === 'warn' && r.msg.includes('deleted or replaced')), 5000);
    await rename(`${root}.away`, root);
    await put(root, 'b.png');
    await s.waitFor('b.png after move back', () => s.readyFor('b.png').length === 1, 8000);
    assert.equal(s.readyFor('a.png').length, 1, 'a.png was emitted again after recovery');
    assert.ok(s.log.records.some((r) => r.level === 'info' && r.msg.includes('again')), 'recovery is logged');
    const warns = s.log.records.filter((r) => r.level === 'warn' || r.level === 'error');
    assert.ok(warns.length <= 3, `problems are logged once per episode, got ${JSON.stringify(warns)}`);
  });

  test('recovers when the outbox folder is deleted and re-created: the files that vanished are gone, new ones are sent', { skip: wineFlaw('watchedFolderDelete') }, async (t) => {
    const base = await tempDir(t);
    const root = path.join(base, 'outbox');
    await mkdir(root);
    await put(root, 'a.png');
    await put(root, 'b.png');
    const s = await started(t, cfg(root, { settleMs: 50 }));
    await s.waitFor('a.png and b.png', () => s.readyFor('a.png').length === 1 && s.readyFor('b.png').length === 1, 8000);
    await rm(root, { recursive: true });
    await mkdirAfterRemove(root); // Windows: the removed folder is delete-pending for a moment (EEXIST)
    await put(root, 'c.png');
    await s.waitFor('c.png in the new folder', () => s.readyFor('c.png').length === 1, 8000);
    await s.waitFor('a and b gone', () => s.gone.includes('a.png') && s.gone.includes('b.png'), 3000);
    assert.equal(s.readyFor('a.png').length, 1, 'a.png was emitted again');
    const warns = s.log.records.filter((r) => r.level === 'warn' || r.level === 'error');
    assert.ok(warns.length <= 2, `problems are logged once per episode, got ${JSON.stringify(warns)}`);
  });

  test('a chokidar error (EMFILE) is logged once with a fix and the watcher keeps working by polling', async (t) => {
    const root = await tempDir(t);
    const s = await started(t, cfg(root, { settleMs: 30 }));
    await put(root, 'a.png');
    await s.waitFor('a.png', () => s.ready.length === 1);
    // Make the real chokidar instance report the error it reports when fs.watch hits the limit.
    const fsw = (s.w as unknown as { supervisor: { fw: { chokidar: import('node:events').EventEmitter } } }).supervisor.fw.chokidar;
    const err = Object.assign(new Error('EMFILE: too many open files, watch'), { code: 'EMFILE' });
    fsw.emit('error', err);
    fsw.emit('error', err);
    await put(root, 'b.png');
    await s.waitFor('b.png after the error', () => s.readyFor('b.png').length === 1, 8000);
    const errors = s.log.records.filter((r) => r.level === 'error');
    assert.equal(errors.length, 1, JSON.stringify(errors));
    assert.match(errors[0]!.msg, /too many open files.*ulimit|LimitNOFILE/);
    assert.equal(s.readyFor('a.png').length, 1, 'not re-emitted after the restart');
  });
  test('a file moved into a folder created a moment earlier is emitted, also when that folder is removed and re-created (chokidar reads a new folder before watching it)', async (t) => {
    const root = await tempDir(t);
    const ob = path.join(root, 'out');
    await mkdir(ob);
    const { w, ready, waitFor } = await started(t, cfg(ob));
    // Regression: several of these 30 were never reported before the watcher re-read new folders.
    for (let i = 0; i < 30; i++) {
      const rel = `fan/f${i}.bin`;
      await mkdirAfterRemove(path.join(ob, 'fan'), { recursive: true });
      const tmp = path.join(root, `.f${i}.tmp`);
      await writeFile(tmp, Buffer.alloc(1000, i));
      await rename(tmp, path.join(ob, rel));
      await waitFor(`${rel} (${i + 1}th new folder)`, () => ready.some((r) => r.rel === rel));
      w.release(rel);
      await unlink(path.join(ob, rel));
      await rm(path.join(ob, 'fan'), { recursive: true });
      await sleep(50);
    }
  });
});

function countHandles(): { Timeout: number; FSEvent: number } {
  const info = process.getActiveResourcesInfo();
  return { Timeout: info.filter((x) => x === 'Timeout').length, FSEvent: info.filter((x) => x === 'FSEventWrap' || x === 'StatWatcher').length };
}
