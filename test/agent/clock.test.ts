/**
 * The agent's timestamps come from the clock the composition root injects (src/clock.ts), not
 * from Date.now: a real agent (sockets, files) sending a file to itself on a fake clock that
 * starts years before today. Any timestamp taken from the wall clock instead would be years
 * off; the fake clock only moves when the test says so, so every time is known exactly.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import path from 'node:path';
import { Agent } from '../../src/agent/agent.js';
import { loadConfig } from '../../src/config/load.js';
import { memoryLogger } from '../../src/log.js';
import { tempDirFor } from '../helpers/tmp.js';
import { waitUntil, writeAgentConfig } from '../helpers/agents.js';
import { FakeClock } from '../helpers/clock.js';

test('status model, jobs and received files carry the injected clock\'s times (uptime, startedAt, queued/started/finished, received at, duration)', async (t) => {
  const dir = await tempDirFor(t, 'tdx-clock-');
  const file = await writeAgentConfig({
    name: 'solo',
    dir,
    port: 0,
    extra: { outboxes: [{ path: 'outbox', to: [{ peer: 'solo', inbox: 'renders' }], after: 'keep', settleMs: 100 }] },
  });
  const log = memoryLogger();
  const clock = new FakeClock(1_600_000_000_000);
  const t0 = clock.now();
  const agent = await Agent.start(await loadConfig(file, { log }), { log, clock });
  // Stopped in the test body, before tempDirFor's removal (t.after hooks run in the order they were
  // added): on Windows a folder whose journal is still open cannot be removed (ENOTEMPTY).
  try {
    await checkTimes(agent, clock, dir, log, t0);
  } finally {
    await agent.stop(2000);
  }
});

async function checkTimes(agent: Agent, clock: FakeClock, dir: string, log: ReturnType<typeof memoryLogger>, t0: number): Promise<void> {
  assert.equal(agent.snapshot().agent.startedAt, t0);
  await clock.advance(90_000);
  assert.equal((await agent.health()).uptimeSeconds, 90);

  await fs.writeFile(path.join(dir, 'outbox', 'frame.png'), 'pixels');
  await waitUntil(() => agent.snapshot().received.length === 1 && agent.snapshot().recent.length === 1, 30_000, () => `frame.png sent to self:\n${log.records.map((r) => r.msg).join('\n').slice(-2000)}`);
  const at = t0 + 90_000; // the fake clock did not move while the file travelled
  const [received] = agent.snapshot().received;
  assert.equal(received!.at, at);
  assert.equal(received!.durationMs, 0);
  const [job] = agent.snapshot().recent;
  assert.equal(job!.state, 'done');
  assert.deepEqual([job!.queuedAt, job!.startedAt, job!.finishedAt], [at, at, at]);
}
