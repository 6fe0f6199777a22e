/**
 * Issue #10 item 2: symlinks in an outbox, against real agent processes. A folder link and
 * a file link pointing outside the outbox, with after: delete and after: archive: nothing
 * outside is sent, moved or deleted; the skipped links are warned about and show in /health.
 */
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import { listFiles, tempDir, waitUntil } from '../helpers/agents.js';
import { httpRequest } from '../helpers/http.js';
import { p, runAgent } from './util.js';

describe('symlinks in an outbox are not followed by default', () => {
  for (const after of ['delete', 'archive'] as const) {
    test(`folder link and file link to outside, after: ${after}`, async (t) => {
      const receiver = await runAgent({ name: 'receiver' });
      t.after(() => receiver.stop());
      const outside = await tempDir('tdx-sec-outside-');
      t.after(() => fs.rm(outside, { recursive: true, force: true }));
      await fs.mkdir(p(outside, 'projects'), { recursive: true });
      await fs.writeFile(p(outside, 'projects', 'plan.txt'), 'not for the outbox');
      await fs.writeFile(p(outside, 'shadow'), 'secret');
      const dir = await tempDir('tdx-sec-sender-');
      await fs.mkdir(p(dir, 'outbox'), { recursive: true });
      await fs.symlink(p(outside, 'projects'), p(dir, 'outbox', 'projects'));
      await fs.symlink(p(outside, 'shadow'), p(dir, 'outbox', 'shadow.txt'));
      await fs.writeFile(p(dir, 'outbox', 'real.png'), 'a real file');
      const sender = await runAgent({
        name: 'sender',
        dir,
        extra: {
          outboxes: [{ path: 'outbox', to: [{ peer: 'receiver', inbox: 'renders' }], after, settleMs: 100 }],
          peers: [{ name: 'receiver', host: '127.0.0.1', port: receiver.port }],
        },
      });
      t.after(async () => {
        await sender.stop();
        await fs.rm(dir, { recursive: true, force: true });
      });
      // The real file goes; that is the event that says the outbox was processed.
      await waitUntil(async () => (await listFiles(p(receiver.dir, 'inbox'))).includes('real.png'), 60_000, () => sender.proc.output().slice(-2000));
      await sender.proc.waitFor(/Skipping symlink .*shadow\.txt/, 30_000);
      await sender.proc.waitFor(/Skipping symlink .*projects/, 30_000);
      const health = await httpRequest(`${sender.base}/health`);
      assert.equal(health.status, 503);
      const problems = health.json<{ problems: string[] }>().problems.join('\n');
      assert.match(problems, /symlink shadow\.txt/);
      assert.match(problems, /symlink projects/);
      const status = await httpRequest(`${sender.base}/status`);
      assert.equal(status.status, 200);
      // Nothing outside was sent, moved or deleted.
      assert.deepEqual(await listFiles(p(receiver.dir, 'inbox')), ['real.png']);
      assert.equal(await fs.readFile(p(outside, 'projects', 'plan.txt'), 'utf8'), 'not for the outbox');
      assert.equal(await fs.readFile(p(outside, 'shadow'), 'utf8'), 'secret');
    });
  }
});
