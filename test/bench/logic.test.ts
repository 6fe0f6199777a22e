/**
 * The bench's own logic, pure (no speed is asserted anywhere): rsyncd.conf text, /proc stat
 * parsing, ratio and CPU arithmetic, link verdicts, CPU profile summaries, the small-files
 * floor's frames.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseProcStat, parseWrappedStat, rsyncdConf } from './rsync.js';
import { cpuBoundMBps, cpuPer, fmtCpu, fmtRatio, GIB, linkVerdicts, medianCpu, pairedRatio, ratio } from './figures.js';
import { areaOf, summarise, type CpuProfile } from './cpuprofile.js';
import { FrameParser, HEADER, frameFor, setDigest } from './small-floor.js';

test('rsyncd.conf: module, path and files inside the folder; uid/gid only when given', () => {
  const text = rsyncdConf({ dir: '/tmp/b/rsyncd', module: 'bench', path: '/tmp/b/rsyncd/data' });
  assert.match(text, /^pid file = \/tmp\/b\/rsyncd\/rsyncd\.pid$/m);
  assert.match(text, /^lock file = \/tmp\/b\/rsyncd\/rsyncd\.lock$/m);
  assert.match(text, /^log file = \/tmp\/b\/rsyncd\/rsyncd\.log$/m);
  assert.match(text, /^use chroot = no$/m);
  assert.match(text, /^\[bench\]\n {2}path = \/tmp\/b\/rsyncd\/data\n {2}read only = no\n {2}hosts allow = 127\.0\.0\.1$/m);
  assert.doesNotMatch(text, /uid|gid/);
  const root = rsyncdConf({ dir: '/d', module: 'm', path: '/d/x', uid: 0, gid: 0 });
  assert.match(root, /^uid = 0$/m);
  assert.match(root, /^gid = 0$/m);
  // Global settings come before the module section.
  assert.ok(root.indexOf('uid = 0') < root.indexOf('[m]'));
});

test('rsyncd.conf: a value that cannot be written is refused with the reason', () => {
  assert.throws(() => rsyncdConf({ dir: '/d\nx', module: 'm', path: '/d/x' }), /dir "\/d\\nx" cannot be written/);
  assert.throws(() => rsyncdConf({ dir: '/d', module: 'm', path: '/d/x ' }), /path/);
  assert.throws(() => rsyncdConf({ dir: '/d', module: 'a]b', path: '/d/x' }), /module name "a\]b"/);
});

// A real /proc/<pid>/stat line shape; the command name holds spaces and a ')'.
const STAT = '5576 (sh (x) y) S 5522 5522 494 0 -1 4194304 86 427 0 0 12 34 2 6 20 0 1 0 7058325 2654208 378 18446744073709551615 0 0';

test('/proc stat: user, kernel and reaped children, in ms (100 ticks per second)', () => {
  assert.deepEqual(parseProcStat(STAT), { self: { user: 120, sys: 340 }, children: { user: 20, sys: 60 } });
  assert.throws(() => parseProcStat('garbage'), /not a \/proc\/<pid>\/stat line/);
  assert.throws(() => parseProcStat('1 (a) S 1 2'), /field 14 is not a number/);
});

test('the wrapper stat line is found after the command output; missing → null', () => {
  const out = `sent 40 bytes\nsome (output) 1 2 3\n\n@@tdxfer-bench-stat ${STAT}\n`;
  assert.deepEqual(parseWrappedStat(out), { user: 20, sys: 60 });
  assert.equal(parseWrappedStat('rsync: connection refused\n'), null);
});

test('ratio is rsync time / tdxfer time; missing or zero gives n/a', () => {
  assert.equal(ratio(2000, 1000), 2);
  assert.equal(ratio(1000, 4000), 0.25);
  assert.ok(Number.isNaN(ratio(NaN, 1000)));
  assert.ok(Number.isNaN(ratio(1000, 0)));
  assert.equal(fmtRatio(ratio(1970, 4940)), '0.40');
  assert.equal(fmtRatio(NaN), 'n/a');
  // Per repetition, then the median: [2, 0.5, 1] → 1.
  assert.equal(pairedRatio([2000, 1000, 3000], [1000, 2000, 3000]), 1);
  assert.equal(pairedRatio([2000, 1000], [1000, 2000, 500]), 1.25);
});

test('CPU per GiB and per 1,000 files; the median run keeps its own user/kernel split', () => {
  assert.deepEqual(cpuPer({ user: 500, sys: 250 }, GIB / 2, GIB), { user: 1000, sys: 500 });
  assert.deepEqual(cpuPer({ user: 300, sys: 100 }, 2000, 1000), { user: 150, sys: 50 });
  const runs = [{ user: 900, sys: 100 }, { user: 100, sys: 100 }, { user: 300, sys: 400 }];
  assert.deepEqual(medianCpu(runs), { user: 300, sys: 400 });
  assert.deepEqual(medianCpu([{ user: 1, sys: 1 }, { user: 5, sys: 5 }]), { user: 1, sys: 1 });
  assert.equal(medianCpu([{ user: NaN, sys: 1 }]), undefined);
  assert.equal(fmtCpu({ user: 950, sys: 470 }), '1.42 (0.95+0.47)');
  assert.equal(fmtCpu(undefined), 'n/a');
});

test('link verdicts: which link a side keeps up with at its CPU per GiB', () => {
  // 1 s per GiB → 1074 MB/s: enough for 1 GbE (117 MB/s), not for 10 GbE (1170 MB/s).
  assert.equal(Math.round(cpuBoundMBps(1000)), 1074);
  assert.deepEqual(linkVerdicts(1000).map((v) => [v.link, v.keepsUp]), [['1 GbE', true], ['10 GbE', false]]);
  assert.deepEqual(linkVerdicts(500).map((v) => v.keepsUp), [true, true]);
  assert.deepEqual(linkVerdicts(10_000).map((v) => v.keepsUp), [false, false]);
  assert.equal(linkVerdicts(0)[1]!.keepsUp, true);
  assert.equal(linkVerdicts(1)[1]!.secondsPerGiB.toFixed(2), '0.92');
});

test('CPU profile summary: self time per function and area, idle left out, cut to a window', () => {
  const frame = (functionName: string, url: string, lineNumber = 0) => ({ functionName, url, lineNumber });
  const p: CpuProfile = {
    nodes: [
      { id: 1, callFrame: frame('(root)', '') },
      { id: 2, callFrame: frame('(idle)', '') },
      { id: 3, callFrame: frame('update', 'node:internal/crypto/hash', 131) },
      { id: 4, callFrame: frame('land', 'file:///w/dist/src/inbox/land.js', 9) },
      { id: 5, callFrame: frame('(garbage collector)', '') },
      { id: 6, callFrame: frame('validate', 'file:///w/node_modules/ajv/dist/x.js', 4) },
    ],
    startTime: 1000,
    endTime: 2000,
    // Sample i stands for the time until the next one.
    samples: [6, 3, 3, 4, 2, 5, 3],
    timeDeltas: [100, 100, 100, 100, 100, 100, 100],
  };
  const s = summarise(p, 10);
  // Sample times: 1100 … 1700; each stands for 100 µs (the last: its own delta).
  assert.equal(s.busyMs, 0.6);
  assert.deepEqual(s.top.map((t) => [t.name, t.where, t.area, +t.ms.toFixed(3)]), [
    ['update', 'hash:132', 'node internals', 0.3],
    ['validate', 'ajv/dist/x.js:5', 'npm ajv', 0.1],
    ['land', 'src/inbox/land.js:10', 'tdxfer src/inbox', 0.1],
    ['(garbage collector)', '', 'GC', 0.1],
  ]);
  assert.equal(s.top[0]!.pct, 50);
  assert.deepEqual(s.areas.map((a) => a.area), ['node internals', 'npm ajv', 'tdxfer src/inbox', 'GC']);
  // Only samples at 1300..1500: update (1300), land (1400), idle (1500).
  const w = summarise(p, 10, [1250, 1550]);
  assert.deepEqual(w.top.map((t) => t.name), ['update', 'land']);
  assert.equal(w.wallMs, 0.3);
  assert.equal(areaOf('', '(program)'), '(program: native, not JS)');
  assert.equal(areaOf('file:///x/node_modules/@scope/pkg/a.js', 'f'), 'npm @scope/pkg');
  assert.equal(areaOf('file:///x/dist/test/bench/run.js', 'f'), 'tdxfer test');
  assert.equal(areaOf('wasm://wasm/0011aa22', 'Hash_Update'), 'WebAssembly (e.g. hash-wasm)');
});

test('small-files floor: frames come back whole whatever the chunk boundaries; bad frames are refused', () => {
  const files = [
    { id: 0, name: 'f00000.bin', data: Buffer.from('a'.repeat(4096)) },
    { id: 1, name: 'é.bin', data: Buffer.alloc(0) },
    { id: 70_000, name: 'x', data: Buffer.from([1, 2, 3]) },
  ];
  const wire = Buffer.concat(
    files.map((f, i) => {
      const { buf, dataAt } = frameFor(f.id, f.name, f.data.length);
      f.data.copy(buf, dataAt);
      setDigest(buf, String(i).repeat(32));
      assert.equal(buf.length, HEADER + Buffer.byteLength(f.name) + f.data.length);
      return buf;
    }),
  );
  for (const step of [1, 7, 26, 27, 1000, wire.length]) {
    const parser = new FrameParser();
    const got = [];
    for (let at = 0; at < wire.length; at += step) got.push(...parser.push(wire.subarray(at, at + step)));
    assert.deepEqual(
      got.map((f) => [f.id, f.name, f.digest.toString('hex'), f.data.toString('hex')]),
      files.map((f, i) => [f.id, f.name, String(i).repeat(32), f.data.toString('hex')]),
      `chunks of ${step} bytes`,
    );
  }
  // A header alone, or a frame short of its last byte, gives nothing yet.
  assert.deepEqual(new FrameParser().push(wire.subarray(0, HEADER + 10 + 4095)), []);
  assert.throws(() => setDigest(Buffer.alloc(HEADER), 'abcd'), /not a 128-bit digest/);
  const named = (name: string) => {
    const { buf } = frameFor(0, name, 0);
    return () => new FrameParser().push(buf);
  };
  assert.throws(named('../x'), /bad name/);
  assert.throws(named('..'), /bad name/);
  assert.throws(named(''), /bad name/);
  const huge = frameFor(0, 'x', 0).buf;
  huge.writeUInt32BE(0xffffffff, 4);
  assert.throws(() => new FrameParser().push(huge), /frame of 4294967295 bytes/);
});

test('TextCounter: counts a needle across any split of the text, without counting one twice', async () => {
  const { TextCounter } = await import('./util.js');
  const line = (i: number) => `2026-12-08 00:30:30.713 INFO  [receiver] received batch/f${String(i).padStart(5, '0')}.bin\n`;
  const text = Array.from({ length: 50 }, (_, i) => line(i)).join('') + 'received other/x\n';
  // Every chunk size, including one character at a time and the whole text at once.
  for (const size of [1, 2, 3, 7, 16, 17, 64, 999, text.length]) {
    const c = new TextCounter(' received batch/');
    for (let i = 0; i < text.length; i += size) c.feed(text.slice(i, i + size));
    assert.equal(c.count, 50, `chunks of ${size}`);
  }
  // Non-overlapping, left to right (as indexOf finds them), also across a split.
  const aa = new TextCounter('aa');
  aa.feed('a');
  aa.feed('aa');
  assert.equal(aa.count, 1, 'aaa holds one non-overlapping aa');
  aa.feed('a');
  assert.equal(aa.count, 2, 'aaaa holds two');
  assert.throws(() => new TextCounter(''), /must not be empty/);
});

test('Proc.tally: resolves on the output event once the count is reached; rejects when the process exits first', async () => {
  const { spawnProc } = await import('./util.js');
  // A child that prints 30 lines in pieces (split inside the needle), then waits to be stopped.
  const script = `const w=(s)=>process.stdout.write(s);let i=0;const t=setInterval(()=>{w('x rec');w('eived a/'+i+'\\n');if(++i===30){clearInterval(t);setInterval(()=>{},1000);}},2);`;
  const p = spawnProc(process.execPath, ['-e', script]);
  try {
    const seen = p.tally('received a/');
    const at = await seen.reached(30, 60_000);
    assert.ok(at > 0);
    assert.equal(seen.count, 30);
    seen.close();
  } finally {
    await p.stop();
  }
  const q = spawnProc(process.execPath, ['-e', `process.stdout.write('received a/1\\n');`]);
  const early = q.tally('received a/');
  await assert.rejects(early.reached(5, 60_000), /the process exited .* \(1 seen\)|the process exited .* \(0 seen\)/);
  await q.stop();
});

test('backlog against rsync: tdxfer from agent start minus its settle window; the row, the ratio and the verdict', async () => {
  const { AGENT_DEFAULT_SETTLE_MS, backlogRatio, formatBacklog } = await import('./backlog.js');
  const { DEFAULTS } = await import('../../src/config/defaults.js');
  assert.equal(AGENT_DEFAULT_SETTLE_MS, DEFAULTS.outbox.settleMs, 'the bench subtracts the settle window the agents really use');
  // 20,000 files: rsync 10 s; tdxfer 12 s from start with a 1 s settle window → 10 / 11.
  assert.equal(backlogRatio({ ms: 12_000, settleMs: 1000 }, { ms: 10_000 }), 10 / 11);
  assert.ok(Number.isNaN(backlogRatio({ ms: 900, settleMs: 1000 }, { ms: 10_000 })), 'no ratio from a time shorter than the settle window');
  const r = {
    files: 20_000, fileSize: 1024, ms: 12_000, prepareMs: 1, filesPerSec: 20_000 / 12, benchCpuMs: 500, settleMs: 1000, encrypt: true,
    rss: { sender: 100 * 1024 * 1024, receiver: 110 * 1024 * 1024 },
    cpu: { sender: { user: 4000, sys: 2000 }, receiver: { user: 3000, sys: 5000 } },
  };
  const rsync = { ms: 10_000, sender: { user: 100, sys: 300 }, receiver: { user: 200, sys: 2800 } };
  const text = formatBacklog(r, rsync);
  assert.match(text, /rsync -a --whole-file --fsync → daemon \(command start → exit\) +10\.00 s +2000 files\/s +1\.00 +0\.02 \(0\.01\+0\.01\) +0\.15 \(0\.01\+0\.14\)$/m);
  assert.match(text, /tdxfer, agent start → last file confirmed, TLS +12\.00 s +1667 files\/s +100 MB +110 MB +0\.91 \(settle 1\.00 s subtracted\) +0\.30 \(0\.20\+0\.10\) +0\.40 \(0\.15\+0\.25\)$/m);
  assert.match(text, /^PASS {2}rsync \/ tdxfer ≥ 0\.9, backlog 20000, TLS \(settle subtracted\): 0\.91$/m);
  assert.match(formatBacklog({ ...r, encrypt: false }, rsync), /^MISS {2}rsync \/ tdxfer ≥ 1, backlog 20000, plain \(settle subtracted\): 0\.91$/m);
  // Without rsync (not installed, --rsync off): no rsync row, ratio or verdict.
  assert.doesNotMatch(formatBacklog(r), /rsync/);
});

test('infoLogged: the per-file lines the bench counts are written at info and below, not at warn or error', async () => {
  const { infoLogged } = await import('./util.js');
  for (const l of [undefined, '', 'info', 'verbose', 'debug', 'silly']) assert.equal(infoLogged(l), true, String(l));
  for (const l of ['warn', 'error']) assert.equal(infoLogged(l), false, l);
});
