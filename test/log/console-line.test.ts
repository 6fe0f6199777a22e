/**
 * The console line (`<local time> <LEVEL> [component] message key=value…`) as a real agent writes
 * it: a child process logs through the real winston logger to its stdout and stderr, and the
 * lines are checked whole. Also the clock behind the time, against an independent rendering.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { consoleText, makeClock } from '../../src/log.js';

const logModule = pathToFileURL(path.join(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'src', 'log.js')).href;

/** Local time as `YYYY-MM-DD HH:mm:ss.SSS`, through the time-zone offset and ISO rendering. */
function reference(ms: number): string {
  const offsetMs = new Date(ms).getTimezoneOffset() * 60_000;
  return new Date(ms - offsetMs).toISOString().replace('T', ' ').slice(0, 23);
}

test('makeClock: local time to the millisecond, across second and day boundaries, forwards and back', () => {
  const clock = makeClock();
  const base = Date.UTC(2026, 11, 31, 23, 59, 58, 990);
  const times = [base, base + 9, base + 10, base + 1009, base + 1010, base + 2010, base + 2011, base - 5000, base + 123_456_789, 0, 999, 1000];
  for (let i = 0; i < 2000; i++) times.push(base + Math.floor(Math.random() * 400 * 86_400_000) - 200 * 86_400_000);
  for (const ms of times) assert.equal(clock(ms), reference(ms), `time ${ms}`);
});

test('consoleText: fields in order as key=value, strings quoted only when needed, errors by message', () => {
  const info = { component: 'inbox', a: 1, s: 'two words', plain: 'x/y.bin', q: 'say "hi"', e: new Error('boom'), o: { x: [1, 2] }, u: undefined, level: 'warn', message: 'landed' };
  assert.equal(consoleText(info, 'T'), 'T WARN  [inbox] landed a=1 s="two words" plain=x/y.bin q="say \\"hi\\"" e="boom" o={"x":[1,2]} u=undefined');
  assert.equal(consoleText({ level: 'info', message: 'm' }, 'T'), 'T INFO  m');
});

interface Lines { out: string[]; err: string[]; before: number; after: number }

function logInChild(level: string, file: string | null): Lines {
  const script = `
    const { createLogger } = await import(${JSON.stringify(logModule)});
    const log = createLogger({ level: ${JSON.stringify(level)}${file ? `, file: ${JSON.stringify(file)}` : ''} });
    log.debug('quiet detail', { n: 1 });
    log.info('sent a/b.bin to playback/renders', { bytes: 4096, peer: 'play back' });
    log.child({ component: 'outbox' }).warn('could not archive', { rel: 'a/b.bin', err: new Error('EPERM: locked') });
    log.info('joined', { message: 'tail' });
    log.info('sent 50%off.png and frame%d.png', { size: 1 });
    log.error('disk full', { inbox: 'renders' });
    await log.close();
  `;
  const before = Date.now();
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8', timeout: 60_000 });
  const after = Date.now();
  assert.equal(r.status, 0, `child failed: ${r.stderr}`);
  // winston's console ends a line with os.EOL: CRLF on Windows.
  const lines = (s: string) => s.split(/\r?\n/).filter((l) => l !== '');
  return { out: lines(r.stdout), err: lines(r.stderr), before, after };
}

const TIME = /^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}) /;

function timeOf(line: string, l: Lines): void {
  const m = TIME.exec(line);
  assert.ok(m, `line starts with the local time: ${line}`);
  // Within the child's run (to the second: the reference renders whole milliseconds).
  assert.ok(m[1]! >= reference(l.before - 1000) && m[1]! <= reference(l.after + 1000), `time ${m[1]} within the run`);
}

test('a real logger at level info: one line per record above the level, on stdout, errors on stderr', () => {
  const l = logInChild('info', null);
  const body = (line: string) => line.replace(TIME, '');
  assert.deepEqual(l.out.map(body), [
    'INFO  sent a/b.bin to playback/renders bytes=4096 peer="play back"',
    'WARN  [outbox] could not archive rel=a/b.bin err="EPERM: locked"',
    'INFO  joined tail',
    // winston takes a message with %o, %d, %s… for a format string and drops its fields unless they are handed over whole.
    'INFO  sent 50%off.png and frame%d.png size=1',
  ]);
  assert.deepEqual(l.err.map(body), ['ERROR disk full inbox=renders']);
  for (const line of [...l.out, ...l.err]) timeOf(line, l);
});

test('a real logger at level debug with a file: debug lines too, and the file gets the same records as JSON', async () => {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'tdx-line-'));
  try {
    const l = logInChild('debug', path.join(dir, 'agent.jsonl'));
    assert.equal(l.out[0]!.replace(TIME, ''), 'DEBUG quiet detail n=1');
    assert.equal(l.out.length, 5);
    const [name] = (await fs.readdir(dir)).filter((f) => f.endsWith('.jsonl'));
    const recs = (await fs.readFile(path.join(dir, name!), 'utf8')).split('\n').filter(Boolean).map((x) => JSON.parse(x) as Record<string, unknown>);
    assert.deepEqual(recs.map((r) => [r['level'], r['message']]), [
      ['debug', 'quiet detail'],
      ['info', 'sent a/b.bin to playback/renders'],
      ['warn', 'could not archive'],
      ['info', 'joined tail'],
      ['info', 'sent 50%off.png and frame%d.png'],
      ['error', 'disk full'],
    ]);
    assert.equal(recs[1]!['bytes'], 4096);
    assert.equal(recs[2]!['component'], 'outbox');
    assert.equal(recs[2]!['rel'], 'a/b.bin');
    assert.equal(typeof recs[0]!['timestamp'], 'string');
  } finally {
    await fs.rm(dir, { recursive: true, force: true });
  }
});
