/**
 * The small files' staging and landing calls go through QuickFs (synchronous while the
 * folders are local and fast, issue #12), and never synchronously on an inbox marked
 * `networkDrive` (a mapped drive letter the agent cannot recognise as a share).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import path from 'node:path';
import { assertQuickCalls, localQuickFs } from '../helpers/quickfs.js';
import { fixture, sha, bytes, send } from './util.js';

for (const networkDrive of [false, true]) {
  test(`a small file lands ${networkDrive ? 'with every call through the thread pool (networkDrive)' : 'with synchronous calls (a local inbox)'}`, async () => {
    const fx = await fixture('overwrite', networkDrive ? { networkDrive: true } : {});
    try {
      const quick = localQuickFs();
      const ib = await fx.open({ quick });
      const data = bytes(4096);
      const f = await send(ib, 'seq/frame.0001.png', data);
      await f.commit(sha(data));
      assert.equal(sha(await fs.readFile(path.join(fx.inboxDir, 'seq', 'frame.0001.png'))), sha(data));
      assertQuickCalls(quick, networkDrive);
    } finally {
      await fx.cleanup();
    }
  });
}
