/**
 * Shared setup for the attack tests (issue #10): real agents started as child processes of
 * the built CLI (`tdxfer run`), real sockets on loopback, real files in temp folders.
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import { freePort, spawnCli, tempDir, waitUntil, writeAgentConfig, type Spawned } from '../helpers/agents.js';
import { httpRequest } from '../helpers/http.js';

export interface RunningAgent {
  dir: string;
  port: number;
  statusPort: number;
  base: string;
  proc: Spawned;
  stop(): Promise<void>;
}

/** `tdxfer run` for an agent in `dir` with the status API on; waits until /health answers. */
export async function runAgent(o: { name: string; dir?: string; extra?: Record<string, unknown>; as?: { uid: number; gid: number } }): Promise<RunningAgent> {
  const dir = o.dir ?? (await tempDir(`tdx-sec-${o.name}-`));
  const port = await freePort();
  const statusPort = await freePort();
  const extra = { status: { enabled: true, host: '127.0.0.1', port: statusPort }, ...o.extra };
  const cfg = await writeAgentConfig({ name: o.name, dir, port, extra });
  const proc = spawnCli(['run', '--config', cfg], {}, o.as ?? null);
  const base = `http://127.0.0.1:${statusPort}`;
  try {
    await waitUntil(async () => {
      if (proc.child.exitCode !== null) throw new Error(`agent ${o.name} exited:\n${proc.output()}`);
      try {
        await httpRequest(`${base}/health`, o.extra?.status ? { headers: { Authorization: `Bearer ${(o.extra.status as { token?: string }).token ?? ''}` } } : {});
        return true;
      } catch {
        return false;
      }
    }, 60_000, () => `agent ${o.name} status API at ${base}:\n${proc.output()}`);
  } catch (err) {
    await proc.stop('SIGKILL');
    throw err;
  }
  return {
    dir, port, statusPort, base, proc,
    stop: async () => {
      await proc.stop();
      if (!o.dir) await fs.rm(dir, { recursive: true, force: true });
    },
  };
}

export type JobRow = Record<string, unknown> & { id: string; state: string; file: string };

export async function statusJson(a: RunningAgent, token?: string): Promise<{ active: JobRow[]; recent: JobRow[]; [k: string]: unknown }> {
  return (await httpRequest(`${a.base}/status`, token ? { headers: { Authorization: `Bearer ${token}` } } : {})).json();
}

/** Every job the agent knows (active and recent). */
export async function allJobs(a: RunningAgent, token?: string): Promise<JobRow[]> {
  const s = await statusJson(a, token);
  return [...s.active, ...s.recent];
}

export function p(...parts: string[]): string {
  return path.join(...parts);
}
