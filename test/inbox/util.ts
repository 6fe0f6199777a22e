/** Shared fixtures for the inbox tests: a fresh temp tree per test, removed afterwards. */
import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { CollisionPolicy, InboxConfig } from '../../src/config/types.js';
import { memoryLogger } from '../../src/log.js';
import { Inbox, type InboxOptions } from '../../src/inbox/inbox.js';

export interface Fixture {
  root: string;
  inboxDir: string;
  stagingDir: string;
  stateDir: string;
  log: ReturnType<typeof memoryLogger>;
  cfg: InboxConfig;
  open(over?: Partial<InboxOptions>): Promise<Inbox>;
  cleanup(): Promise<void>;
}

export async function fixture(onCollision: CollisionPolicy = 'overwrite', cfgOver: Partial<InboxConfig> = {}): Promise<Fixture> {
  const root = await fs.mkdtemp(path.join(os.tmpdir(), 'tdxfer-inbox-'));
  const inboxDir = path.join(root, 'in');
  const stagingDir = path.join(root, '.in.tdxfer-staging');
  const stateDir = path.join(root, 'state');
  const log = memoryLogger();
  const cfg: InboxConfig = { name: 'main', path: inboxDir, onCollision, staging: stagingDir, ...cfgOver };
  const opened: Inbox[] = [];
  return {
    root,
    inboxDir,
    stagingDir,
    stateDir,
    log,
    cfg,
    async open(over = {}) {
      const ib = await Inbox.open(cfg, { log, stateDir, maxFileBytes: 1 << 30, reserveBytes: 0, resumeMinBytes: 0, ...over });
      opened.push(ib);
      return ib;
    },
    async cleanup() {
      for (const ib of opened) await ib.close();
      await fs.rm(root, { recursive: true, force: true });
    },
  };
}

export const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');
export const bytes = (n: number): Buffer => randomBytes(n);

/** Every file below `dir` (relative, '/'-separated), hidden ones included. */
export async function listFiles(dir: string): Promise<string[]> {
  const out: string[] = [];
  const walk = async (d: string, pre: string): Promise<void> => {
    let entries;
    try {
      entries = await fs.readdir(d, { withFileTypes: true });
    } catch {
      return;
    }
    for (const e of entries) {
      const rel = pre ? `${pre}/${e.name}` : e.name;
      if (e.isDirectory()) await walk(path.join(d, e.name), rel);
      else out.push(rel);
    }
  };
  await walk(dir, '');
  return out.sort();
}

/** Begin a v1 transfer and write `data` in chunks; returns the open file. */
export async function send(ib: Inbox, rel: string, data: Buffer, opts: { source?: string; mtimeMs?: number; chunk?: number; upTo?: number } = {}) {
  const r = await ib.begin({ source: opts.source ?? 'agent1', path: rel, size: data.length, mtimeMs: opts.mtimeMs ?? 1000, resume: true });
  if (r.kind !== 'write') throw new Error(`expected write, got ${JSON.stringify(r)}`);
  const f = r.file;
  const end = opts.upTo ?? data.length;
  const step = opts.chunk ?? 64 * 1024;
  for (let o = f.offset; o < end; o += step) await f.write(data.subarray(o, Math.min(end, o + step)));
  return f;
}
