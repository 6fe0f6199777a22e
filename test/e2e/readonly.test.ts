/**
 * Inbox and outbox folders on a read-only mount: `tdxfer run` names the read-only file system (not ENOENT
 * from a recursive mkdir, not "fix its permissions") and exits 2, so systemd's RestartPreventExitStatus=2
 * stops instead of restarting in a loop. Each agent runs in its own mount namespace (unshare --mount with
 * private propagation), where a tmpfs is mounted read-only: nothing is mounted in the host's namespace.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs/promises';
import path from 'node:path';
import { cliCommand, tempDir, writeAgentConfig } from '../helpers/agents.js';

const cleanup: Array<() => Promise<unknown>> = [];
after(async () => {
  for (const c of cleanup.reverse()) await c().catch(() => undefined);
});

function skipReason(): string | false {
  if (process.platform !== 'linux') return 'read-only mounts in a private mount namespace need Linux';
  if (process.getuid?.() !== 0) return 'mounting a read-only tmpfs needs root (unshare --mount)';
  if (spawnSync('unshare', ['--mount', '--propagation', 'private', 'true']).status !== 0) return 'unshare --mount is not permitted here (container without CAP_SYS_ADMIN)';
  return false;
}
const skip = skipReason();

/**
 * Runs `tdxfer run --config cfg` in a new mount namespace where `mountPoint` is a read-only tmpfs that holds
 * the folders in `existing` (created while it is still writable). Resolves with the exit code and output.
 */
async function runReadOnly(cfg: string, mountPoint: string, existing: string[]): Promise<{ code: number | null; out: string }> {
  const { cmd, args } = cliCommand();
  const script = 'set -e; m="$1"; shift; mount -t tmpfs tmpfs "$m"; for d in $EXISTING; do mkdir -p "$m/$d"; done; mount -o remount,ro "$m"; exec "$@"';
  const child = spawn('unshare', ['--mount', '--propagation', 'private', '--', 'sh', '-c', script, 'sh', mountPoint, cmd, ...args, 'run', '--config', cfg], {
    env: { ...process.env, EXISTING: existing.join(' ') },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (out += d.toString()));
  // 'close', not 'exit': 'exit' can come before the last output chunks.
  const code = await new Promise<number | null>((resolve) => child.once('close', (c) => resolve(c)));
  return { code, out };
}

async function setup(extra: Record<string, unknown>): Promise<{ cfg: string; ro: string }> {
  const r = await tempDir('tdx-ro-');
  cleanup.push(() => fs.rm(r, { recursive: true, force: true }));
  const ro = path.join(r, 'ro');
  await fs.mkdir(ro);
  const cfg = await writeAgentConfig({ name: 'x', dir: r, port: 0, extra });
  return { cfg, ro };
}

const READ_ONLY = /read-only file system.*remount it read-write/;

test('a missing inbox under a read-only mount: "read-only file system", exit 2', { skip }, async () => {
  const { cfg, ro } = await setup({});
  const inbox = path.join(ro, 'show', 'inbox');
  await patchConfig(cfg, (c) => (c.inboxes = [{ name: 'renders', path: inbox }]));
  const res = await runReadOnly(cfg, ro, []);
  assert.equal(res.code, 2, res.out);
  assert.match(res.out, READ_ONLY);
  assert.match(res.out, /inbox "renders"/);
  assert.doesNotMatch(res.out, /ENOENT/);
});

test('an existing inbox on a read-only mount: "read-only file system", not "fix its permissions", exit 2', { skip }, async () => {
  const { cfg, ro } = await setup({});
  await patchConfig(cfg, (c) => (c.inboxes = [{ name: 'renders', path: path.join(ro, 'inbox') }]));
  const res = await runReadOnly(cfg, ro, ['inbox']);
  assert.equal(res.code, 2, res.out);
  assert.match(res.out, READ_ONLY);
  assert.doesNotMatch(res.out, /fix its permissions/);
});

test('a missing outbox under a read-only mount: "read-only file system", exit 2', { skip }, async () => {
  const { cfg, ro } = await setup({});
  const outbox = path.join(ro, 'show', 'outbox');
  await patchConfig(cfg, (c) => (c.outboxes = [{ path: outbox, to: [{ peer: 'x', inbox: 'renders' }] }]));
  const res = await runReadOnly(cfg, ro, []);
  assert.equal(res.code, 2, res.out);
  assert.match(res.out, READ_ONLY);
  assert.match(res.out, /outbox/);
  assert.doesNotMatch(res.out, /ENOENT/);
});

test('an existing outbox on a read-only mount: "read-only file system", exit 2', { skip }, async () => {
  const { cfg, ro } = await setup({});
  await patchConfig(cfg, (c) => (c.outboxes = [{ path: path.join(ro, 'outbox'), to: [{ peer: 'x', inbox: 'renders' }] }]));
  const res = await runReadOnly(cfg, ro, ['outbox']);
  assert.equal(res.code, 2, res.out);
  assert.match(res.out, READ_ONLY);
  assert.doesNotMatch(res.out, /fix its permissions/);
});

async function patchConfig(file: string, edit: (c: Record<string, unknown>) => void): Promise<void> {
  const c = JSON.parse(await fs.readFile(file, 'utf8')) as Record<string, unknown>;
  edit(c);
  await fs.writeFile(file, JSON.stringify(c, null, 2));
}
