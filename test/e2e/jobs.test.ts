/**
 * Issue #11 item 1 end to end: jobs queued with `POST /send` are journalled before the
 * 202, survive kill -9 of the sending agent with their ids, can be listed (`GET /jobs`,
 * `tdxfer jobs`) and cancelled (`DELETE /jobs/<id>`, `tdxfer cancel`), and a misspelled
 * inbox is a 400 when the peer is known to lack it. Real `tdxfer run` processes.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import path from 'node:path';
import { waitUntil, writeRandomFile, sha256File, type Spawned } from '../helpers/agents.js';
import { getJson, httpRequest, runCli, spawnAgent, writePair } from './status-helpers.js';

const cleanup: Array<() => Promise<unknown>> = [];
after(async () => {
  for (const c of cleanup.reverse()) await c().catch(() => undefined);
});

async function runAgent(cfg: string): Promise<Spawned> {
  const s = await spawnAgent(cfg);
  cleanup.push(() => s.stop('SIGKILL'));
  return s;
}

function postSend(base: string, body: Record<string, string>) {
  return httpRequest(`${base}/send`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body) });
}

async function exists(p: string): Promise<boolean> {
  return (await fs.stat(p).catch(() => null)) !== null;
}

test('POST /send jobs survive kill -9 of the sender with their ids, are listed and cancelled, and are delivered once the peer is up', async () => {
  // A short retry backoff: the peer comes up late on purpose, and the default backoff (up to
  // 30 s) would only make the wait for it longer, not the test stricter.
  const p = await writePair({ senderExtra: { transfer: { retryInitialMs: 100, retryMaxMs: 1000 } } });
  cleanup.push(() => p.cleanup());
  const srcA = path.join(p.root, 'takes', 'take-A.mov');
  const srcB = path.join(p.root, 'takes', 'take-B.mov');
  await writeRandomFile(srcA, 3 * 1024 * 1024 + 17);
  await writeRandomFile(srcB, 1000);

  // The receiver is down: the jobs cannot be delivered yet.
  let sender = await runAgent(p.senderCfg);
  // Pinned in its config: the restarts below listen there again.
  const base = `http://127.0.0.1:${p.senderStatusPort}`;
  const a = await postSend(base, { file: srcA, peer: 'playback', inbox: 'renders', as: 'shots/take-A.mov' });
  assert.equal(a.status, 202, a.text);
  const b = await postSend(base, { file: srcB, peer: 'playback', inbox: 'renders' });
  assert.equal(b.status, 202, b.text);
  const idA = a.json<{ id: string }>().id;
  const idB = b.json<{ id: string }>().id;
  assert.equal(a.json<{ kind: string }>().kind, 'send');

  // Journalled before the 202: kill -9 right away loses nothing.
  await sender.stop('SIGKILL');
  sender = await runAgent(p.senderCfg);
  await sender.waitFor(/resumed 2 job\(s\) queued with POST \/send/, 30_000);
  const listed = await getJson<{ jobs: Array<{ id: string; target: string; kind: string }> }>(`${base}/jobs`);
  assert.deepEqual(listed.jobs.map((j) => j.id).sort(), [idA, idB].sort());
  assert.equal(listed.jobs.find((j) => j.id === idA)!.target, 'shots/take-A.mov');

  const cli = await runCli(['jobs', '--config', p.senderCfg]);
  assert.equal(cli.code, 0, cli.out);
  assert.match(cli.out, /^ID +KIND +FILE +TO +STATE +DONE +ERROR/m);
  assert.match(cli.out, new RegExp(`^${idA} +send +\\S*take-A\\.mov +playback/renders as shots/take-A\\.mov +(queued|waiting)`, 'm'));
  assert.match(cli.out, new RegExp(`^${idB} +send +\\S*take-B\\.mov +playback/renders +(queued|waiting)`, 'm'));

  // Cancel B with the CLI; the cancellation is durable too.
  const c = await runCli(['cancel', idB, '--config', p.senderCfg]);
  assert.equal(c.code, 0, c.out);
  assert.match(c.out, new RegExp(`cancelled ${idB}: \\S*take-B\\.mov → playback/renders`));
  const again = await httpRequest(`${base}/jobs/${idB}`, { method: 'DELETE' });
  assert.equal(again.status, 409, again.text); // already finished (cancelled)
  const unknown = await httpRequest(`${base}/jobs/nope`, { method: 'DELETE' });
  assert.equal(unknown.status, 404, unknown.text);
  const cliUnknown = await runCli(['cancel', 'nope', '--config', p.senderCfg]);
  assert.equal(cliUnknown.code, 1, cliUnknown.out);
  assert.match(cliUnknown.out, /404: no open job with id "nope"/);

  await sender.stop('SIGKILL');
  sender = await runAgent(p.senderCfg);
  await sender.waitFor(/resumed 1 job\(s\) queued with POST \/send/, 30_000);
  assert.deepEqual((await getJson<{ jobs: Array<{ id: string }> }>(`${base}/jobs`)).jobs.map((j) => j.id), [idA]);

  // The peer comes up: A arrives under its id, B never does.
  const receiver = await runAgent(p.receiverCfg);
  cleanup.push(() => receiver.stop('SIGTERM'));
  const landed = path.join(p.inbox, 'shots', 'take-A.mov');
  await waitUntil(() => exists(landed), 60_000, () => `take-A delivered; sender said:\n${sender.output().slice(-2000)}`);
  assert.equal(await sha256File(landed), await sha256File(srcA));
  await waitUntil(async () => (await getJson<{ jobs: unknown[] }>(`${base}/jobs`)).jobs.length === 0, 30_000, () => 'job A finished');
  const doneA = await getJson<{ id: string; state: string }>(`${base}/jobs/${idA}`);
  assert.equal(doneA.state, 'done');
  assert.equal(await exists(path.join(p.inbox, 'take-B.mov')), false);

  // Misspelled inbox: the peer is known (it announced its inboxes when we connected) to lack it.
  const bad = await postSend(base, { file: srcB, peer: 'playback', inbox: 'rendres' });
  assert.equal(bad.status, 400, bad.text);
  assert.equal(bad.json<{ code: string }>().code, 'NO_SUCH_INBOX');
  assert.match(bad.json<{ error: string }>().error, /playback has no inbox "rendres" \(its inboxes: renders\)/);
  const badSelf = await postSend(base, { file: srcB, peer: 'render', inbox: 'nope' });
  assert.equal(badSelf.status, 400, badSelf.text);
  assert.equal(badSelf.json<{ code: string }>().code, 'NO_SUCH_INBOX');

  // Nothing left in the journal: a clean restart resumes nothing and sends nothing again.
  await sender.stop('SIGTERM');
  const journal = await fs.readFile(path.join(p.senderDir, 'data', 'state', 'jobs.jsonl'), 'utf8');
  assert.ok(!journal.includes(idA) || journal.includes(`"op":"end","id":"${idA}"`), journal);
  sender = await runAgent(p.senderCfg);
  assert.doesNotMatch(sender.output(), /resumed \d+ job/);
  assert.deepEqual((await getJson<{ jobs: unknown[] }>(`${base}/jobs`)).jobs, []);
  await sender.stop('SIGTERM');
});

test('an outbox job cannot be cancelled through the API: the answer says to remove the file', async () => {
  const p = await writePair();
  cleanup.push(() => p.cleanup());
  const sender = await runAgent(p.senderCfg);
  const base = `http://127.0.0.1:${p.senderStatusPort}`;
  await writeRandomFile(path.join(p.outbox, 'still.png'), 2000);
  let id = '';
  await waitUntil(async () => {
    const jobs = (await getJson<{ jobs: Array<{ id: string; kind: string }> }>(`${base}/jobs`)).jobs;
    id = jobs[0]?.id ?? '';
    return id !== '';
  }, 30_000, () => `outbox job listed; sender said:\n${sender.output().slice(-2000)}`);
  const r = await httpRequest(`${base}/jobs/${id}`, { method: 'DELETE' });
  assert.equal(r.status, 409, r.text);
  assert.equal(r.json<{ code: string }>().code, 'NOT_CANCELLABLE');
  assert.match(r.json<{ error: string }>().error, /remove the file from the outbox/);
  await sender.stop('SIGTERM');
});
