/**
 * Folders that grow for weeks (issue #20): a sender whose `sent/` archive already holds
 * thousands of files and a receiver whose inbox folder already holds thousands of files
 * move 150 files between them, and no per-file path reads a folder: every directory read of
 * the process (both agents in it, chokidar included) is counted through the fs adapter
 * (test/helpers/dirreads.ts), never timed. The full inbox folder is listed at most once
 * (its name index, src/inbox/dirindex.ts), `sent/` and the staging folder never.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import path from 'node:path';
import type { Agent } from '../../src/agent/agent.js';
import { startAgent, tempDir, waitUntil, writeAgentConfig } from '../helpers/agents.js';
import { countDirReads } from '../helpers/dirreads.js';

const PREFILLED = 3000;
const FILES = 150;

async function prefill(dir: string, n: number, name: (i: number) => string): Promise<void> {
  await fs.mkdir(dir, { recursive: true });
  for (let i = 0; i < n; i += 250) {
    await Promise.all(Array.from({ length: Math.min(250, n - i) }, (_, k) => fs.writeFile(path.join(dir, name(i + k)), `old ${i + k}`)));
  }
}

async function count(dir: string): Promise<number> {
  return (await fs.readdir(dir).catch(() => [])).length;
}

test(`${FILES} files from an outbox whose sent/ holds ${PREFILLED} files into an inbox folder holding ${PREFILLED}: sent/ and staging never read, the full inbox folder listed at most once`, async () => {
  const root = await fs.realpath(await tempDir('tdx-fullfolders-'));
  const agents: Agent[] = [];
  let reads: ReturnType<typeof countDirReads> | null = null;
  try {
    const rxDir = path.join(root, 'rx');
    const txDir = path.join(root, 'tx');
    const inboxBulk = path.join(rxDir, 'inbox', 'bulk');
    const sentBulk = path.join(txDir, 'outbox', 'sent', 'bulk');
    const outboxBulk = path.join(txDir, 'outbox', 'bulk');
    await prefill(inboxBulk, PREFILLED, (i) => `pre.${String(i).padStart(5, '0')}.bin`);
    await prefill(sentBulk, PREFILLED, (i) => `f.${String(i).padStart(5, '0')}.bin`);
    await fs.mkdir(path.join(txDir, 'outbox', 'bulk'), { recursive: true });

    const rx = await startAgent(await writeAgentConfig({ name: 'playback', dir: rxDir, port: 0 }));
    agents.push(rx);
    const tx = await startAgent(
      await writeAgentConfig({
        name: 'render',
        dir: txDir,
        port: 0,
        extra: {
          inboxes: [],
          outboxes: [{ path: 'outbox', to: [{ peer: 'playback', inbox: 'renders' }], after: 'archive', settleMs: 100 }],
          peers: [{ name: 'playback', host: '127.0.0.1', port: rx.listenAddress.port }],
        },
      }),
    );
    agents.push(tx);

    // Counted from here: both agents are up, their start-up scans are done.
    reads = countDirReads();
    const src = path.join(root, 'src');
    await fs.mkdir(src, { recursive: true });
    for (let i = 0; i < FILES; i++) {
      const name = `f.${String(i).padStart(5, '0')}.bin`; // the same names as the archived ones: each replaces one in sent/
      await fs.writeFile(path.join(src, name), `new ${i}`);
      await fs.rename(path.join(src, name), path.join(txDir, 'outbox', 'bulk', name));
      if (i % 50 === 49) {
        // the status model is built while files move, as a dashboard would ask for it
        assert.ok(rx.snapshot());
        assert.ok(tx.snapshot());
      }
    }
    // Waited for by stat (a listing here would be counted too).
    const names = Array.from({ length: FILES }, (_, i) => `f.${String(i).padStart(5, '0')}.bin`);
    const exists = (p: string): Promise<boolean> => fs.stat(p).then(() => true, () => false);
    const missing = async (): Promise<string[]> => (await Promise.all(names.map(async (n) => ((await exists(path.join(inboxBulk, n))) ? null : n)))).filter((n) => n !== null);
    const unarchived = async (): Promise<string[]> => (await Promise.all(names.map(async (n) => ((await exists(path.join(txDir, 'outbox', 'bulk', n))) ? n : null)))).filter((n) => n !== null);
    await waitUntil(async () => (await missing()).length === 0, 120_000, () => `all ${FILES} files landed`);
    await waitUntil(async () => (await unarchived()).length === 0, 60_000, () => 'every sent file archived');
    // The outbox watch re-reads a folder once it has been quiet a moment after its events
    // (dirwatch.ts) or as files come and go (chokidar): waited for, so that the counter is
    // known to see the watcher's reads, and a read of sent/ would have been seen too. Which
    // folder: bulk/ after its files' events, or, when the archive after-action removed the
    // emptied bulk/ first (which cancels that re-read), the outbox after that removal.
    const counting = reads;
    const outboxRoot = path.join(txDir, 'outbox');
    await waitUntil(() => counting.reads.includes(outboxBulk) || counting.reads.includes(outboxRoot), 60_000, () => `the outbox watch re-read ${outboxBulk} or ${outboxRoot}: ${JSON.stringify(counting.reads.slice(-20))}`);
    const counted = [...reads.reads];
    reads.restore();
    reads = null;

    for (let i = 0; i < FILES; i += 37) {
      const name = `f.${String(i).padStart(5, '0')}.bin`;
      assert.equal(await fs.readFile(path.join(inboxBulk, name), 'utf8'), `new ${i}`);
      assert.equal(await fs.readFile(path.join(sentBulk, name), 'utf8'), `new ${i}`, 'archived over the older file of the same name');
    }
    assert.equal(await count(sentBulk), PREFILLED, 'each archived file replaced its older namesake');
    assert.equal(await count(inboxBulk), PREFILLED + FILES);

    const inside = (dir: string, p: string): boolean => {
      const r = path.relative(dir, p);
      return r === '' || (!r.startsWith('..') && !path.isAbsolute(r));
    };
    const sent = path.join(txDir, 'outbox', 'sent');
    const staging = path.join(rxDir, '.inbox.tdxfer-staging');
    const summary = JSON.stringify([...counted.reduce((m, p) => m.set(p, (m.get(p) ?? 0) + 1), new Map<string, number>())]);
    assert.deepEqual(counted.filter((p) => inside(sent, p)), [], 'sent/ is never read');
    assert.ok(counted.filter((p) => p === inboxBulk).length <= 1, `the full inbox folder is listed at most once: ${summary}`);
    assert.deepEqual(counted.filter((p) => inside(staging, p)), [], `the staging folder is never listed per file: ${summary}`);
    assert.deepEqual(counted.filter((p) => inside(path.join(rxDir, 'data'), p) || inside(path.join(txDir, 'data'), p)), [], `journals and data folders are never listed: ${summary}`);
  } finally {
    reads?.restore();
    for (const a of agents.reverse()) await a.stop().catch(() => undefined);
    await fs.rm(root, { recursive: true, force: true });
  }
});
