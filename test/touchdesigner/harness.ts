/**
 * A running test/python/td_harness.py (the system's /usr/bin/python3 playing TouchDesigner's
 * frame loop around src/touchdesigner/tdxfer.py): commands in as JSON lines, everything it
 * saw out as JSON lines (see the script's docstring).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { waitUntil } from '../helpers/agents.js';

export const PYTHON = '/usr/bin/python3';

/** The repository root (holding src/touchdesigner/tdxfer.py), from src or from dist. */
export function repoRoot(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (;;) {
    if (existsSync(path.join(dir, 'src', 'touchdesigner', 'tdxfer.py')) && existsSync(path.join(dir, 'test', 'python', 'td_harness.py'))) return dir;
    const up = path.dirname(dir);
    if (up === dir) throw new Error(`src/touchdesigner/tdxfer.py not found above ${fileURLToPath(import.meta.url)}`);
    dir = up;
  }
}

export interface HarnessEvent {
  ev: 'cb' | 'queued' | 'reply';
  handle?: string;
  cb?: string;
  data?: any; // eslint-disable-line @typescript-eslint/no-explicit-any
  mainThread?: boolean;
  inPoll?: boolean;
  op?: string;
  tag?: string;
  id?: string;
  ms?: number;
  error?: string;
  [k: string]: unknown;
}

export class Harness {
  readonly events: HarnessEvent[] = [];
  private readonly child: ChildProcess;
  private stderr = '';
  private seq = 0;
  private exited = false;

  constructor() {
    const root = repoRoot();
    this.child = spawn(PYTHON, ['-u', path.join(root, 'test', 'python', 'td_harness.py'), path.join(root, 'src', 'touchdesigner')], { stdio: ['pipe', 'pipe', 'pipe'] });
    let buf = '';
    this.child.stdout!.setEncoding('utf8').on('data', (d: string) => {
      buf += d;
      let i: number;
      while ((i = buf.indexOf('\n')) !== -1) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + 1);
        if (line.trim()) this.events.push(JSON.parse(line) as HarnessEvent);
      }
    });
    this.child.stderr!.setEncoding('utf8').on('data', (d: string) => (this.stderr += d));
    this.child.once('exit', () => (this.exited = true));
  }

  /** Sends a command and waits for its answer (`queued` for op queue, else `reply`). */
  async call(cmd: Record<string, unknown>, timeoutMs = 30_000): Promise<HarnessEvent> {
    const tag = `t${++this.seq}`;
    this.child.stdin!.write(JSON.stringify({ ...cmd, tag }) + '\n');
    let found: HarnessEvent | undefined;
    await waitUntil(() => (found = this.events.find((e) => e.tag === tag)) !== undefined || this.exited, timeoutMs, () => `harness answer to ${JSON.stringify(cmd)}; stderr:\n${this.stderr.slice(-2000)}`);
    if (!found) throw new Error(`python harness exited; stderr:\n${this.stderr.slice(-3000)}`);
    if (found.error) throw new Error(`harness ${String(cmd.op)} failed: ${found.error}\n${this.stderr.slice(-2000)}`);
    return found;
  }

  callbacks(handle: string, cb?: string): HarnessEvent[] {
    return this.events.filter((e) => e.ev === 'cb' && e.handle === handle && (cb === undefined || e.cb === cb));
  }

  /** Waits for a callback matching `pred` on `handle` and returns it. */
  async waitCallback(handle: string, cb: string, pred: (data: any) => boolean = () => true, timeoutMs = 60_000): Promise<HarnessEvent> { // eslint-disable-line @typescript-eslint/no-explicit-any
    let found: HarnessEvent | undefined;
    await waitUntil(
      () => (found = this.callbacks(handle, cb).find((e) => pred(e.data))) !== undefined,
      timeoutMs,
      () => `${cb} on ${handle}; callbacks so far:\n${this.callbacks(handle).map((e) => `${e.cb} ${JSON.stringify(e.data)}`).join('\n').slice(-3000)}\nstderr:\n${this.stderr.slice(-2000)}`,
    );
    return found!;
  }

  get errors(): string {
    return this.stderr;
  }

  async quit(): Promise<void> {
    if (this.exited) return;
    const gone = new Promise<void>((resolve) => this.child.once('exit', () => resolve()));
    this.child.stdin!.end(JSON.stringify({ op: 'quit' }) + '\n');
    const t = setTimeout(() => this.child.kill('SIGKILL'), 10_000);
    await gone;
    clearTimeout(t);
  }
}
