/**
 * Issue #10 item 7: the inbox or its staging folder swapped for a symlink while the
 * receiving agent runs. Real agent processes; the swap happens between two transfers.
 * Nothing may appear in the link's target, and the refusal must say what happened.
 */
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import { listFiles, tempDir, waitUntil } from '../helpers/agents.js';
import { p, runAgent } from './util.js';
import { wineFlaw } from '../helpers/platform.js';

describe('inbox or staging swapped for a symlink while running', () => {
  for (const which of ['inbox', 'staging'] as const) {
    test(`${which} folder replaced by a link to another folder: nothing is written there`, { skip: wineFlaw('symlinkNoop') }, async (t) => {
      const receiver = await runAgent({ name: 'receiver' });
      t.after(() => receiver.stop());
      const elsewhere = await tempDir('tdx-sec-elsewhere-');
      t.after(() => fs.rm(elsewhere, { recursive: true, force: true }));
      const dir = await tempDir('tdx-sec-swap-sender-');
      await fs.mkdir(p(dir, 'outbox'), { recursive: true });
      const sender = await runAgent({
        name: 'sender',
        dir,
        extra: {
          outboxes: [{ path: 'outbox', to: [{ peer: 'receiver', inbox: 'renders' }], settleMs: 100 }],
          peers: [{ name: 'receiver', host: '127.0.0.1', port: receiver.port }],
        },
      });
      t.after(async () => {
        await sender.stop();
        await fs.rm(dir, { recursive: true, force: true });
      });
      // A first file lands normally: the receiver has opened its inbox and staging. Waited for
      // until the sender archived it (after the ACK): seeing it in the inbox is not enough, the
      // landing still fsyncs the inbox folder after the rename, and a swap then fails that file.
      await fs.writeFile(p(dir, 'outbox', 'first.png'), 'first');
      await waitUntil(async () => (await listFiles(p(dir, 'outbox'))).includes('sent/first.png'), 60_000, () => sender.proc.output().slice(-2000));
      assert.ok((await listFiles(p(receiver.dir, 'inbox'))).includes('first.png'));

      const folder = which === 'inbox' ? p(receiver.dir, 'inbox') : p(receiver.dir, '.inbox.tdxfer-staging');
      await fs.rename(folder, `${folder}.moved`);
      await fs.symlink(elsewhere, folder);

      await fs.writeFile(p(dir, 'outbox', 'top.png'), 'must not land outside');
      await receiver.proc.waitFor(new RegExp(`the ${which === 'inbox' ? 'inbox' : 'staging'} folder .* now resolves to .*replaced by a symlink or junction while the agent runs\\); nothing is written there`), 60_000);
      // The sender hears a clear refusal, and keeps the file to retry.
      await sender.proc.waitFor(/replaced by a symlink or junction/, 60_000);
      assert.deepEqual(await listFiles(elsewhere), [], 'nothing written into the link target');
      assert.ok((await listFiles(p(dir, 'outbox'))).includes('top.png'), 'the file stays in the outbox');

      // Put back: the retried file lands in the real inbox.
      await fs.unlink(folder);
      await fs.rename(`${folder}.moved`, folder);
      await waitUntil(async () => (await listFiles(p(receiver.dir, 'inbox'))).includes('top.png'), 60_000, () => sender.proc.output().slice(-2000));
      assert.deepEqual(await listFiles(elsewhere), []);
    });
  }
});
