/**
 * Issue #20 item 2: at `log.level: "warn"` the per-file INFO lines are gone, warnings stay, and a
 * one-line activity summary per direction remains. Uses the real winston logger and file.
 * The event source is an EventEmitter carrying the agent's `received`/`job` event shapes.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { createLogger, rotatedLogPattern } from '../../src/log.js';
import { ActivityTally, startActivitySummary } from '../../src/log-summary.js';
import { waitUntil } from '../helpers/agents.js';

test('ActivityTally: one line per direction, peers by count, a job counted once, nothing when idle', () => {
  const t = new ActivityTally();
  assert.deepEqual(t.flush(60), []);
  t.addReceived('render-1', 1_000_000);
  t.addReceived('render-2', 500_000);
  t.addReceived('render-2', 500_000);
  t.addSent('j1', 'playback-1', 20_000_000);
  t.addSent('j1', 'playback-1', 20_000_000);
  assert.deepEqual(t.flush(60), [
    'activity: received 3 files (2.0 MB) in the last 60 s from render-2 (2), render-1 (1)',
    'activity: sent 1 file (20.0 MB) in the last 60 s to playback-1 (1)',
  ]);
  assert.deepEqual(t.flush(60), []);
});

for (const level of ['warn', 'info'] as const) {
  test(`log level ${level}: per-file INFO lines ${level === 'warn' ? 'gone, summary kept' : 'kept, no summary'}; warnings kept`, async () => {
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'tdx-sum-'));
    let close = async (): Promise<void> => undefined;
    try {
      const file = path.join(dir, 'agent.jsonl');
      const log = createLogger({ level, file, silent: true });
      close = () => log.close();
      const agent = new EventEmitter();
      const stop = startActivitySummary(agent, log, level, 200);
      for (let i = 0; i < 3; i++) {
        log.info(`received f${i}.png from render-1`, { size: 1000 });
        agent.emit('received', { inbox: 'renders', file: `f${i}.png`, path: '', size: 1000, sha256: null, from: 'render-1', via: 'tdxfer', durationMs: 1, at: Date.now() });
      }
      agent.emit('job', { id: 'j1', peer: 'playback-1', state: 'done', bytesTotal: 2000 });
      log.warn('playback-1 unreachable');
      const { stem } = rotatedLogPattern(file);
      const read = async () => {
        const out: Array<{ level: string; message: string }> = [];
        for (const f of (await fs.readdir(dir)).filter((x) => x.startsWith(`${stem}-`))) {
          for (const l of (await fs.readFile(path.join(dir, f), 'utf8')).split('\n')) if (l) out.push(JSON.parse(l) as { level: string; message: string });
        }
        return out;
      };
      if (level === 'warn') {
        await waitUntil(async () => (await read()).some((r) => r.message.startsWith('activity: sent')), 30_000);
        stop();
        await log.close();
        const recs = await read();
        assert.ok(!recs.some((r) => r.level === 'info'), 'no INFO line at level warn');
        assert.ok(recs.some((r) => r.message === 'playback-1 unreachable'));
        assert.ok(recs.some((r) => /^activity: received 3 files \(0\.0 MB\) in the last \d+ s from render-1 \(3\)$/.test(r.message)));
        assert.equal(recs.filter((r) => r.message.startsWith('activity:')).length, 2, 'one line per direction, and none when idle');
      } else {
        await waitUntil(async () => (await read()).some((r) => r.message === 'playback-1 unreachable'), 30_000);
        // At info no summary timer exists at all, and stop() writes nothing: close the logger
        // (flushes the file) and check that no activity line was written.
        stop();
        await log.close();
        const recs = await read();
        assert.equal(recs.filter((r) => r.level === 'info').length, 3);
        assert.ok(!recs.some((r) => r.message.startsWith('activity:')));
      }
    } finally {
      await close(); // Windows cannot remove the folder of an open log file
      await fs.rm(dir, { recursive: true, force: true });
    }
  });
}
