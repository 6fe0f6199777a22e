/**
 * V8 heap sizing of the agent process (issue #12): the agent keeps a modest live heap
 * (~25-40 MB with a 20,000-file backlog) but allocates quickly per file, and V8's defaults
 * size the heap for throughput, not for a small footprint: semi-spaces grow to 16 MB each
 * and the old generation to ~2.2× the live heap before a full collection. Measured on the
 * 20,000-file backlog bench: sender peak RSS 181-236 MB with a live heap of ~38 MB, i.e.
 * ~110 MB of V8 heap, most of it garbage waiting for the next full collection.
 *
 * Two V8 flags, set when the agent starts (v8.setFlagsFromString), bound that:
 * - `--heap-growing-percent=25`: the old generation may grow to 1.25× the heap live after
 *   a full collection (V8 reads it at every limit computation).
 * - `--semi-space-growth-factor=1`: the young generation keeps its initial size (1 MB
 *   semi-spaces) instead of doubling up to 16 MB (read at every growth step).
 * `--max-semi-space-size` cannot be changed once V8 runs; the growth factor can.
 *
 * The first is set only in agents that send (the config has an outbox). A receiver of big
 * files allocates a buffer per TLS record or socket read; with the old generation held at
 * 1.25× live, V8 collected so often that a receiver's CPU per GiB rose from ~1.1 s to
 * 1.4–1.8 s (issue #19: single-destination sends must not get worse). Receivers stay under
 * their memory targets without it; senders (backlogs, fan-out) are where it is needed.
 *
 * In an agent that sends, the young generation's flag comes first (tuneYoungGeneration(),
 * before `tdxfer run` loads the agent's modules): loading them grows the semi-spaces 1 → 8 MB,
 * and set after that (with the config read) the flag only froze them at 8–16 MB: the new space
 * was 16 MB committed in both agents of the backlog bench, on main and before the small-file
 * work alike (2026-12-07). A receiver keeps that late setting: held at 1 MB from the start,
 * its peak in the same bench rose from 116–126 to 132–143 MB (more of its per-file objects and
 * socket buffers outlive a 1 MB young generation and pile up in its old generation, which it
 * lets grow), and with V8's growth up to 16 MB semi-spaces single runs reached 149–157 MB.
 * A flag given on the command line or in NODE_OPTIONS (the same setting, or for the young
 * generation `--max-semi-space-size`/`--min-semi-space-size`) wins: nothing is set then.
 *
 * While a big file streams in (duringBigReceive), the old generation gets a fixed room
 * above the live heap instead (issue #12). Every socket read (64 KiB) or TLS record
 * (16 KiB) arrives in a new ArrayBuffer; V8 counts their bytes as external memory since the
 * last full collection until the young-generation sweeper frees them, and checks that
 * count against the old generation's limit after every scavenge (one per ~32 MB of such
 * buffers). With a 12 MB live heap the limit was ~28 MB, so nearly every scavenge started
 * a full (incremental) collection: 20–33 mark-compacts per GiB received, measured with
 * --trace-gc; with ~48 MB of room, 1–3. Back to the agent's own setting once no big file
 * is being received. Not applied when the operator set --heap-growing-percent.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import v8 from 'node:v8';

/** Files at least this big hold duringBigReceive() while they stream in. */
export const BIG_RECEIVE_BYTES = 64 * 1024 * 1024;
/** Room above the live heap for the external bytes of the buffers in flight between scavenges. */
const BIG_RECEIVE_ROOM = 48 * 1024 * 1024;
/** What --heap-growing-percent is outside big receives (V8's default 0: its own dynamic factor); null: the operator's. */
let normalGrowing: number | null = 0;
let bigReceives = 0;
/** The --heap-growing-percent this module set last (null: none yet). */
let growingSet: number | null = null;

function setGrowing(percent: number): void {
  v8.setFlagsFromString(`--heap-growing-percent=${percent}`);
  growingSet = percent;
}

/** Big receives in progress and the --heap-growing-percent this module set last (tests). */
export function bigReceiveState(): { active: number; growingPercent: number | null } {
  return { active: bigReceives, growingPercent: growingSet };
}

