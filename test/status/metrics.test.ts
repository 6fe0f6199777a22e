import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { register as globalRegistry } from 'prom-client';
import { request, startStatus } from './helpers.js';

function sample(text: string, name: string, labels = ''): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(`${name}${labels} `));
  return line === undefined ? undefined : Number(line.slice(line.lastIndexOf(' ') + 1));
}

describe('status API: /metrics', () => {
  test('counters follow the events, queue depth is read at scrape time, process metrics included', async (t) => {
    const s = await startStatus();
    t.after(() => s.server.stop());
    s.view.addPeer({ name: 'playback-1' });
    const a = s.view.queueJob('/out/a.mov', 'playback-1', { size: 1500 });
    s.view.start(a.id);
    const startedAt = s.view.jobs.get(a.id)!.startedAt!;
    s.view.finish(a.id, { finishedAt: startedAt + 2000 });
    s.view.finish(a.id, { finishedAt: startedAt + 2000 }); // a re-emitted done is not counted twice
    const b = s.view.queueJob('/out/b.mov', 'playback-1', { size: 10 });
    s.view.start(b.id);
    s.view.fail(b.id, 'connection refused', 'CONNECT_FAILED');
    s.view.queueJob('/out/c.mov', 'playback-1', { size: 1, inbox: 'stills' });
    s.view.queueJob('/out/d.mov', 'playback-1', { size: 1, inbox: 'stills' });
    s.view.receive({ file: 'x.mov', size: 4096, from: 'render-1' });
    s.view.receive({ file: 'y.mov', size: 4, from: 'render-1' });

    const res = await request(`${s.base}/metrics`);
    assert.equal(res.status, 200);
    assert.match(String(res.headers['content-type']), /^text\/plain; version=0\.0\.4/);
    const m = res.text;
    assert.equal(sample(m, 'tdxfer_sent_bytes_total', '{peer="playback-1"}'), 1500);
    assert.equal(sample(m, 'tdxfer_sent_files_total', '{peer="playback-1"}'), 1);
    assert.equal(sample(m, 'tdxfer_received_bytes_total', '{peer="render-1"}'), 4100);
    assert.equal(sample(m, 'tdxfer_received_files_total', '{peer="render-1"}'), 2);
    assert.equal(sample(m, 'tdxfer_failures_total', '{reason="CONNECT_FAILED"}'), 1);
    assert.equal(sample(m, 'tdxfer_queue_depth', '{destination="playback-1/stills"}'), 2);
    assert.equal(sample(m, 'tdxfer_transfer_duration_seconds_count'), 1);
    assert.equal(sample(m, 'tdxfer_transfer_duration_seconds_sum'), 2);
    assert.equal(sample(m, 'tdxfer_transfer_duration_seconds_bucket', '{le="1"}'), 0);
    assert.equal(sample(m, 'tdxfer_transfer_duration_seconds_bucket', '{le="2.5"}'), 1);
    assert.ok(sample(m, 'process_cpu_user_seconds_total') !== undefined, 'default process metrics missing');

    // The gauge follows the model at each scrape: the drained queue reads 0.
    for (const j of [...s.view.jobs.values()].filter((j) => j.state === 'queued')) s.view.finish(j.id);
    const later = (await request(`${s.base}/metrics`)).text;
    assert.equal(sample(later, 'tdxfer_queue_depth', '{destination="playback-1/stills"}'), 0);
    assert.equal(sample(later, 'tdxfer_sent_files_total', '{peer="playback-1"}'), 3);
  });

  test('two servers in one process keep separate registries and leave the global one alone', async (t) => {
    const one = await startStatus();
    const two = await startStatus();
    t.after(async () => {
      await one.server.stop();
      await two.server.stop();
    });
    one.view.receive({ file: 'x', size: 10, from: 'r' });
    const m1 = (await request(`${one.base}/metrics`)).text;
    const m2 = (await request(`${two.base}/metrics`)).text;
    assert.equal(sample(m1, 'tdxfer_received_files_total', '{peer="r"}'), 1);
    assert.equal(sample(m2, 'tdxfer_received_files_total', '{peer="r"}'), undefined);
    assert.equal(globalRegistry.getSingleMetric('tdxfer_received_files_total'), undefined);
  });
});
