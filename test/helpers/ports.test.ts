/**
 * reservedPort (helpers/ports.ts): the ports the tests name before anything listens on
 * them. Outside the ephemeral range, bindable, locked across processes by a file holding
 * the PID, released at exit; a lock of a dead process is cleared, a live one's is kept.
 * holdFixedPorts: fixed ports (the built-in defaults) waited for while another process
 * holds their lock or listens on them.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { spawn, spawnSync } from 'node:child_process';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { holdFixedPorts, lockFile, lockPort, releasePort, reservedPort } from './ports.js';

const here = path.dirname(fileURLToPath(import.meta.url));

test('a reserved port is below the ephemeral ranges, locked with this PID, bindable, and released on request', async () => {
  const port = await reservedPort();
  assert.ok(port >= 20000 && port < 32000, `port ${port}`);
  assert.equal(fs.readFileSync(lockFile(port), 'utf8'), String(process.pid));
  const other = await reservedPort();
  assert.notEqual(other, port);
  const srv = net.createServer();
  await new Promise<void>((resolve, reject) => srv.once('error', reject).listen(port, '127.0.0.1', resolve));
  await new Promise<void>((r) => srv.close(() => r()));
  releasePort(port);
  releasePort(other);
  assert.equal(fs.existsSync(lockFile(port)), false);
});

test("another live process's lock is respected; a dead process's lock is cleared, then the port can be locked", async () => {
  const port = await reservedPort();
  releasePort(port);
  // A live holder: a child that sleeps.
  const live = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 60000)'], { stdio: 'ignore' });
  try {
    fs.writeFileSync(lockFile(port), String(live.pid));
    assert.equal(lockPort(port), false, 'held by a live process');
    assert.equal(fs.readFileSync(lockFile(port), 'utf8'), String(live.pid), 'its lock stays');
  } finally {
    live.kill('SIGKILL');
    await new Promise((r) => (live.exitCode !== null || live.signalCode !== null ? r(null) : live.once('exit', r)));
  }
  // Now its PID is dead: the first try clears the stale lock (without taking it), the next takes it.
  assert.equal(lockPort(port), false);
  assert.equal(fs.existsSync(lockFile(port)), false, 'the stale lock was cleared');
  assert.equal(lockPort(port), true);
  assert.equal(fs.readFileSync(lockFile(port), 'utf8'), String(process.pid));
  fs.rmSync(lockFile(port), { force: true });
});

test('a process that exits removes its locks', () => {
  const mod = path.join(here, 'ports.js');
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', `const { reservedPort } = await import(${JSON.stringify(pathToFileURL(mod).href)}); console.log(await reservedPort());`], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  const port = Number(r.stdout.trim());
  assert.ok(port >= 20000 && port < 32000, r.stdout);
  assert.equal(fs.existsSync(lockFile(port)), false, `the child's lock of ${port} is gone`);
});

/** Resolves once `fn` was called `n` times (counted by the returned tick). */
function counter(n: number): { tick: () => void; reached: Promise<void> } {
  let count = 0;
  let done!: () => void;
  const reached = new Promise<void>((r) => (done = r));
  return { tick: () => void (++count >= n && done()), reached };
}

test("holdFixedPorts waits while another live process holds a port's lock, and takes it once that process is gone", async () => {
  const port = await reservedPort();
  releasePort(port);
  const live = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 60000)'], { stdio: 'ignore' });
  fs.writeFileSync(lockFile(port), String(live.pid));
  const waits = counter(3);
  let killed = false;
  const hold = holdFixedPorts([port], { host: '127.0.0.1', everyMs: 20, onWait: waits.tick }).then((release) => ({ release, afterKill: killed }));
  await waits.reached;
  killed = true;
  live.kill('SIGKILL');
  const { release, afterKill } = await hold;
  assert.equal(afterKill, true, 'taken only after the holder was gone');
  assert.equal(fs.readFileSync(lockFile(port), 'utf8'), String(process.pid));
  release();
  assert.equal(fs.existsSync(lockFile(port)), false);
});

test('holdFixedPorts waits while something listens on a port (no lock: another platform\'s test process), all ports or none', async () => {
  const [a, b] = [await reservedPort(), await reservedPort()];
  releasePort(a);
  releasePort(b);
  const srv = net.createServer();
  await new Promise<void>((resolve, reject) => srv.once('error', reject).listen(b, '127.0.0.1', resolve));
  const waits = counter(3);
  let closed = false;
  const hold = holdFixedPorts([a, b], { host: '127.0.0.1', everyMs: 20, onWait: waits.tick }).then((release) => ({ release, afterClose: closed }));
  await waits.reached;
  assert.equal(fs.existsSync(lockFile(a)), false, 'the free port is not kept locked while the other is busy');
  await new Promise<void>((r) => srv.close(() => r()));
  closed = true;
  const { release, afterClose } = await hold;
  assert.equal(afterClose, true);
  for (const p of [a, b]) assert.equal(fs.readFileSync(lockFile(p), 'utf8'), String(process.pid));
  release();
  for (const p of [a, b]) assert.equal(fs.existsSync(lockFile(p)), false);
});

test('holdFixedPorts gives up after its deadline with the ports and the lock folder in the message', async () => {
  const port = await reservedPort(); // held by this process: never free for the call below
  await assert.rejects(holdFixedPorts([port], { host: '127.0.0.1', deadlineMs: 100, everyMs: 20 }), (err: Error) => {
    assert.match(err.message, new RegExp(`ports ${port} stayed in use`));
    assert.match(err.message, /tdxfer-test-ports/);
    return true;
  });
  releasePort(port);
});