/** Each flag, and the command-line settings that mean the operator chose otherwise. */
export const AGENT_HEAP_FLAGS: ReadonlyArray<{ flag: string; unless: readonly string[]; sendersOnly: boolean }> = [
  { flag: '--heap-growing-percent=25', unless: ['heap-growing-percent'], sendersOnly: true },
  { flag: '--semi-space-growth-factor=1', unless: ['semi-space-growth-factor', 'max-semi-space-size', 'min-semi-space-size'], sendersOnly: false },
];

/** Names of the V8/Node options in `args` (`--max_semi_space_size=4` → `max-semi-space-size`). */
function optionNames(args: readonly string[]): Set<string> {
  const out = new Set<string>();
  for (const a of args) {
    const m = /^--([A-Za-z0-9_-]+)/.exec(a);
    if (m) out.add(m[1]!.replace(/_/g, '-'));
  }
  return out;
}

/**
 * The young generation's flag, set before `tdxfer run` loads the agent's modules (cli/main.ts)
 * in an agent that sends (configHasOutbox). Returns the flags set (none where the operator set one).
 */
export function tuneYoungGeneration(execArgv: readonly string[] = process.execArgv, nodeOptions: string = process.env.NODE_OPTIONS ?? ''): string[] {
  const young = AGENT_HEAP_FLAGS.find((f) => f.flag.startsWith('--semi-space-growth-factor='))!;
  return setUnlessGiven(young, operatorOptions(execArgv, nodeOptions)) ? [young.flag] : [];
}

/** The V8/Node options the operator gave (command line, NODE_OPTIONS). */
function operatorOptions(execArgv: readonly string[], nodeOptions: string): Set<string> {
  return optionNames([...execArgv, ...nodeOptions.split(/\s+/)]);
}

/** Sets `f.flag` unless the operator gave one of the options it yields to; true when set. */
function setUnlessGiven(f: { flag: string; unless: readonly string[] }, given: ReadonlySet<string>): boolean {
  if (f.unless.some((n) => given.has(n))) return false;
  v8.setFlagsFromString(f.flag);
  return true;
}

/**
 * Whether the config `tdxfer run` will read (`--config`, else $TDXFER_CONFIG; none: the built-in
 * defaults, no outbox) has an outbox, judged before the agent's modules load: the file's JSON,
 * unvalidated. null when it cannot tell (unreadable, not JSON): the agent's own check decides then.
 */
export function configHasOutbox(cliValue: string | undefined, env: NodeJS.ProcessEnv = process.env): boolean | null {
  const v = cliValue !== undefined && cliValue !== '' ? cliValue : env.TDXFER_CONFIG;
  if (v === undefined || v.trim() === '') return false;
  try {
    const text = readFileSync(path.resolve(v), 'utf8');
    const data = JSON.parse(text.charCodeAt(0) === 0xfeff ? text.slice(1) : text) as { outboxes?: unknown } | null;
    return Array.isArray(data?.outboxes) && data.outboxes.length > 0;
  } catch {
    return null;
  }
}

/** Sets the flags the operator did not set (the old-generation one only when `sends`); returns the ones set. */
export function tuneAgentHeap(sends: boolean, execArgv: readonly string[] = process.execArgv, nodeOptions: string = process.env.NODE_OPTIONS ?? ''): string[] {
  const given = operatorOptions(execArgv, nodeOptions);
  const set: string[] = [];
  for (const f of AGENT_HEAP_FLAGS) {
    if (f.sendersOnly && !sends) continue;
    if (setUnlessGiven(f, given)) set.push(f.flag);
  }
  if (given.has('heap-growing-percent')) normalGrowing = null;
  else normalGrowing = set.includes('--heap-growing-percent=25') ? 25 : 0;
  if (normalGrowing === 25) growingSet = 25;
  return set;
}

/**
 * Call when a big file starts streaming in; call the returned function (once) when it is
 * finished. While any is in progress the old generation may grow BIG_RECEIVE_ROOM (at
 * most 5×, at least 1.5× the live heap) before the next full collection (see the file comment).
 */
export function duringBigReceive(): () => void {
  if (normalGrowing === null) return () => undefined;
  if (bigReceives++ === 0) {
    const live = Math.max(1, v8.getHeapStatistics().used_heap_size);
    const percent = Math.min(400, Math.max(50, Math.ceil((BIG_RECEIVE_ROOM / live) * 100)));
    setGrowing(percent);
  }
  let done = false;
  return () => {
    if (done) return;
    done = true;
    if (--bigReceives === 0 && normalGrowing !== null) setGrowing(normalGrowing);
  };
}
