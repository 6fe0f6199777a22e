/**
 * Shared bits for the legacy TOX tests: locating and running the Python test peers.
 * Tests run from test/ (tsx) and from dist/test/ (npm test), so the peers are found by
 * walking up to the folder that holds test/python.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import readline from 'node:readline';

function findPythonDir(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const candidate = path.join(dir, 'test', 'python');
    if (fs.existsSync(path.join(candidate, 'tox_sender.py'))) return candidate;
    const up = path.dirname(dir);
    if (up === dir) throw new Error('test/python/tox_sender.py not found above ' + fileURLToPath(import.meta.url));
    dir = up;
  }
}

export const PYTHON_DIR = findPythonDir();
export const PYTHON = 'python3';

/** Runs a Python snippet with `input` on stdin; returns stdout bytes. Throws with stderr on failure. */
export function python(code: string, input: Buffer = Buffer.alloc(0)): Buffer {
  const r = spawnSync(PYTHON, ['-c', code], { input, maxBuffer: 512 * 1024 * 1024 });
  if (r.error) throw r.error;
  if (r.status !== 0) throw new Error(`python3 failed (${r.status}): ${r.stderr.toString()}`);
  return r.stdout;
}

export interface PyRun {
  code: number | null;
  lines: string[];
  stderr: string;
}

/** Runs a Python peer script to completion. */
/** `timeoutMs` only detects a hang: the Python sender needed > 60 s for 50 MB on a loaded machine. */
export function runPeer(script: string, args: string[], timeoutMs = 300_000): Promise<PyRun> {
  return new Promise((resolve, reject) => {
    const child = spawn(PYTHON, [path.join(PYTHON_DIR, script), ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, lines: out.split('\n').filter((l) => l !== ''), stderr: err });
    });
  });
}

export interface PyReceiver {
  port: number;
  /** Lines printed after LISTENING. */
  lines: string[];
  /** Resolves once `n` lines were printed. */
  waitLines(n: number, timeoutMs?: number): Promise<string[]>;
  stop(): Promise<void>;
}

/** Starts tox_receiver.py writing into `dir`, on 127.0.0.1 with a free port. */
export function startPyReceiver(dir: string): Promise<PyReceiver> {
  return new Promise((resolve, reject) => {
    const child: ChildProcess = spawn(PYTHON, [path.join(PYTHON_DIR, 'tox_receiver.py'), '--host', '127.0.0.1', '--port', '0', '--dir', dir], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    const lines: string[] = [];
    const waiters: Array<() => void> = [];
    const exited = new Promise<void>((r) => child.once('exit', () => r()));
    child.once('exit', (code) => reject(new Error(`tox_receiver.py exited early (${code}): ${stderr}`)));
    child.once('error', reject);
    const rl = readline.createInterface({ input: child.stdout! });
    rl.on('line', (line) => {
      const m = /^LISTENING (\d+)$/.exec(line);
      if (m) {
        resolve({
          port: Number(m[1]),
          lines,
          waitLines(n, timeoutMs = 30_000) {
            return new Promise((res, rej) => {
              const t = setTimeout(() => rej(new Error(`tox_receiver.py printed ${lines.length} of ${n} lines: ${lines.join(' | ')} ${stderr}`)), timeoutMs);
              const check = (): void => {
                if (lines.length >= n) {
                  clearTimeout(t);
                  res(lines.slice());
                } else waiters.push(check);
              };
              check();
            });
          },
          async stop() {
            if (child.exitCode === null && child.signalCode === null) {
              child.kill('SIGTERM');
              await exited;
            }
          },
        });
        return;
      }
      lines.push(line);
      for (const w of waiters.splice(0)) w();
    });
  });
}
