/** WatchSupervisor on its own (no poll loop): real folders, a real chokidar watch. */
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { memoryLogger } from '../../src/log.js';
import { WatchSupervisor, type SupervisedEvents } from '../../src/outbox/supervisor.js';
import { isWindows, wineFlaw } from '../helpers/platform.js';
import { mkdirAfterRemove } from '../helpers/tmp.js';
import { waitUntil } from '../helpers/wait.js';

function recorder(root: string): { on: SupervisedEvents; files: string[]; scans: string[][] } {
  const files: string[] = [];
  const scans: string[][] = [];
  const on: SupervisedEvents = {
    ignored: () => false,
    file: (abs) => {
      const rel = path.relative(root, abs).split(path.sep).join('/');
      files.push(rel);
      return rel;
    },
    unlink: () => undefined,
    unlinkDir: () => undefined,
    found: () => false,
    scanned: (seen) => scans.push([...seen].sort()),
    kick: () => undefined,
  };
  return { on, files, scans };
}

describe('WatchSupervisor', () => {
  test('reports the files of its first scan, then new files', async (t) => {
    const base = await mkdtemp(path.join(os.tmpdir(), 'tdx-sup-'));
    await writeFile(path.join(base, 'a.bin'), 'a');
    const r = recorder(base);
    const sup = new WatchSupervisor({ root: base, log: memoryLogger(), followSymlinks: false, usePolling: false }, r.on);
    // Stop before removing: Windows cannot remove a folder while the watch holds it.
    t.after(async () => {
      await sup.stop();
      await rm(base, { recursive: true, force: true });
    });
    await sup.start();
    assert.deepEqual(r.scans, [['a.bin']]);
    await writeFile(path.join(base, 'b.bin'), 'b');
    await waitUntil(() => r.files.includes('b.bin'), undefined, () => `b.bin in ${JSON.stringify(r.files)}`);
    assert.equal(await sup.checkRoot(), true);
  });

  test('a missing root is warned about once and watched when it appears', async (t) => {
    const base = await mkdtemp(path.join(os.tmpdir(), 'tdx-sup-'));
    const root = path.join(base, 'out');
    const log = memoryLogger();
    const r = recorder(root);
    const sup = new WatchSupervisor({ root, log, followSymlinks: false, usePolling: false }, r.on);
    // Stop before removing: Windows cannot remove a folder while the watch holds it.
    t.after(async () => {
      await sup.stop();
      await rm(base, { recursive: true, force: true });
    });
    await sup.start();
    assert.deepEqual(r.scans, []);
    assert.equal(await sup.checkRoot(), false, 'not watching yet');
    assert.match(log.records.find((x) => x.level === 'warn')?.msg ?? '', /is missing or not a folder/);
    await mkdir(root);
    await writeFile(path.join(root, 'x.bin'), 'x');
    await waitUntil(() => r.scans.length === 1, undefined, () => 'first scan after the root appeared');
    assert.deepEqual(r.scans[0], ['x.bin']);
    assert.match(log.records.find((x) => x.level === 'info')?.msg ?? '', /Watching outbox .* again/);
  });

  test('a removed and re-created root is noticed and rescanned', { skip: wineFlaw('watchedFolderDelete') }, async (t) => {
    const base = await mkdtemp(path.join(os.tmpdir(), 'tdx-sup-'));
    const root = path.join(base, 'out');
    await mkdir(root);
    await writeFile(path.join(root, 'x.bin'), 'x');
    const r = recorder(root);
    const sup = new WatchSupervisor({ root, log: memoryLogger(), followSymlinks: false, usePolling: false }, r.on);
    // Stop before removing: Windows cannot remove a folder while the watch holds it.
    t.after(async () => {
      await sup.stop();
      await rm(base, { recursive: true, force: true });
    });
    await sup.start();
    assert.deepEqual(r.scans, [['x.bin']]);

    await rm(root, { recursive: true });
    if (isWindows) {
      // Windows cannot replace a watched folder at once: its name stays delete-pending while the
      // watch's handle is open (mkdir gives EEXIST). The watch reports EPERM and stat gives EPERM,
      // so the supervisor (its poll: checkRoot) closes the watch; a user re-creating the folder
      // meanwhile retries a moment.
      await waitUntil(async () => (await sup.checkRoot()) === false, undefined, () => 'the removed root noticed');
    }
    await mkdirAfterRemove(root);
    await writeFile(path.join(root, 'y.bin'), 'y');
    await waitUntil(async () => (await sup.checkRoot()) === false || r.scans.length >= 2, undefined, () => 'the replaced root noticed');
    await waitUntil(() => r.scans.length >= 2, undefined, () => 'a rescan of the new root');
    assert.deepEqual(r.scans.at(-1), ['y.bin']);
    assert.equal(await sup.checkRoot(), true);
  });
});
