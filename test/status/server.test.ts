import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import vm from 'node:vm';
import { isLoopbackAddress, parseSendRequest } from '../../src/status/server.js';
import { FakeView } from '../helpers/fake-view.js';
import { request, startStatus } from './helpers.js';
import { waitUntil } from '../helpers/wait.js';

async function tempFile(content = 'hello world'): Promise<{ dir: string; file: string }> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'tdxfer-status-'));
  const file = path.join(dir, 'take 1.mov');
  await writeFile(file, content);
  return { dir, file };
}

describe('status API: endpoints', () => {
  test('/health is 200 when ok and 503 with the problems when not', async (t) => {
    const s = await startStatus();
    t.after(() => s.server.stop());
    const ok = await request(`${s.base}/health`);
    assert.equal(ok.status, 200);
    assert.equal(ok.headers['cache-control'], 'no-store');
    assert.match(String(ok.headers['content-type']), /^application\/json/);
    assert.equal((ok.json() as { ok: boolean }).ok, true);
    s.view.problems = ['inbox "renders" is not writable'];
    const bad = await request(`${s.base}/health`);
    assert.equal(bad.status, 503);
    assert.deepEqual((bad.json() as { problems: string[] }).problems, ['inbox "renders" is not writable']);
  });

  test('/status carries the snapshot with percent and ETA per active job', async (t) => {
    const s = await startStatus();
    t.after(() => s.server.stop());
    s.view.addPeer({ name: 'playback-1' });
    const j = s.view.queueJob('/show/out/a.mov', 'playback-1', { size: 4000 });
    s.view.start(j.id);
    s.view.progress(j.id, 1000, 500);
    const done = s.view.queueJob('/show/out/b.mov', 'playback-1', { size: 10 });
    s.view.start(done.id);
    s.view.finish(done.id);
    const res = await request(`${s.base}/status`);
    assert.equal(res.status, 200);
    const body = res.json() as {
      agent: { name: string };
      peers: Array<{ name: string }>;
      active: Array<{ id: string; percent: number; etaSeconds: number | null }>;
      recent: Array<{ id: string; percent: number; state: string }>;
      queues: Array<{ destination: string; sending: number }>;
    };
    assert.equal(body.agent.name, 'fake-agent');
    assert.deepEqual(body.peers.map((p) => p.name), ['playback-1']);
    assert.equal(body.active.length, 1);
    assert.equal(body.active[0]!.percent, 25);
    assert.equal(body.active[0]!.etaSeconds, 6); // 3000 bytes left at 500 B/s
    assert.equal(body.recent[0]!.id, done.id);
    assert.equal(body.recent[0]!.percent, 100);
    assert.deepEqual(body.queues, [{ destination: 'playback-1/renders', peer: 'playback-1', inbox: 'renders', queued: 0, sending: 1, waiting: 0, failed: 0 }]);
  });

  test('POST /send with JSON queues the file (202) and GET /jobs/:id returns it', async (t) => {
    const s = await startStatus();
    const { dir, file } = await tempFile();
    t.after(async () => {
      await s.server.stop();
      await rm(dir, { recursive: true, force: true });
    });
    s.view.addPeer({ name: 'playback-1' });
    const res = await request(`${s.base}/send`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ file, peer: 'playback-1', inbox: 'renders', as: 'takes/take1.mov' }),
    });
    assert.equal(res.status, 202, res.text);
    const job = res.json() as { id: string; state: string; target: string };
    assert.equal(job.state, 'queued');
    assert.equal(job.target, 'takes/take1.mov');
    assert.deepEqual(s.view.sent, [{ file, peer: 'playback-1', inbox: 'renders', as: 'takes/take1.mov' }]);
    const got = await request(`${s.base}/jobs/${encodeURIComponent(job.id)}`);
    assert.equal(got.status, 200);
    assert.equal((got.json() as { id: string }).id, job.id);
    const missing = await request(`${s.base}/jobs/nope`);
    assert.equal(missing.status, 404);
    assert.match((missing.json() as { error: string }).error, /no job with id "nope"/);
  });

  test('POST /send accepts form-encoded bodies (TouchDesigner Web Client DAT)', async (t) => {
    const s = await startStatus();
    const { dir, file } = await tempFile();
    t.after(async () => {
      await s.server.stop();
      await rm(dir, { recursive: true, force: true });
    });
    s.view.addPeer({ name: 'playback-1' });
    const res = await request(`${s.base}/send`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ file, target: 'playback-1' }).toString(),
    });
    assert.equal(res.status, 202, res.text);
    assert.deepEqual(s.view.sent, [{ file, peer: 'playback-1' }]);
  });

  test('POST /send errors are 400 with the agent message; oversize bodies 413', async (t) => {
    const s = await startStatus({ maxBodyBytes: 1024 });
    const { dir, file } = await tempFile();
    t.after(async () => {
      await s.server.stop();
      await rm(dir, { recursive: true, force: true });
    });
    s.view.addPeer({ name: 'playback-1' });
    const post = (body: string, type = 'application/json'): ReturnType<typeof request> =>
      request(`${s.base}/send`, { method: 'POST', headers: { 'Content-Type': type }, body });

    const noFile = await post(JSON.stringify({ file: path.join(dir, 'missing.mov'), peer: 'playback-1' }));
    assert.equal(noFile.status, 400);
    assert.deepEqual(noFile.json(), { error: `no such file: ${path.join(dir, 'missing.mov')}`, code: 'NO_SUCH_FILE' });

    const badPeer = await post(JSON.stringify({ file, peer: 'nobody' }));
    assert.equal(badPeer.status, 400);
    assert.equal((badPeer.json() as { code: string }).code, 'UNKNOWN_PEER');
    assert.match((badPeer.json() as { error: string }).error, /unknown peer "nobody"/);

    const missingPeer = await post(JSON.stringify({ file }));
    assert.equal(missingPeer.status, 400);
    assert.match((missingPeer.json() as { error: string }).error, /missing `peer`/);

    const notJson = await post('{"file": ');
    assert.equal(notJson.status, 400);
    assert.match((notJson.json() as { error: string }).error, /not a JSON object/);

    const wrongType = await post(JSON.stringify({ file: 42, peer: 'playback-1' }));
    assert.equal(wrongType.status, 400);
    assert.match((wrongType.json() as { error: string }).error, /`file` must be a string/);

    const big = await post(JSON.stringify({ file, peer: 'playback-1', pad: 'x'.repeat(5000) }));
    assert.equal(big.status, 413);
    assert.equal(s.view.sent.length, 0);
  });

  test('unknown path is 404 JSON, wrong method 405 with Allow', async (t) => {
    const s = await startStatus();
    t.after(() => s.server.stop());
    const nf = await request(`${s.base}/nope`);
    assert.equal(nf.status, 404);
    assert.equal((nf.json() as { code: string }).code, 'NOT_FOUND');
    const wm = await request(`${s.base}/status`, { method: 'DELETE' });
    assert.equal(wm.status, 405);
    assert.equal(wm.headers.allow, 'GET');
    const getSend = await request(`${s.base}/send`);
    assert.equal(getSend.status, 405);
    assert.equal(getSend.headers.allow, 'POST');
  });

  test('a handler error is a 500 with a message and the server keeps serving', async (t) => {
    const view = new FakeView();
    const s = await startStatus({}, view);
    t.after(() => s.server.stop());
    view.snapshot = () => {
      throw new Error('model exploded');
    };
    const res = await request(`${s.base}/status`);
    assert.equal(res.status, 500);
    assert.match((res.json() as { error: string }).error, /model exploded/);
    assert.ok(s.log.records.some((r) => r.level === 'error' && r.msg.includes('handler failed')));
    assert.equal((await request(`${s.base}/health`)).status, 200);
  });

  test('GET / serves the dashboard page', async (t) => {
    const s = await startStatus();
    t.after(() => s.server.stop());
    const res = await request(`${s.base}/`);
    assert.equal(res.status, 200);
    assert.match(String(res.headers['content-type']), /^text\/html/);
    assert.match(res.text, /id="active-body"/);
    assert.match(res.text, /data-version="9\.9\.9-test"/);
  });

  test('the page loads its script from /dashboard.js: no inline script may run (CSP), the script needs no token and compiles', async (t) => {
    const s = await startStatus({ token: 's3cret-token' });
    t.after(() => s.server.stop());
    const page = await request(`${s.base}/?token=s3cret-token`);
    assert.equal(page.status, 200);
    const csp = String(page.headers['content-security-policy']);
    assert.match(csp, /script-src 'self';/);
    assert.doesNotMatch(csp, /script-src[^;]*unsafe-inline/);
    assert.match(page.text, /<script src="\/dashboard\.js" defer><\/script>/);
    assert.doesNotMatch(page.text, /<script>/, 'no inline script in the page');
    // Public code, no data: served without the token that every other path needs.
    const js = await request(`${s.base}/dashboard.js`);
    assert.equal(js.status, 200);
    assert.match(String(js.headers['content-type']), /^text\/javascript/);
    assert.equal(js.headers['x-content-type-options'], 'nosniff');
    assert.doesNotThrow(() => new vm.Script(js.text, { filename: 'dashboard.js' }), 'the served script is valid JavaScript');
    assert.match(js.text, /new EventSource\('\/events' \+ q\)/);
    assert.equal((await request(`${s.base}/dashboard.js`, { method: 'HEAD' })).status, 200);
    const post = await request(`${s.base}/dashboard.js`, { method: 'POST' });
    assert.equal(post.status, 405);
    assert.equal(post.headers.allow, 'GET, HEAD');
  });

  test('start() reports a busy port with what to change', async (t) => {
    const s = await startStatus();
    t.after(() => s.server.stop());
    const { StatusServer } = await import('../../src/status/server.js');
    const again = new StatusServer(new FakeView(), { host: '127.0.0.1', port: s.port, token: null, log: s.log, version: 'x' });
    await assert.rejects(again.start(), (err: Error & { code?: string }) => err.code === 'STATUS_PORT_IN_USE' && /status\.port/.test(err.message));
  });
});

