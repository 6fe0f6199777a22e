/** The agent's V8 heap flags (src/heap-tuning.ts): set unless the operator chose otherwise. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs/promises';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { AGENT_HEAP_FLAGS, configHasOutbox, tuneAgentHeap, tuneYoungGeneration } from '../../src/heap-tuning.js';
import { runAgent, writeAgentConfig } from '../helpers/agents.js';
import { tempDirFor } from '../helpers/tmp.js';

test('every flag is set in an agent that sends when the command line and NODE_OPTIONS say nothing about the heap', () => {
  assert.deepEqual(tuneAgentHeap(true, ['--enable-source-maps'], ''), AGENT_HEAP_FLAGS.map((f) => f.flag));
});

test('an agent that only receives keeps V8\'s old-generation growth (big-file receivers collect less often)', () => {
  assert.deepEqual(tuneAgentHeap(false, [], ''), ['--semi-space-growth-factor=1']);
});

test('a setting of the operator wins (command line or NODE_OPTIONS, dashes or underscores)', () => {
  assert.deepEqual(tuneAgentHeap(true, ['--max-semi-space-size=16'], ''), ['--heap-growing-percent=25']);
  assert.deepEqual(tuneAgentHeap(true, [], '--heap_growing_percent=100'), ['--semi-space-growth-factor=1']);
  assert.deepEqual(tuneAgentHeap(true, ['--semi-space-growth-factor=2'], '--heap-growing-percent=50'), []);
});

test('the young generation\'s flag alone (set before the agent\'s modules load): the operator\'s setting wins', () => {
  assert.deepEqual(tuneYoungGeneration(['--enable-source-maps'], ''), ['--semi-space-growth-factor=1']);
  assert.deepEqual(tuneYoungGeneration([], '--max_semi_space_size=16'), []);
  assert.deepEqual(tuneYoungGeneration(['--min-semi-space-size=4'], ''), []);
});

test('whether the config `tdxfer run` will read has an outbox, told before its modules load (null: cannot tell)', async (t) => {
  const dir = await tempDirFor(t);
  const sender = path.join(dir, 'sender.json');
  const receiver = path.join(dir, 'receiver.json');
  const broken = path.join(dir, 'broken.json');
  await fs.writeFile(sender, '\ufeff' + JSON.stringify({ name: 'a', outboxes: [{ path: 'o', to: [{ peer: 'b', inbox: 'i' }] }] }));
  await fs.writeFile(receiver, JSON.stringify({ name: 'b', outboxes: [], inboxes: [{ name: 'i', path: 'in' }] }));
  await fs.writeFile(broken, '{ "outboxes": [');
  assert.equal(configHasOutbox(sender, {}), true);
  assert.equal(configHasOutbox(undefined, { TDXFER_CONFIG: sender }), true, 'from $TDXFER_CONFIG');
  assert.equal(configHasOutbox(receiver, { TDXFER_CONFIG: sender }), false, '--config wins');
  assert.equal(configHasOutbox(undefined, {}), false, 'built-in defaults: no outbox');
  assert.equal(configHasOutbox(broken, {}), null);
  assert.equal(configHasOutbox(path.join(dir, 'missing.json'), {}), null);
});

test('`tdxfer run` of an agent that sends: the young generation is small from the start (its modules no longer grow it before the flag is set)', async (t) => {
  const dir = await tempDirFor(t);
  // A preload that reports the new space's capacity; the agent itself is unchanged.
  const probe = path.join(dir, 'probe.mjs');
  await fs.writeFile(
    probe,
    `import v8 from 'node:v8';
    let peak = 0;
    const look = () => { peak = Math.max(peak, v8.getHeapSpaceStatistics().find((s) => s.space_name === 'new_space').space_size); process.stderr.write('NEW_SPACE ' + peak + '\\n'); };
    look();
    setInterval(look, 20).unref();`,
  );
  const cfg = await writeAgentConfig({ name: 'young', dir, port: 0, extra: { outboxes: [{ path: 'outbox', to: [{ peer: 'young', inbox: 'renders' }] }] } });
  // A file URL: on Windows `--import C:\\…` is refused (ERR_UNSUPPORTED_ESM_URL_SCHEME).
  const agent = await runAgent(cfg, { env: { NODE_OPTIONS: `--import ${JSON.stringify(pathToFileURL(probe).href)}` } });
  try {
    await agent.waitFor(/NEW_SPACE \d+\n[\s\S]*NEW_SPACE \d+\n[\s\S]*NEW_SPACE \d+\n/);
    const peaks = [...agent.stderr().matchAll(/NEW_SPACE (\d+)/g)].map((m) => Number(m[1]));
    const peak = Math.max(...peaks);
    // V8's default grows it to 8-16 MB while ~1,000 modules load; held, it stays at 1-2 MB.
    assert.ok(peak > 0 && peak <= 4 * 1024 * 1024, `new space grew to ${peak} bytes`);
  } finally {
    await agent.stop();
  }
});

test('the young generation stays at its initial size once the flags are set (a real V8)', () => {
  // A child process: allocation with survivors, new space capacity read back.
  const script = `
    import v8 from 'node:v8';
    import { tuneAgentHeap, tuneYoungGeneration } from ${JSON.stringify(new URL('../../src/heap-tuning.js', import.meta.url).href)};
    if (process.argv[1] === 'tuned') tuneAgentHeap(true, [], '');
    const keep = [];
    let peak = 0;
    for (let r = 0; r < 200; r++) {
      for (let i = 0; i < 5000; i++) keep.push({ s: 'x' + i, n: [i] });
      if (keep.length > 100000) keep.splice(0, 5000);
      peak = Math.max(peak, v8.getHeapSpaceStatistics().find((s) => s.space_name === 'new_space').space_size);
      await new Promise((r) => setImmediate(r)); // a turn of the loop, as an agent has (GC observers run)
    }
    console.log(peak);`;
  const peak = (mode: string) => Number(spawnSync(process.execPath, ['--input-type=module', '-e', script, mode], { encoding: 'utf8' }).stdout.trim());
  const tuned = peak('tuned');
  const plain = peak('plain');
  assert.ok(tuned > 0 && plain > 0, `${tuned} ${plain}`);
  assert.ok(tuned * 4 <= plain, `new space ${tuned} bytes tuned vs ${plain} by default`);
});

test('a big receive raises the old generation\'s growth while it runs and restores the agent\'s own setting after the last one', () => {
  // In a child: the flags are process-wide.
  const script = `
    import { tuneAgentHeap, duringBigReceive, bigReceiveState } from ${JSON.stringify(new URL('../../src/heap-tuning.js', import.meta.url).href)};
    const out = [];
    const [sends, nodeOptions] = JSON.parse(process.argv[1]);
    tuneAgentHeap(sends, [], nodeOptions);
    const before = bigReceiveState().growingPercent;
    const a = duringBigReceive();
    out.push(bigReceiveState());
    const b = duringBigReceive();
    a(); a(); // a second call of the same end is a no-op
    out.push(bigReceiveState());
    b();
    out.push(bigReceiveState());
    console.log(JSON.stringify({ before, out }));`;
  const run = (sends: boolean, nodeOptions: string) => {
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', script, JSON.stringify([sends, nodeOptions])], { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    return JSON.parse(r.stdout.trim()) as { before: number | null; out: Array<{ active: number; growingPercent: number | null }> };
  };
  for (const [sends, normal] of [[false, 0], [true, 25]] as const) {
    const { before, out } = run(sends, '');
    assert.equal(before, sends ? 25 : null);
    const raised = out[0]!.growingPercent!;
    assert.ok(raised >= 50 && raised <= 400, `raised to ${raised}`);
    assert.deepEqual(out[0], { active: 1, growingPercent: raised });
    assert.deepEqual(out[1], { active: 1, growingPercent: raised }, 'still one big receive: unchanged');
    assert.deepEqual(out[2], { active: 0, growingPercent: normal }, 'the agent\'s own setting is back');
  }
  // The operator's setting is left alone.
  const { out } = run(false, '--heap-growing-percent=10');
  assert.deepEqual(out.map((s) => s.growingPercent), [null, null, null]);
});
