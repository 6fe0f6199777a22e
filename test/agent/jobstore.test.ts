/** JobStore (agent/jobstore.ts): POST /send jobs survive a restart; the file stays bounded while running. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { appendFile, readFile } from 'node:fs/promises';
import path from 'node:path';
import { COMPACT_MIN_LINES, JobStore, type StoredJob } from '../../src/agent/jobstore.js';
import { memoryLogger } from '../../src/log.js';
import { tempDirForFile } from '../helpers/tmp.js';

const job = (id: string, extra: Partial<StoredJob> = {}): StoredJob => ({ id, file: `/src/${id}.png`, peer: 'stage', inbox: null, target: `${id}.png`, queuedAt: 1, ...extra });

test('open jobs survive a reopen in queue order; ended ones do not; a torn last line is skipped quietly', async (t) => {
  const dir = await tempDirForFile('tdx-jobs-');
  const file = path.join(dir, 'state', 'jobs.jsonl');
  const s = await JobStore.open(file);
  await s.add(job('a'));
  await s.add(job('b', { inbox: 'in', clientId: 'td-7' }));
  await s.add(job('c'));
  await s.end('b', 'done');
  await s.end('zz', 'unknown: no write');
  await s.close();
  await appendFile(file, '{"op":"add","id":"d","fi');
  const log = memoryLogger();
  const k = await JobStore.open(file, { log });
  t.after(() => k.close());
  assert.deepEqual(k.list().map((j) => j.id), ['a', 'c']);
  assert.equal(k.has('b'), false);
  assert.equal(log.records.filter((r) => r.level === 'warn').length, 0);
  assert.equal((await readFile(file, 'utf8')).trim().split('\n').length, 2, 'rewritten with the open jobs');
  await k.add(job('e'));
  await k.close();
  const r = await JobStore.open(file);
  t.after(() => r.close());
  assert.deepEqual(r.list().map((j) => j.id), ['a', 'c', 'e']);
});

test('a line in the middle that is not a job is dropped with a warning', async (t) => {
  const dir = await tempDirForFile('tdx-jobs-');
  const file = path.join(dir, 'jobs.jsonl');
  const s = await JobStore.open(file);
  await s.add(job('a'));
  await s.close();
  await appendFile(file, '{"op":"add","id":"x"}\n' + JSON.stringify({ op: 'add', ...job('b') }) + '\n');
  const log = memoryLogger();
  const k = await JobStore.open(file, { log });
  t.after(() => k.close());
  assert.deepEqual(k.list().map((j) => j.id), ['a', 'b']);
  assert.match(log.records.find((r) => r.level === 'warn')?.msg ?? '', /1 unreadable line/);
});

test('after close, add fails with JOURNAL_CLOSED', async () => {
  const dir = await tempDirForFile('tdx-jobs-');
  const s = await JobStore.open(path.join(dir, 'jobs.jsonl'));
  await s.close();
  await assert.rejects(s.add(job('a')), (e: Error & { code?: string }) => e.code === 'JOURNAL_CLOSED');
});

test('while running, the file is compacted: weeks of jobs stay bounded', async (t) => {
  const dir = await tempDirForFile('tdx-jobs-');
  const file = path.join(dir, 'jobs.jsonl');
  const s = await JobStore.open(file);
  t.after(() => s.close());
  await s.add(job('waiting'));
  let most = 0;
  for (let i = 0; i < COMPACT_MIN_LINES; i++) {
    await s.add(job(`j${i}`));
    await s.end(`j${i}`, 'done');
    most = Math.max(most, s.linesInFile);
  }
  assert.ok(most <= COMPACT_MIN_LINES + 1, `the file held ${most} lines at most`);
  assert.ok((await readFile(file, 'utf8')).trim().split('\n').length <= COMPACT_MIN_LINES + 1);
  assert.deepEqual(s.list().map((j) => j.id), ['waiting']);
});