describe('status API: access control', () => {
  test('with a token: 401 without or with a wrong one; Bearer header and ?token= both work', async (t) => {
    const s = await startStatus({ token: 's3cret-token' });
    t.after(() => s.server.stop());
    const none = await request(`${s.base}/status`);
    assert.equal(none.status, 401);
    assert.match((none.json() as { error: string }).error, /Authorization: Bearer/);
    assert.equal((await request(`${s.base}/status`, { headers: { Authorization: 'Bearer wrong' } })).status, 401);
    assert.equal((await request(`${s.base}/status?token=s3cret-tokeN`)).status, 401);
    assert.equal((await request(`${s.base}/`)).status, 401);
    assert.equal((await request(`${s.base}/status`, { headers: { Authorization: 'Bearer s3cret-token' } })).status, 200);
    assert.equal((await request(`${s.base}/status?token=s3cret-token`)).status, 200);
    assert.equal((await request(`${s.base}/?token=s3cret-token`)).status, 200);
    // RFC 9110: the scheme is case-insensitive (issue #10 item 9).
    for (const scheme of ['bearer', 'BEARER', 'BeArEr']) {
      assert.equal((await request(`${s.base}/status`, { headers: { Authorization: `${scheme} s3cret-token` } })).status, 200, scheme);
    }
    assert.equal((await request(`${s.base}/status`, { headers: { Authorization: 'Basic s3cret-token' } })).status, 401);
  });

  test('without a token: a non-loopback Host header (DNS rebinding) and cross-origin POSTs are refused', async (t) => {
    const s = await startStatus();
    const { dir, file } = await tempFile();
    t.after(async () => {
      await s.server.stop();
      await rm(dir, { recursive: true, force: true });
    });
    s.view.addPeer({ name: 'playback-1' });
    const rebind = await request(`${s.base}/status`, { headers: { Host: `evil.example:${s.port}` } });
    assert.equal(rebind.status, 403);
    assert.equal((await request(`${s.base}/status`, { headers: { Host: `localhost:${s.port}` } })).status, 200);
    const body = new URLSearchParams({ file, peer: 'playback-1' }).toString();
    const csrf = await request(`${s.base}/send`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/x-www-form-urlencoded', Origin: 'http://evil.example' },
      body,
    });
    assert.equal(csrf.status, 403);
    assert.equal(s.view.sent.length, 0);
    const same = await request(`${s.base}/send`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', Origin: `http://127.0.0.1:${s.port}` },
      body: JSON.stringify({ file, peer: 'playback-1' }),
    });
    assert.equal(same.status, 202);
    // A form body is what any web page can post: refused from a browser even same-origin.
    const sameForm = await request(`${s.base}/send`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/x-www-form-urlencoded', Origin: `http://127.0.0.1:${s.port}` },
      body,
    });
    assert.equal(sameForm.status, 415);
  });

  test('loopback detection covers IPv4 127/8, ::1 and IPv4-mapped forms only', () => {
    for (const a of ['127.0.0.1', '127.1.2.3', '::1', '::ffff:127.0.0.1']) assert.equal(isLoopbackAddress(a), true, a);
    for (const a of ['10.0.0.1', '192.168.1.5', '::ffff:10.0.0.1', 'fe80::1', '0.0.0.0', '', undefined, '1270.0.0.1']) assert.equal(isLoopbackAddress(a), false, String(a));
  });

  test('garbage on the socket gets a 400 and does not disturb the server', async (t) => {
    const s = await startStatus();
    t.after(() => s.server.stop());
    const reply = await new Promise<string>((resolve, reject) => {
      const sock = net.connect(s.port, '127.0.0.1', () => sock.write('\x00\x01 not http at all\r\n\r\n'));
      let got = '';
      sock.on('data', (d) => (got += d.toString()));
      sock.on('end', () => resolve(got));
      sock.on('error', reject);
    });
    assert.match(reply, /^HTTP\/1\.1 400/);
    assert.equal((await request(`${s.base}/health`)).status, 200);
  });
});

