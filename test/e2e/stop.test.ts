/**
 * Issue #14: `tdxfer stop` stops a running agent gracefully over its status API. On
 * Windows (the wine lane runs this file) there is no SIGTERM, so this is the stop path
 * for scripts and service wrappers; it must behave the same on Linux.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import path from 'node:path';
import { runAgent, runCli, sha256File, tempDir, waitUntil, writeAgentConfig, writeRandomFile } from '../helpers/agents.js';

const cleanup: Array<() => Promise<unknown>> = [];
after(async () => {
  for (const c of cleanup.reverse()) await c().catch(() => undefined);
});


test('`tdxfer stop` asks the running agent over POST /stop: it finishes, exits 0, and `stop` exits 0; with no agent, exit 3', async () => {
  const r = await tempDir('tdx-stop-');
  // Port 0 for both: the agent sends to itself (by name), and runAgent writes the status
  // port it got into the config, where `tdxfer stop` reads it.
  const cfg = await writeAgentConfig({
    name: 'solo',
    dir: r,
    port: 0,
    extra: {
      outboxes: [{ path: 'outbox', to: [{ peer: 'solo', inbox: 'renders' }], after: 'archive', settleMs: 150 }],
      status: { enabled: true, host: '127.0.0.1', port: 0 },
    },
  });
  await fs.mkdir(path.join(r, 'outbox'), { recursive: true });
  // The folder goes after the agent.
  cleanup.push(() => fs.rm(r, { recursive: true, force: true }));
  const agent = await runAgent(cfg);
  // Killed only if the graceful stop under test failed.
  cleanup.push(() => agent.stop('SIGKILL'));

  // A file through the running agent, so the stop has something real to close.
  await writeRandomFile(path.join(r, 'staging.bin'), 300_000);
  await fs.rename(path.join(r, 'staging.bin'), path.join(r, 'outbox', 'take.bin'));
  await waitUntil(async () => (await fs.stat(path.join(r, 'outbox', 'sent', 'take.bin')).catch(() => null)) !== null, 30_000, () => `take.bin archived; agent said:\n${agent.output().slice(-2000)}`);
  assert.equal(await sha256File(path.join(r, 'inbox', 'take.bin')), await sha256File(path.join(r, 'outbox', 'sent', 'take.bin')));

  const exited = new Promise<number | null>((resolve) => agent.child.once('exit', (c) => resolve(c)));
  const stop = await runCli(['stop', '--config', cfg]);
  assert.equal(stop.code, 0, stop.out);
  assert.match(stop.out, /asked the agent at http:\/\/127\.0\.0\.1:\d+ to stop/);
  assert.match(stop.out, /^stopped$/m);
  assert.equal(await exited, 0, agent.output());
  assert.match(agent.output(), /stop requested over the status API \(POST \/stop from (::ffff:)?127\.0\.0\.1\)/);
  assert.match(agent.output(), /stop request from (::ffff:)?127\.0\.0\.1: stopping/);

  const again = await runCli(['stop', '--config', cfg]);
  assert.equal(again.code, 3, again.out);
  assert.match(again.out, /no tdxfer agent answering at http:\/\/127\.0\.0\.1:\d+/);
});
