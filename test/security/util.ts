/**
 * Shared setup for the attack tests (issue #10): real agents started as child processes of
 * the built CLI (`tdxfer run`), real sockets on loopback, real files in temp folders.
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import { spawnCli, tempDir, waitUntil, writeAgentConfig, type Spawned } from '../helpers/agents.js';
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
  // Port 0 for both: the ports it got are read from its log.
  const extra = { status: { enabled: true, host: '127.0.0.1', port: 0 }, ...o.extra };
  const cfg = await writeAgentConfig({ name: o.name, dir, port: 0, extra });
  const proc = spawnCli(['run', '--config', cfg], {}, o.as ?? null);
  let port = 0;
  let statusPort = 0;
  let base = '';
  try {
    port = await proc.transferPort(60_000);
    statusPort = await proc.statusPort(60_000);
    base = `http://127.0.0.1:${statusPort}`;
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
