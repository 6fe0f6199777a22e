/**
 * Issue #10 item 6 / issue #11 item 8: files that will never be sent are not silent. An
 * agent process running as an unprivileged user (uid 65534, as under the systemd unit's
 * own user) meets a mode-000 file in its outbox: one warning, the file listed under
 * /status `outboxes[].unreadable` with the fix, /health 503 naming it, shown by
 * `tdxfer status`, and sent as soon as it is made readable. Files left out by
 * include/exclude are counted and named per outbox.
 */
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import { listFiles, spawnCli, tempDir, waitUntil } from '../helpers/agents.js';
import { httpRequest } from '../helpers/http.js';
import { p, runAgent, statusJson } from './util.js';

const NOBODY = { uid: 65534, gid: 65534 };
const asRoot = typeof process.getuid === 'function' && process.getuid() === 0;

async function chownTree(dir: string, uid: number, gid: number): Promise<void> {
  await fs.chown(dir, uid, gid);
  for (const e of await fs.readdir(dir, { withFileTypes: true })) {
    const abs = p(dir, e.name);
    if (e.isDirectory()) await chownTree(abs, uid, gid);
    else await fs.chown(abs, uid, gid);
  }
}

interface OutboxRow { path: string; unreadable?: Array<{ file: string; path: string; code: string; fix: string }>; excluded?: { count: number; names: string[] } }

describe('files the agent will not send are visible', { skip: asRoot ? false : 'needs root to run the agent as another user' }, () => {
  test('a mode-000 file: warned once, in /status and /health, in tdxfer status, sent once readable; excluded files listed', async (t) => {
    const receiver = await runAgent({ name: 'receiver' });
    t.after(() => receiver.stop());
    const dir = await tempDir('tdx-sec-unread-');
    t.after(() => fs.rm(dir, { recursive: true, force: true }));
    await fs.mkdir(p(dir, 'outbox'), { recursive: true });
    await fs.writeFile(p(dir, 'outbox', 'ok.png'), 'readable');
    await fs.writeFile(p(dir, 'outbox', 'layers.psd'), 'left out by exclude');
    await fs.writeFile(p(dir, 'outbox', 'locked.png'), 'not readable by the agent');
    await chownTree(dir, NOBODY.uid, NOBODY.gid);
    // Owned by root, mode 000: the agent's user (nobody) cannot open it.
    await fs.chown(p(dir, 'outbox', 'locked.png'), 0, 0);
    await fs.chmod(p(dir, 'outbox', 'locked.png'), 0o000);
    const sender = await runAgent({
      name: 'sender',
      dir,
      as: NOBODY,
      extra: {
        outboxes: [{ path: 'outbox', to: [{ peer: 'receiver', inbox: 'renders' }], exclude: ['*.psd'], settleMs: 100 }],
        peers: [{ name: 'receiver', host: '127.0.0.1', port: receiver.port }],
      },
    });
    t.after(() => sender.stop());

    await waitUntil(async () => (await listFiles(p(receiver.dir, 'inbox'))).includes('ok.png'), 60_000, () => sender.proc.output().slice(-2000));
    await sender.proc.waitFor(/Cannot read .*locked\.png \(EACCES\).*readable by user nobody/, 30_000);

    let row: OutboxRow | undefined;
    await waitUntil(async () => {
      row = ((await statusJson(sender)).outboxes as OutboxRow[])[0];
      return (row?.unreadable?.length ?? 0) > 0 && (row?.excluded?.count ?? 0) > 0;
    }, 30_000, () => JSON.stringify(row));
    assert.equal(row!.unreadable![0]!.file, 'locked.png');
    assert.equal(row!.unreadable![0]!.code, 'EACCES');
    assert.match(row!.unreadable![0]!.fix, /readable by user nobody/);
    assert.deepEqual(row!.excluded, { count: 1, names: ['layers.psd'] });

    const health = await httpRequest(`${sender.base}/health`);
    assert.equal(health.status, 503);
    assert.match(health.json<{ problems: string[] }>().problems.join('\n'), /locked\.png is not readable \(EACCES\).*readable by user nobody/);

    const st = spawnCli(['status', '--url', sender.base]);
    await waitUntil(() => st.child.exitCode !== null, 30_000, () => st.output());
    assert.match(st.output(), /locked\.png is not readable/);
    assert.match(st.output(), /1 file\(s\) left out by include\/exclude \(layers\.psd\)/);

    // Made readable: sent without a restart, and no longer listed.
    await fs.chmod(p(dir, 'outbox', 'locked.png'), 0o644);
    await waitUntil(async () => (await listFiles(p(receiver.dir, 'inbox'))).includes('locked.png'), 60_000, () => sender.proc.output().slice(-2000));
    await waitUntil(async () => ((await statusJson(sender)).outboxes as OutboxRow[])[0]!.unreadable!.length === 0, 30_000);
    assert.equal(await fs.readFile(p(receiver.dir, 'inbox', 'locked.png'), 'utf8'), 'not readable by the agent');
    assert.equal((sender.proc.output().match(/Cannot read .*locked\.png/g) ?? []).length, 1, 'warned once');
    assert.ok(!(await listFiles(p(receiver.dir, 'inbox'))).includes('layers.psd'));
  });
});
