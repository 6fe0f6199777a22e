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
import { wineFlaw } from '../helpers/platform.js';

describe('symlinks in an outbox are not followed by default', () => {
  for (const after of ['delete', 'archive'] as const) {
    test(`folder link and file link to outside, after: ${after}`, { skip: wineFlaw('symlinkNoop') }, async (t) => {
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

describe('outboxes[].followSymlinks: true: after-actions act on the link, never on the target', () => {
  for (const after of ['delete', 'archive'] as const) {
    test(`folder link and file link are sent, after: ${after} leaves the targets untouched`, { skip: wineFlaw('symlinkNoop') }, async (t) => {
      const receiver = await runAgent({ name: 'receiver' });
      t.after(() => receiver.stop());
      const outside = await tempDir('tdx-sec-linked-');
      t.after(() => fs.rm(outside, { recursive: true, force: true }));
      await fs.mkdir(p(outside, 'renders'), { recursive: true });
      await fs.writeFile(p(outside, 'renders', 'frame.png'), 'linked folder file');
      await fs.writeFile(p(outside, 'take.mov'), 'linked file');
      const dir = await tempDir('tdx-sec-follow-');
      await fs.mkdir(p(dir, 'outbox'), { recursive: true });
      await fs.symlink(p(outside, 'renders'), p(dir, 'outbox', 'renders'));
      await fs.symlink(p(outside, 'take.mov'), p(dir, 'outbox', 'take.mov'));
      const sender = await runAgent({
        name: 'sender',
        dir,
        extra: {
          outboxes: [{ path: 'outbox', to: [{ peer: 'receiver', inbox: 'renders' }], after, settleMs: 100, followSymlinks: true }],
          peers: [{ name: 'receiver', host: '127.0.0.1', port: receiver.port }],
        },
      });
      t.after(async () => {
        await sender.stop();
        await fs.rm(dir, { recursive: true, force: true });
      });
      await waitUntil(async () => {
        const got = await listFiles(p(receiver.dir, 'inbox'));
        return got.includes('take.mov') && got.includes('renders/frame.png');
      }, 60_000, () => sender.proc.output().slice(-2000));
      // The file link itself is deleted or archived (as a link) once sent.
      const gone = async (f: string): Promise<boolean> => fs.lstat(f).then(() => false, () => true);
      await waitUntil(() => gone(p(dir, 'outbox', 'take.mov')), 60_000, () => sender.proc.output().slice(-2000));
      if (after === 'archive') {
        const archived = await fs.lstat(p(dir, 'outbox', 'sent', 'take.mov'));
        assert.ok(archived.isSymbolicLink(), 'the link itself was archived');
        assert.equal(await fs.readlink(p(dir, 'outbox', 'sent', 'take.mov')), p(outside, 'take.mov'));
      }
      await sender.proc.waitFor(/sent through a linked folder/, 30_000);
      // The targets are untouched: the linked folder's file and the linked file.
      assert.equal(await fs.readFile(p(outside, 'renders', 'frame.png'), 'utf8'), 'linked folder file');
      assert.equal(await fs.readFile(p(outside, 'take.mov'), 'utf8'), 'linked file');
      assert.ok((await fs.lstat(p(dir, 'outbox', 'renders'))).isSymbolicLink(), 'the folder link stays');
      assert.deepEqual(await listFiles(outside), ['renders/frame.png', 'take.mov']);
    });
  }
});
