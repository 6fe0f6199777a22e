/**
 * Shared pieces of the fault tests (issue #5): a sender/receiver pair in a fresh temp
 * folder (optionally through a FaultProxy), an inbox watcher that records every moment
 * a non-final name or a half-written file is visible, and the end-state checks every
 * fault test ends with.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { FaultProxy, type ConnPlan } from '../helpers/proxy.js';
import { hashTree, listFiles, tempDir, writeAgentPair, TEST_KEY, type AgentPair } from '../helpers/agents.js';

export type Cleanup = Array<() => Promise<unknown>>;

export async function runCleanup(cleanup: Cleanup): Promise<void> {
  for (const c of cleanup.splice(0).reverse()) await c().catch(() => undefined);
}

export interface PairOptions {
  encrypt?: boolean;
  /** Put a FaultProxy between sender and receiver with this plan. */
  proxy?: (index: number) => ConnPlan;
  after?: 'archive' | 'delete' | 'keep';
  settleMs?: number;
  onCollision?: 'overwrite' | 'rename' | 'skip';
  /** More fields of the receiver's inbox (e.g. heldMaxSeconds). */
  inboxExtra?: Record<string, unknown>;
  /** Absolute inbox path (e.g. on a tmpfs); default `<root>/b/inbox`. */
  inboxPath?: string;
  senderExtra?: Record<string, unknown>;
  receiverExtra?: Record<string, unknown>;
}

/** helpers/agents.ts writeAgentPair's pair (aCfg, bCfg, receiverListening, outbox, inbox) with the fault tests' extras. */
export interface Pair extends AgentPair {
  /** The outbox's sent/ (after: archive). */
  sent: string;
  /** Default staging folder of the inbox (sibling `.<name>.tdxfer-staging`). */
  staging: string;
  src: string;
  proxy: FaultProxy | null;
}

export async function makePair(cleanup: Cleanup, o: PairOptions = {}): Promise<Pair> {
  const root = await tempDir('tdx-fault-');
  cleanup.push(() => fs.rm(root, { recursive: true, force: true }));
  let proxy: FaultProxy | null = null;
  if (o.proxy) {
    // Its target is set by receiverListening.
    proxy = await FaultProxy.start({ port: 0 }, o.proxy);
    const px = proxy;
    cleanup.push(() => px.close());
  }
  const security = { key: TEST_KEY, encrypt: o.encrypt ?? true };
  const inbox = o.inboxPath ?? path.join(root, 'b', 'inbox');
  const px = proxy;
  const p = await writeAgentPair(root, {
    after: o.after ?? 'archive',
    settleMs: o.settleMs ?? 200,
    receiverExtra: { security, inboxes: [{ name: 'renders', path: inbox, onCollision: o.onCollision ?? 'rename', ...o.inboxExtra }], ...o.receiverExtra },
    senderExtra: { security, ...o.senderExtra },
    ...(px
      ? {
          via: (pb: number) => {
            px.setTargetPort(pb);
            return px.port;
          },
        }
      : {}),
  });
  return {
    ...p, inbox, sent: path.join(p.outbox, 'sent'),
    staging: path.join(path.dirname(inbox), `.${path.basename(inbox)}.tdxfer-staging`),
    src: path.join(root, 'src'), proxy,
  };
}

/** Moves every top-level entry of `src` into the outbox at once (a render finishing). */
export async function dropIntoOutbox(src: string, outbox: string): Promise<void> {
  for (const top of await fs.readdir(src)) await fs.rename(path.join(src, top), path.join(outbox, top));
}

/**
 * Polls the inbox until stopped: every visible name must be one we sent, at its full
 * size. Returns the violations seen (empty = nothing partial or foreign ever visible).
 * A name is stat'ed until it has been seen whole once: a file lands by a rename, so a
 * partial one shows at its first sightings, and the final hash (assertDelivered) checks
 * every byte; not stat'ing hundreds of whole files every 5 ms keeps this loop cheap under
 * wine, where each stat is several times slower.
 */
export function watchInbox(inbox: string, sizes: Map<string, number>): { stop: () => Promise<string[]>; polls: () => number } {
  const violations: string[] = [];
  const whole = new Set<string>();
  let on = true;
  let polls = 0;
  const loop = (async () => {
    while (on) {
      for (const rel of await listFiles(inbox)) {
        const want = sizes.get(rel);
        if (want === undefined) violations.push(`unexpected name in the inbox: ${rel}`);
        else if (!whole.has(rel)) {
          const st = await fs.stat(path.join(inbox, rel)).catch(() => null);
          if (st && st.size !== want) violations.push(`${rel} visible with ${st.size} of ${want} bytes`);
          else if (st) whole.add(rel);
        }
      }
      polls++;
      await new Promise((r) => setTimeout(r, 5));
    }
  })();
  return {
    polls: () => polls,
    stop: async () => {
      on = false;
      await loop;
      return [...new Set(violations)];
    },
  };
}

/** The end state after any fault: same set, same bytes, nothing partial, nothing left unconfirmed. */
export async function assertDelivered(p: Pair, expected: Map<string, string>, o: { archived?: boolean } = {}): Promise<void> {
  assert.deepEqual(await hashTree(p.inbox), expected, 'inbox = exactly the files sent, byte-identical (no "(1)" duplicates)');
  assert.deepEqual(await listFiles(p.staging), [], `nothing left in the staging folder ${p.staging}`);
  if (o.archived ?? true) {
    const out = await listFiles(p.outbox);
    assert.deepEqual(out.filter((r) => !r.startsWith('sent/')), [], 'every confirmed file left the outbox');
    assert.deepEqual(await hashTree(p.sent), expected, 'sent/ holds exactly the confirmed files');
  }
}

/** Seeded PRNG (mulberry32): the seed is printed so a failing run can be replayed with TDX_SEED. */
export function seededRandom(label: string): { seed: number; next: () => number; int: (lo: number, hi: number) => number } {
  const seed = process.env.TDX_SEED ? Number(process.env.TDX_SEED) : randomBytes(4).readUInt32LE(0);
  process.stdout.write(`# ${label}: seed ${seed} (replay with TDX_SEED=${seed})\n`);
  let a = seed >>> 0;
  const next = (): number => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  return { seed, next, int: (lo, hi) => lo + Math.floor(next() * (hi - lo + 1)) };
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Data files (not meta) in a staging folder. */
export async function stagingData(staging: string): Promise<string[]> {
  return (await listFiles(staging)).filter((f) => !f.endsWith('.json') && !f.includes('.json.tmp-'));
}
