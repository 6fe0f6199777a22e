/**
 * `npm start` (scripts/start.mjs): no rebuild when dist/ is current, and SIGINT sent to
 * npm's own PID reaches the agent, which stops gracefully; npm exits with the agent's code.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { tempDir, writeAgentConfig } from '../helpers/agents.js';
import { waitUntil } from '../helpers/wait.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..');

test('npm start: SIGINT to npm reaches the agent, which stops gracefully', { skip: process.platform === 'win32' }, async () => {
  const dir = await tempDir('tdx-npmstart-');
  const config = await writeAgentConfig({ name: 'npmstart', dir, port: 0 });
  const npm = spawn('npm', ['start', '--silent', '--', '--config', config], { cwd: root, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env } });
  let out = '';
  npm.stdout.on('data', (d: Buffer) => (out += d.toString()));
  npm.stderr.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<number | null>((resolve) => npm.on('exit', (code) => resolve(code)));
  // A build may run first when sources are newer than dist/ (generous deadline).
  await waitUntil(() => /tdxfer running|listening/i.test(out), 300_000, () => `agent start; output:\n${out}`);
  npm.kill('SIGINT');
  const code = await exited;
  assert.match(out, /SIGINT: stopping/, out);
  assert.match(out, /agent stopped/, out);
  assert.equal(code, 0, out);
});

test('npm start: no rebuild when dist/ is newer than the sources', { skip: process.platform === 'win32' }, async () => {
  const dir = await tempDir('tdx-npmstart-');
  const config = await writeAgentConfig({ name: 'npmstart2', dir, port: 0 });
  // The first test (or the test build) left dist/ current.
  const npm = spawn('npm', ['start', '--silent', '--', '--config', config], { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  npm.stdout.on('data', (d: Buffer) => (out += d.toString()));
  npm.stderr.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<number | null>((resolve) => npm.on('exit', (code) => resolve(code)));
  await waitUntil(() => /tdxfer running|listening/i.test(out), 300_000, () => `agent start; output:\n${out}`);
  npm.kill('SIGTERM');
  assert.equal(await exited, 0, out);
  assert.doesNotMatch(out, /building/, out);
  assert.match(out, /agent stopped/, out);
});