describe('status API: POST /stop (tdxfer stop)', () => {
  test('POST /stop answers 202 and then asks the process to stop; GET is 405; without onStop it is 404', async (t) => {
    const reasons: string[] = [];
    const s = await startStatus({ onStop: (r) => reasons.push(r) });
    t.after(() => s.server.stop());
    const get = await request(`${s.base}/stop`);
    assert.equal(get.status, 405);
    assert.equal(get.headers.allow, 'POST');
    assert.deepEqual(reasons, []);
    const post = await request(`${s.base}/stop`, { method: 'POST' });
    assert.equal(post.status, 202);
    assert.deepEqual(post.json(), { stopping: true });
    await waitUntil(() => reasons.length === 1);
    assert.match(reasons[0]!, /^stop request from (::ffff:)?127\.0\.0\.1$/);

    const plain = await startStatus();
    t.after(() => plain.server.stop());
    const nf = await request(`${plain.base}/stop`, { method: 'POST' });
    assert.equal(nf.status, 404);
  });

  test('POST /stop has the access rule of POST /send: token, loopback Host, no cross-origin POST', async (t) => {
    const reasons: string[] = [];
    const tok = await startStatus({ token: 's3cret-token', onStop: (r) => reasons.push(r) });
    t.after(() => tok.server.stop());
    assert.equal((await request(`${tok.base}/stop`, { method: 'POST' })).status, 401);
    assert.equal((await request(`${tok.base}/stop`, { method: 'POST', headers: { Authorization: 'Bearer wrong' } })).status, 401);

    const open = await startStatus({ onStop: (r) => reasons.push(r) });
    t.after(() => open.server.stop());
    assert.equal((await request(`${open.base}/stop`, { method: 'POST', headers: { Host: `evil.example:${open.port}` } })).status, 403);
    assert.equal((await request(`${open.base}/stop`, { method: 'POST', headers: { Origin: 'http://evil.example' } })).status, 403);
    assert.deepEqual(reasons, [], 'no refused request stopped anything');
    assert.equal((await request(`${tok.base}/stop`, { method: 'POST', headers: { Authorization: 'Bearer s3cret-token' } })).status, 202);
    await waitUntil(() => reasons.length === 1);
  });
});


