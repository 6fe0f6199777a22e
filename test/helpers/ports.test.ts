/**
 * reservedPort (helpers/ports.ts): the ports the tests name before anything listens on
 * them. Outside the ephemeral range, bindable, locked across processes by a file holding
 * the PID, released at exit; a lock of a dead process is cleared, a live one's is kept.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { spawn, spawnSync } from 'node:child_process';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { lockFile, lockPort, releasePort, reservedPort } from './ports.js';

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
