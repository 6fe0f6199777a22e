import { test, describe, beforeEach, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import v8 from 'node:v8';
import vm from 'node:vm';
import { createHash, randomBytes } from 'node:crypto';
import { Inbox } from '../../src/inbox/inbox.js';
import { LegacyListener, type LegacyListenerOptions } from '../../src/legacy/server.js';
import { sendLegacyFile } from '../../src/legacy/client.js';
import { TdxError } from '../../src/errors.js';
import { memoryLogger } from '../../src/log.js';
import type { ReceivedInfo } from '../../src/types.js';
import { encodeLegacyHeader, base64MimeLength, parseLegacyAnswer, type LegacyAnswer } from '../../src/protocol/legacy.js';
import { python, runPeer } from './helpers.js';
import { waitUntil } from '../helpers/wait.js';

v8.setFlagsFromString('--expose-gc');
const gc = vm.runInNewContext('gc') as () => void;

let tmp: string;
let inbox: Inbox;
let listener: LegacyListener | null;
let log: ReturnType<typeof memoryLogger>;
let received: ReceivedInfo[];

beforeEach(async () => {
  tmp = await fs.promises.mkdtemp(path.join(os.tmpdir(), 'tdxfer-legacy-server-'));
  log = memoryLogger();
  received = [];
  listener = null;
  inbox = await Inbox.open(
    { name: 'tox', path: path.join(tmp, 'inbox'), onCollision: 'rename', staging: path.join(tmp, 'staging') },
    { log, stateDir: path.join(tmp, 'state'), maxFileBytes: 200 * 1024 * 1024, reserveBytes: 0 },
  );
});
afterEach(async () => {
  await listener?.stop();
  await inbox.close();
  await fs.promises.rm(tmp, { recursive: true, force: true });
});

async function listen(over: Partial<LegacyListenerOptions> = {}): Promise<number> {
  listener = new LegacyListener({
    host: '127.0.0.1',
    port: 0,
    inbox,
    allow: [],
    maxFileBytes: 200 * 1024 * 1024,
    log,
    onReceived: (i) => received.push(i),
    ...over,
  });
  return (await listener.start()).port;
}

/** Every file below `dir`, relative, sorted. */
async function listAll(dir: string): Promise<string[]> {
  const entries = await fs.promises.readdir(dir, { recursive: true, withFileTypes: true });
  return entries
    .filter((e) => !e.isDirectory())
    .map((e) => path.relative(dir, path.join(e.parentPath, e.name)))
    .sort();
}

async function assertNothingKept(): Promise<void> {
  assert.deepEqual(await listAll(inbox.path), [], 'inbox must stay empty');
  assert.deepEqual(await listAll(inbox.stagingDir), [], 'staging must be empty');
}

async function sha256File(file: string): Promise<string> {
  const h = createHash('sha256');
  for await (const c of fs.createReadStream(file)) h.update(c as Buffer);
  return h.digest('hex');
}

/** Writes `size` random bytes in 1 MiB pieces (never the whole file in memory); returns its SHA-256. */
async function writeRandom(file: string, size: number): Promise<string> {
  const h = createHash('sha256');
  const out = fs.createWriteStream(file);
  for (let done = 0; done < size; ) {
    const chunk = randomBytes(Math.min(1 << 20, size - done));
    h.update(chunk);
    if (!out.write(chunk)) await new Promise<void>((r) => out.once('drain', () => r()));
    done += chunk.length;
  }
  await new Promise<void>((resolve, reject) => {
    out.once('error', reject);
    out.end(() => resolve());
  });
  return h.digest('hex');
}

/** Raw client for malformed requests: writes `parts` (with optional pauses), returns the answer (or null) once the server closes. */
async function rawRequest(port: number, parts: Array<Buffer | number>, opts: { end?: boolean } = {}): Promise<{ answer: LegacyAnswer | null; bytes: Buffer; closedByServer: boolean }> {
  const s = net.connect({ host: '127.0.0.1', port });
  s.on('error', () => {});
  const got: Buffer[] = [];
  s.on('data', (d: Buffer) => got.push(d));
  const closed = new Promise<void>((r) => s.once('close', () => r()));
  await new Promise<void>((r, j) => {
    s.once('connect', r);
    s.once('error', j);
  });
  for (const p of parts) {
    if (typeof p === 'number') await new Promise((r) => setTimeout(r, p));
    else if (!s.destroyed) s.write(p);
  }
  if (opts.end !== false && !s.destroyed) s.end();
  // A hang detector only: every caller expects the server to close first.
  let closedByServer = true;
  const t = setTimeout(() => {
    closedByServer = false;
    s.destroy();
  }, 60_000);
  await closed;
  clearTimeout(t);
  const bytes = Buffer.concat(got);
  return { answer: bytes.length > 0 ? parseLegacyAnswer(bytes) : null, bytes, closedByServer };
}

/** Resolves once a log record matches (the listener logs a failure after it aborted the file). */
function waitForLog(match: (r: { level: string; msg: string; fields: Record<string, unknown> }) => boolean): Promise<void> {
  return waitUntil(() => log.records.some(match), undefined, () => `a matching log record: ${log.records.map((r) => r.msg).join(' | ')}`);
}

function header(name: string, contentLength: number): Buffer {
  return encodeLegacyHeader({ file_name: name, 'content-length': contentLength });
}

describe('LegacyListener with the Python TOX sender', () => {
  test('20 files including 50 MB land byte-identical, each answered true, memory flat', async () => {
    const port = await listen();
    const src = path.join(tmp, 'src');
    await fs.promises.mkdir(src);
    const sizes = [0, 1, 2, 3, 57, 58, 76, 1000, 4096, 65536, 65537, 100_000, 250_000, 1_000_000, 2_000_000, 5, 77, 999, 12_345, 50 * 1024 * 1024];
    // Written by a child process: random bytes generated here would leave freed-but-retained
    // heap in this process, hiding a later RSS rise (glibc does not return it to the OS).
    const names = sizes.map((_, i) => `clip-${String(i).padStart(2, '0')} ü.bin`);
    python(
      'import os,sys,json\nfor p,n in json.load(sys.stdin):\n  with open(p,"wb") as f:\n    while n>0:\n      k=min(n,1<<20); f.write(os.urandom(k)); n-=k',
      Buffer.from(JSON.stringify(names.map((n, i) => [path.join(src, n), sizes[i]]))),
    );

    // RSS of this process (listener + inbox) while the Python sender pushes everything.
    // Garbage is collected before each sample: what stays is what the receiver holds,
    // not how lazily V8 frees its 64 KiB socket chunks.
    gc();
    const base = process.memoryUsage().rss;
    let peak = base;
    const sampler = setInterval(() => {
      gc();
      peak = Math.max(peak, process.memoryUsage().rss);
    }, 25);
    const t0 = Date.now();
    const run = await runPeer('tox_sender.py', ['--timeout', '120', '--host', '127.0.0.1', '--port', String(port), ...names.map((n) => path.join(src, n))]);
    clearInterval(sampler);
    const elapsed = Date.now() - t0;

    const files: Array<{ name: string; size: number; sha: string }> = [];
    for (const [i, name] of names.entries()) files.push({ name, size: sizes[i]!, sha: await sha256File(path.join(src, name)) });
    assert.equal(run.code, 0, `tox_sender.py failed: ${run.lines.join(' | ')} ${run.stderr}`);
    assert.deepEqual(
      run.lines,
      files.map((f) => `OK ${f.name}`),
    );
    assert.deepEqual(await listAll(inbox.path), files.map((f) => f.name).sort());
    for (const f of files) {
      const landed = path.join(inbox.path, f.name);
      assert.equal((await fs.promises.stat(landed)).size, f.size, f.name);
      assert.equal(await sha256File(landed), f.sha, f.name);
    }
    assert.deepEqual(await listAll(inbox.stagingDir), []);
    // Every connection is closed once its sender closed: none left half-open until the idle timeout.
    await waitUntil(async () => (await listener!.connections()) === 0, undefined, () => 'every legacy connection closed');
    assert.equal(received.length, files.length);
    assert.deepEqual(
      received.map((r) => [r.file, r.size, r.sha256, r.via, r.from]),
      files.map((f) => [f.name, f.size, f.sha, 'legacy', '127.0.0.1']),
    );
    const growth = peak - base;
    // Buffering the payload would cost at least the decoded 50 MiB (67 MiB as base64).
    assert.ok(growth < 20 * 1024 * 1024, `RSS grew by ${(growth / 1048576).toFixed(1)} MiB while receiving a 50 MiB file (in ${elapsed} ms)`);
  });
});

describe('LegacyListener answers the Python TOX sender false', () => {
  test('a refused name: the original-style sender reports the false answer and exits non-zero', async () => {
    const port = await listen();
    const good = path.join(tmp, 'good.txt');
    await fs.promises.writeFile(good, 'good');
    const run = await runPeer('tox_sender.py', ['--timeout', '120', '--port', String(port), `${good}=../../bad.txt`, good]);
    assert.equal(run.code, 1, run.stderr);
    assert.equal(run.lines.length, 2);
    assert.match(run.lines[0]!, /^FAIL \.\.\/\.\.\/bad\.txt answer \{"success": false, "error": ".*bad\.txt.*"\}$/);
    assert.equal(run.lines[1], 'OK good.txt');
    assert.deepEqual(await listAll(inbox.path), ['good.txt']);
  });
});

describe('LegacyListener with the tdxfer legacy sender', () => {
  test('files of every edge size round-trip; onProgress reaches the total', async () => {
    const port = await listen({ allow: ['127.0.0.1/32'] });
    for (const size of [0, 1, 56, 57, 58, 300_000]) {
      const file = path.join(tmp, `s${size}.bin`);
      const sha = await writeRandom(file, size);
      let last = 0;
      await sendLegacyFile({ host: '127.0.0.1', port, file, targetName: `s${size}.bin`, onProgress: (d) => (last = d) });
      assert.equal(last, size);
      assert.equal(await sha256File(path.join(inbox.path, `s${size}.bin`)), sha);
    }
    assert.equal(received.length, 6);
  });

  test('an existing name is kept and the new file renamed (onCollision=rename)', async () => {
    const port = await listen();
    const file = path.join(tmp, 'a.txt');
    await fs.promises.writeFile(file, 'first');
    await sendLegacyFile({ host: '127.0.0.1', port, file, targetName: 'a.txt' });
    await fs.promises.writeFile(file, 'second');
    await sendLegacyFile({ host: '127.0.0.1', port, file, targetName: 'a.txt' });
    const names = await listAll(inbox.path);
    assert.equal(names.length, 2);
    assert.equal(await fs.promises.readFile(path.join(inbox.path, 'a.txt'), 'utf8'), 'first');
    const other = names.find((n) => n !== 'a.txt')!;
    assert.equal(await fs.promises.readFile(path.join(inbox.path, other), 'utf8'), 'second');
  });

  test('hostile file names are confined or refused; nothing lands outside the inbox', async () => {
    const port = await listen();
    const file = path.join(tmp, 'payload');
    await fs.promises.writeFile(file, 'hostile');
    const tag = randomBytes(6).toString('hex');
    const names = [`../../escape-${tag}`, `../escape-${tag}`, path.join(tmp, `abs-escape-${tag}`), `C:\\escape-${tag}`, `sub/../../escape-${tag}`, `/etc/../escape-${tag}`];
    for (const name of names) {
      try {
        await sendLegacyFile({ host: '127.0.0.1', port, file, targetName: name, timeoutMs: 5000 });
      } catch (err) {
        assert.ok(err instanceof TdxError && err.code === 'LEGACY_REFUSED', `${name}: ${String(err)}`);
        assert.match(err.message, /refuse|name/i);
      }
    }
    // Whatever was accepted sits inside the inbox; nothing else exists in the temp dir or above it.
    const outside = (await listAll(tmp)).filter((f) => !f.startsWith('inbox' + path.sep) && !f.startsWith('state' + path.sep) && f !== 'payload');
    assert.deepEqual(outside, []);
    for (const up of [path.dirname(tmp), path.dirname(path.dirname(tmp))]) {
      assert.equal(fs.existsSync(path.join(up, `escape-${tag}`)), false);
    }
    assert.equal(fs.existsSync(path.join(tmp, `abs-escape-${tag}`)), false);
    for (const f of await listAll(inbox.path)) assert.equal(await fs.promises.readFile(path.join(inbox.path, f), 'utf8'), 'hostile');
    assert.ok(log.records.some((r) => r.msg.includes('legacy file failed') && r.fields.source === '127.0.0.1'));
  });

  test('a file over maxFileBytes is refused with the reason; nothing kept', async () => {
    const port = await listen({ maxFileBytes: 1000 });
    const file = path.join(tmp, 'big');
    await writeRandom(file, 5000);
    await assert.rejects(sendLegacyFile({ host: '127.0.0.1', port, file, targetName: 'big' }), (err: unknown) => {
      assert.ok(err instanceof TdxError && err.code === 'LEGACY_REFUSED', String(err));
      assert.match(err.message, /over the limit/);
      return true;
    });
    await assertNothingKept();
  });

  test('a source outside the allow-list is refused and logged', async () => {
    const port = await listen({ allow: ['127.0.0.2'] });
    const file = path.join(tmp, 'a');
    await fs.promises.writeFile(file, 'abc');
    await assert.rejects(sendLegacyFile({ host: '127.0.0.1', port, file, targetName: 'a', timeoutMs: 5000 }), (err: unknown) => {
      assert.ok(err instanceof TdxError && err.code === 'LEGACY_NO_ANSWER', String(err));
      return true;
    });
    const line = log.records.find((r) => r.msg.includes('not in legacy.allow'));
    assert.ok(line, 'refusal logged');
    assert.equal(line.fields.source, '127.0.0.1');
    assert.equal(line.level, 'warn');
    await assertNothingKept();
  });
});

describe('LegacyListener with malformed requests', () => {
  test('truncated payload (header says more, then EOF): answered false, nothing partial', async () => {
    const port = await listen();
    const payload = Buffer.from(randomBytes(3000).toString('base64'));
    const { answer } = await rawRequest(port, [header('t.bin', payload.length + 500), payload]);
    assert.equal(answer?.success, false);
    assert.match(answer!.error!, /closed after \d+ of \d+ payload bytes/);
    await assertNothingKept();
    const line = log.records.find((r) => r.msg.includes('legacy file failed'));
    assert.equal(line?.fields.file, 't.bin');
    assert.equal(line?.fields.source, '127.0.0.1');
  });

  test('truncated header: answered false, nothing kept', async () => {
    const port = await listen();
    const { answer } = await rawRequest(port, [header('t.bin', 100).subarray(0, 20)]);
    assert.equal(answer?.success, false);
    assert.match(answer!.error!, /before the header was complete/);
    await assertNothingKept();
  });

  test('bad JSON header: answered false', async () => {
    const port = await listen();
    const { answer } = await rawRequest(port, [Buffer.from([0, 5]), Buffer.from('{oops')]);
    assert.equal(answer?.success, false);
    assert.match(answer!.error!, /not valid UTF-8 JSON/);
    await assertNothingKept();
  });

  test('header that is not a file upload: answered false', async () => {
    const port = await listen();
    const json = Buffer.from('{"content-type": "text/json", "content-encoding": "utf-8", "file_name": "a", "content-length": 4}');
    const len = Buffer.alloc(2);
    len.writeUInt16BE(json.length);
    const { answer } = await rawRequest(port, [len, json, Buffer.from('QUJD')]);
    assert.equal(answer?.success, false);
    assert.match(answer!.error!, /content-type/);
    await assertNothingKept();
  });

  test('bad base64 in the middle of a large payload: answered false while the sender is still writing, nothing partial', async () => {
    const port = await listen();
    const good = Buffer.from(randomBytes(600_000).toString('base64'));
    const bad = Buffer.from('!!!!');
    const rest = Buffer.from(randomBytes(600_000).toString('base64'));
    const total = good.length + bad.length + rest.length;
    const { answer } = await rawRequest(port, [header('b.bin', total), good, bad, rest]);
    assert.equal(answer?.success, false);
    assert.match(answer!.error!, /invalid character '!'/);
    await assertNothingKept();
  });

  test('bad padding at the end: answered false, nothing kept', async () => {
    const port = await listen();
    const payload = Buffer.from('QUJDREVG\nQUI\n');
    const { answer } = await rawRequest(port, [header('p.bin', payload.length), payload], { end: false });
    assert.equal(answer?.success, false);
    assert.match(answer!.error!, /padding/);
    await assertNothingKept();
  });

  test('a stalled sender (slow-loris) is dropped after the idle timeout; nothing partial', async () => {
    const port = await listen({ idleTimeoutMs: 300 });
    const payload = Buffer.from(randomBytes(3000).toString('base64'));
    const r = await rawRequest(port, [header('slow.bin', payload.length * 2), payload], { end: false });
    assert.ok(r.closedByServer, 'the listener closed the stalled connection');
    assert.equal(r.answer, null, 'a timed-out connection is destroyed, not answered');
    await waitForLog((x) => x.msg.includes('legacy file failed') && /idle timeout/.test(String(x.fields.reason)));
    await assertNothingKept();
  });

  test('random garbage connections never crash the listener; a valid file still lands afterwards', async () => {
    const port = await listen({ idleTimeoutMs: 500 });
    for (let i = 0; i < 20; i++) await rawRequest(port, [randomBytes(1 + (i * 37) % 400)]);
    const file = path.join(tmp, 'ok');
    await fs.promises.writeFile(file, 'still fine');
    await sendLegacyFile({ host: '127.0.0.1', port, file, targetName: 'ok' });
    assert.deepEqual(await listAll(inbox.path), ['ok']);
    assert.deepEqual(await listAll(inbox.stagingDir), []);
  });

  test('connections over maxConnections are closed at once and logged', async () => {
    const port = await listen({ maxConnections: 1 });
    const first = net.connect({ host: '127.0.0.1', port });
    first.on('error', () => {});
    await new Promise((r) => first.once('connect', r));
    first.write(header('hold.bin', 8)); // keeps the only slot busy
    await waitUntil(async () => (await listener!.connections()) === 1, undefined, () => 'the first connection accepted');
    const second = await rawRequest(port, [header('second.bin', 4), Buffer.from('QUJD')], { end: false });
    assert.equal(second.bytes.length, 0, 'the second connection is closed without an answer');
    assert.ok(log.records.some((r) => r.msg.includes('too many connections')));
    first.destroy();
    await waitForLog((r) => r.msg.includes('legacy file failed') && r.fields.file === 'hold.bin');
    await assertNothingKept();
  });

  test('stop() during a transfer aborts it and leaves nothing partial', async () => {
    const port = await listen();
    const s = net.connect({ host: '127.0.0.1', port });
    s.on('error', () => {});
    await new Promise((r) => s.once('connect', r));
    s.write(header('mid.bin', base64MimeLength(1_000_000)));
    s.write(Buffer.from(randomBytes(300_000).toString('base64')));
    await waitUntil(async () => (await listAll(inbox.stagingDir)).length > 0, undefined, () => 'the transfer started (a staging file)');
    await listener!.stop();
    listener = null;
    s.destroy();
    await assertNothingKept();
  });
});