describe('parseSendRequest', () => {
  test('JSON without a content type is recognised; empty optional fields are dropped', () => {
    assert.deepEqual(parseSendRequest('{"file":"/a","peer":"p","inbox":"","as":"x/y"}', undefined), { file: '/a', peer: 'p', as: 'x/y' });
    assert.deepEqual(parseSendRequest('file=%2Fa%20b&peer=p&inbox=r', 'text/plain'), { file: '/a b', peer: 'p', inbox: 'r' });
    assert.throws(() => parseSendRequest('[1]', 'application/json'), /not a JSON object/);
  });

  test('clientId (the TouchDesigner module\'s own job id) is passed on when short and plain, refused otherwise', () => {
    assert.deepEqual(parseSendRequest('{"file":"/a","peer":"p","clientId":"td-3f9a2c-17"}', 'application/json'), { file: '/a', peer: 'p', clientId: 'td-3f9a2c-17' });
    assert.deepEqual(parseSendRequest('file=%2Fa&peer=p&clientId=x.y:z_1', undefined), { file: '/a', peer: 'p', clientId: 'x.y:z_1' });
    assert.throws(() => parseSendRequest('{"file":"/a","peer":"p","clientId":"a b"}', 'application/json'), /`clientId` must be 1-64 characters/);
    assert.throws(() => parseSendRequest(JSON.stringify({ file: '/a', peer: 'p', clientId: 'x'.repeat(65) }), 'application/json'), /`clientId` must be 1-64 characters/);
    assert.throws(() => parseSendRequest('{"file":"/a","peer":"p","clientId":7}', 'application/json'), /`clientId` must be a string/);
  });
});
