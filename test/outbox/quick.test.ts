/**
 * The outbox watcher's per-file stats and open checks go through QuickFs (synchronous while
 * the outbox is local and fast, issue #12), and never synchronously on an outbox marked
 * `networkDrive` (a mapped drive letter the agent cannot recognise as a share).
 */
import { test } from 'node:test';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { OutboxConfig } from '../../src/config/types.js';
import { memoryLogger } from '../../src/log.js';
import { OutboxWatcher } from '../../src/outbox/watcher.js';
import { assertQuickCalls, localQuickFs } from '../helpers/quickfs.js';
import { tempDir } from '../helpers/tmp.js';
import { waitUntil } from '../helpers/wait.js';

for (const networkDrive of [false, true]) {
  test(`a small file is found ready ${networkDrive ? 'with every call through the thread pool (networkDrive)' : 'with synchronous calls (a local outbox)'}`, async () => {
    const root = await tempDir('tdxfer-outbox-quick-');
    const outbox: OutboxConfig = { path: root, to: [], include: [], exclude: [], after: 'keep', settleMs: 100, ...(networkDrive ? { networkDrive: true } : {}) };
    const quick = localQuickFs();
    const w = new OutboxWatcher(outbox, { log: memoryLogger(), quick });
    const ready: string[] = [];
    w.on('ready', (f) => ready.push(f.rel));
    try {
      await w.start();
      await mkdir(path.join(root, 'seq'), { recursive: true });
      await writeFile(path.join(root, 'seq', 'frame.0001.png'), 'x'.repeat(4096));
      await waitUntil(() => ready.includes('seq/frame.0001.png'), undefined, () => `ready: ${JSON.stringify(ready)}, calls ${JSON.stringify(quick.counts)}`);
      assertQuickCalls(quick, networkDrive);
    } finally {
      await w.stop();
      await rm(root, { recursive: true, force: true, maxRetries: 5 });
    }
  });
}
