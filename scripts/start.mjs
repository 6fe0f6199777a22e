#!/usr/bin/env node
// `npm start`: build only when a source is newer than the build, then run the agent
// (`tdxfer run`, extra arguments passed on) as a direct child of this node process — no
// `sh -c` in between — forwarding SIGINT/SIGTERM (and SIGBREAK, SIGHUP) to it and exiting
// with its exit code. Plain JavaScript: it must run before anything is compiled.
/* global process */
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { createRequire } from 'node:module';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const entry = path.join(root, 'dist', 'src', 'cli', 'main.js');

/** Newest modification time (ms) of the .ts files under `dir`, recursively. */
function newestSource(dir) {
  let newest = 0;
  let entries;
  try {
    entries = fs.readdirSync(dir, { withFileTypes: true });
  } catch {
    return 0;
  }
  for (const e of entries) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) newest = Math.max(newest, newestSource(p));
    else if (e.name.endsWith('.ts') || e.name.endsWith('.json')) newest = Math.max(newest, fs.statSync(p).mtimeMs);
  }
  return newest;
}

function buildIsCurrent() {
  let built;
  try {
    built = fs.statSync(entry).mtimeMs;
  } catch {
    return false;
  }
  const inputs = [newestSource(path.join(root, 'src'))];
  for (const f of ['tsconfig.json', 'package.json']) {
    try {
      inputs.push(fs.statSync(path.join(root, f)).mtimeMs);
    } catch {
      /* absent: nothing to compare */
    }
  }
  return Math.max(...inputs) <= built;
}

if (!buildIsCurrent()) {
  process.stderr.write('tdxfer: building (sources are newer than dist/) ...\n');
  const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');
  const r = spawnSync(process.execPath, [tsc, '-p', path.join(root, 'tsconfig.json')], { stdio: 'inherit', cwd: root });
  if (r.status !== 0) {
    process.stderr.write('tdxfer: the build failed (see above); run `npm ci` if dependencies are missing.\n');
    process.exit(r.status ?? 1);
  }
}

// POSIX: the agent gets its own process group, so a terminal's Ctrl-C (sent to the whole
// foreground group, and forwarded again by npm) reaches it once, through us. A second
// signal more than a second later is passed on too (the agent's "again: exit now").
const detached = process.platform !== 'win32';
const child = spawn(process.execPath, [entry, 'run', ...process.argv.slice(2)], { stdio: 'inherit', detached });
const signals = process.platform === 'win32' ? ['SIGINT', 'SIGTERM', 'SIGBREAK'] : ['SIGINT', 'SIGTERM', 'SIGHUP'];
let lastForward = 0;
for (const sig of signals) {
  process.on(sig, () => {
    const now = Date.now();
    if (now - lastForward < 1000) return;
    lastForward = now;
    try {
      child.kill(sig);
    } catch {
      /* already gone */
    }
  });
}
child.on('error', (err) => {
  process.stderr.write(`tdxfer: cannot start the agent: ${err.message}\n`);
  process.exit(1);
});
child.on('exit', (code, signal) => {
  if (signal) {
    for (const sig of signals) process.removeAllListeners(sig);
    process.kill(process.pid, signal);
    return;
  }
  process.exit(code ?? 1);
});
