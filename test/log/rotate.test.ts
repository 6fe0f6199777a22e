/**
 * log.file rotates by size and keeps a bounded number of files (issue #20), checked with
 * the real transport on real files: bursts of lines lose none at rotation, a restart
 * keeps pruning the files of earlier runs, and level "warn" keeps warnings only.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { createLogger, rotatedLogPattern } from '../../src/log.js';
import { waitUntil } from '../helpers/agents.js';

async function logFiles(dir: string, stem: string): Promise<string[]> {
  return (await fs.readdir(dir)).filter((f) => f.startsWith(`${stem}-`)).sort();
}

async function linesOf(dir: string, files: string[]): Promise<Array<{ message: string; level: string; run?: number; n?: number }>> {
  const out = [];
  for (const f of files) {
    for (const l of (await fs.readFile(path.join(dir, f), 'utf8')).split('\n')) if (l) out.push(JSON.parse(l) as { message: string; level: string; run?: number; n?: number });
  }
  return out;
}

/** Logs `count` lines in bursts of `burst` (one event-loop turn apart), as a busy agent does. */
async function burstLines(log: ReturnType<typeof createLogger>, run: number, count: number, burst: number): Promise<void> {
  for (let n = 0; n < count; n += burst) {
    for (let k = n; k < Math.min(count, n + burst); k++) log.info(`line ${k} ${'x'.repeat(100)}`, { run, n: k });
    await new Promise((r) => setImmediate(r));
  }
}

test('log.file: rotated by size into at most maxFiles files, no line lost in bursts, bounded across restarts', async () => {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'tdx-log-'));
  try {
    const file = path.join(dir, 'agent.jsonl');
    const { stem } = rotatedLogPattern(file);
    const maxSizeBytes = 64 * 1024;
    const maxFiles = 3;
    for (const run of [1, 2]) {
      const log = createLogger({ file, silent: true, maxSizeBytes, maxFiles });
      const count = 3000; // ~500 KB: about 8 rotations per run
      await burstLines(log, run, count, 200);
      log.info('last line', { run, n: count });
      let seen: Awaited<ReturnType<typeof linesOf>> = [];
      await waitUntil(
        async () => {
          seen = await linesOf(dir, await logFiles(dir, stem));
          return seen.some((l) => l.message === 'last line' && l.run === run);
        },
        30_000,
        () => `the last line of run ${run} in ${dir}`,
      );
      const files = await logFiles(dir, stem);
      assert.ok(files.length <= maxFiles, `at most ${maxFiles} files after run ${run}: ${files.join(', ')}`);
      assert.ok(files.length >= 2, `rotated: ${files.join(', ')}`);
      for (const f of files) {
        const size = (await fs.stat(path.join(dir, f))).size;
        assert.ok(size <= maxSizeBytes + 1024, `${f} is ${size} bytes`);
      }
      // The kept files hold an unbroken tail of this run: nothing dropped at a rotation.
      const ns = seen.filter((l) => l.run === run).map((l) => l.n!).sort((a, b) => a - b);
      const first = ns[0]!;
      assert.deepEqual(ns, Array.from({ length: count + 1 - first }, (_, i) => first + i), `run ${run}: lines ${first}..${count} all kept`);
      assert.ok(first > 0, 'older lines were pruned');
      await log.close(); // as the agent does on stop; Windows cannot remove an open log file's folder
    }
    assert.ok((await fs.readdir(dir)).some((f) => f === `.${stem}-audit.json`), 'the audit file that survives restarts is next to the log');
  } finally {
    await fs.rm(dir, { recursive: true, force: true });
  }
});

test('log.level "warn": the file keeps warnings and errors, not per-file info lines', async () => {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'tdx-log-'));
  try {
    const file = path.join(dir, 'tdxfer.log');
    const { stem } = rotatedLogPattern(file);
    const log = createLogger({ file, silent: true, level: 'warn' });
    log.info('received frames/f.0001.png');
    log.warn('playback unreachable: connect ECONNREFUSED');
    log.error('cannot start');
    let seen: Awaited<ReturnType<typeof linesOf>> = [];
    await waitUntil(async () => (seen = await linesOf(dir, await logFiles(dir, stem))).length >= 2, 30_000, () => 'two lines');
    assert.deepEqual(seen.map((l) => l.level), ['warn', 'error']);
    await log.close();
  } finally {
    await fs.rm(dir, { recursive: true, force: true });
  }
});
