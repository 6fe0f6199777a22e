/**
 * The chokidar folder watch (src/outbox/chokidar.ts: Windows, macOS, and polling
 * everywhere) on its own, with real folders: its backstop sweep (backstop.ts, shared with
 * the native watch) finds what chokidar's events did not report. Runs on Linux and in the
 * Windows lane (wine), where this is the outbox's watch.
 */
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, rename, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { watchFolder } from '../../src/outbox/chokidar.js';
import { tempDirFor } from '../helpers/tmp.js';
import { waitUntil } from '../helpers/wait.js';
import { watching } from './watch-recorder.js';

/** Drops a file as a writer does: written under an ignored name, renamed in (one event). */
async function drop(root: string, rel: string): Promise<void> {
  const to = path.join(root, ...rel.split('/'));
  await writeFile(`${to}.tmp`, rel);
  await rename(`${to}.tmp`, to);
}

describe('chokidar folder watch: the backstop sweep', () => {
  test('a file whose add event was lost is found by the sweep, reported once as missed; the watch goes on', async (t) => {
    const base = await tempDirFor(t, 'tdx-chokidar-');
    const root = path.join(base, 'out');
    await mkdir(path.join(root, 'quiet'), { recursive: true });
    await writeFile(path.join(root, 'quiet', 'old.mov'), 'old');
    const w = await watching(t, watchFolder, root, { sweepMs: 500, ignored: (p) => p.endsWith('.tmp') });
    await w.seen('quiet/old.mov', 'the initial scan');
    // Lose chokidar's next 'add' event (every listener, as an OS dropping the event would):
    // a probe proves chokidar did emit it, and nothing of ours heard it.
    const listeners = w.fw.chokidar.listeners('add') as Array<(...a: unknown[]) => void>;
    w.fw.chokidar.removeAllListeners('add');
    const lost: string[] = [];
    const probe = (p: string) => lost.push(path.basename(p));
    w.fw.chokidar.on('add', probe);
    await drop(root, 'quiet/late.mov');
    await waitUntil(() => lost.includes('late.mov'), undefined, () => `chokidar emitted add for late.mov (lost: ${JSON.stringify(lost)})`);
    w.fw.chokidar.off('add', probe);
    for (const l of listeners) w.fw.chokidar.on('add', l);
    assert.ok(!w.files.has('quiet/late.mov'), 'the lost event reported nothing');
    // Only the sweep can find it now: nothing else happens in quiet/.
    await w.seen('quiet/late.mov', 'the file whose event was lost');
    assert.deepEqual(w.missed, [{ dir: 'quiet', count: 1 }], 'the sweep said what it found, once (old.mov and the ignored .tmp name are not missed)');
    // Later files are reported by the watch as before.
    await drop(root, 'quiet/next.mov');
    await w.seen('quiet/next.mov', 'a file after the sweep');
    assert.equal(w.missed.length, 1, `nothing else counted as missed: ${JSON.stringify(w.missed)}`);
    assert.deepEqual(w.errors, []);
    // Closed before the folder is removed (the t.after hooks run in the order registered):
    // on Windows a watched folder cannot be removed while its watch is open.
    await w.fw.close();
  });
});
