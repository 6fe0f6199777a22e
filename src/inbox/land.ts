/**
 * Moving finished, verified files from staging into the inbox.
 *
 * Invariants:
 * - Confinement on real paths (land-path.ts): every folder on the way is resolved with
 *   realpath and must lie inside the inbox's real path BEFORE anything is created in it,
 *   so a symlink (or junction) planted inside the inbox cannot make us write outside.
 * - One name per file, case-insensitively: TouchDesigner mostly runs on NTFS/APFS,
 *   where `A.png` and `a.png` are the same file. Folders differing only in case are
 *   reused (`Shot1/` for `shot1/`), and an overwrite never leaves two case variants.
 * - A file appears by one rename (retried on transient Windows locks); it counts as
 *   landed only after the folder holding it (and any folder created for it) is fsynced.
 * - The dedupe record of a file is written before its rename (see Journal).
 *
 * Group commit: the Lander lands every file that became ready while the previous batch
 * was on disk as one batch: one journal append, one fsync per folder. Files finishing
 * together (an image sequence) cost about one folder fsync between them instead of one each.
 * Names are looked up in a DirIndex (dirindex.ts): a folder is listed once, not per file
 * or per batch, and only the names being landed are checked on disk, so landing costs the
 * same in an empty folder and in one of 100,000 files.
 * Batches run one at a time per inbox, so lookups and renames never interleave.
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import type { CollisionPolicy } from '../config/types.js';
import type { Logger } from '../log.js';
import type { Clock } from '../clock.js';
import { renameCandidate } from '../names.js';
import { InboxError } from './errors.js';
import type { QuickFs } from '../quickfs.js';
import { errCode, fsyncDir, renameWithRetry, retryTransient } from '../fsutil.js';
import type { Journal, LandedRecord } from './journal.js';
import { HeldTargets, heldTooLong } from './held.js';
import { applyPlan, planLanding, type Listing, type LandPlan } from './land-plan.js';
import { ConfinedFolder, newLandIndex, resolveParent, type LandIndex, type Parent } from './land-path.js';
import { below, childPath } from '../paths.js';

export { Listing, applyPlan, planLanding, type LandPlan } from './land-plan.js';
export { ConfinedFolder, checkConfined, findExisting, newLandIndex, resolveParent, type LandIndex } from './land-path.js';

/** The inbox a lander works in. */
export interface LandTarget {
  inboxName: string;
  /** Inbox path as configured (absolute) and its real path. */
  inboxPath: string;
  inboxReal: string;
  policy: CollisionPolicy;
  log: Logger;
  /** Dedupe journal: each file's record is appended before its rename. */
  journal?: Journal;
  /** Names of the inbox's folders (shared with Inbox.begin's collision lookup); a fresh one if absent. */
  index?: LandIndex;
  /** Seconds a held target may block its new version before it lands as `name (1).ext` (0 = forever; default 600). */
  heldMaxSeconds?: number;
  /** Registry of held targets (shown in the status); a fresh one if absent. */
  held?: HeldTargets;
  /** The clock of held targets' bounded wait, ms since the epoch (src/clock.ts; default Date.now; tests drive it). */
  now?: Clock['now'];
  /** Renames out of staging as QuickFs calls (quickfs.ts): synchronous while the volume is local and fast. */
  quick?: QuickFs;
}

export const DEFAULT_HELD_MAX_SECONDS = 600;

export interface LandItem {
  /** Sanitised components of the requested rel. */
  parts: string[];
  /** Finished file in staging. */
  from: string;
  /** The dedupe record for the final rel (written before the rename), or null for none. */
  record?: (landedRel: string) => LandedRecord | null;
  /**
   * Asked before the journal record and again right before the rename: false refuses the
   * file (InboxError CLOSED, retryable), which stays staged. The receiver answers false
   * once it could no longer send the ACK (a stop), so nothing lands unacknowledged.
   */
  mayLand?: () => boolean;
}

export type LandOutcome =
  | { status: 'landed'; rel: string; abs: string; renamedFrom: string | null }
  | { status: 'skipped'; rel: string; abs: string };

function describeErr(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

interface Waiting {
  item: LandItem;
  resolve: (o: LandOutcome) => void;
  reject: (e: unknown) => void;
}

interface Planned {
  w: Waiting;
  parent: Parent;
  plan: Exclude<LandPlan, { kind: 'skip' }>;
  rel: string;
  requested: string;
}

/** Lands files into one inbox in batches (see the file comment). */
export class Lander {
  #queue: Waiting[] = [];
  #running = false;
  readonly #index: LandIndex;
  readonly #now: () => number;
  readonly #confined: ConfinedFolder;
  readonly #renameOpts: { rename?: (from: string, to: string) => Promise<void> };
  /** Targets held open by another program (once-per-episode log line, status, bounded wait). */
  readonly held: HeldTargets;

  /**
   * The file to replace is open in another program without delete sharing (Windows:
   * TouchDesigner's Movie File In TOP playing it, a player, an antivirus scan): the rename
   * over it fails with EPERM/EBUSY/EACCES even after retrying. Nothing is lost or
   * half-replaced: the old file stays as it is, the verified new version stays in staging,
   * and the sender gets a retryable BUSY, so it offers the file again after its backoff;
   * the offer resumes at the end of the staged bytes (nothing is re-sent) and landing is
   * tried again. The sender keeps the file in its outbox until it has landed (ACK).
   */
  #held(p: Planned, targetAbs: string, err: unknown): unknown {
    const code = errCode(err);
    if (code !== 'EPERM' && code !== 'EBUSY' && code !== 'EACCES') return err;
    const t = this.target;
    if (this.held.hold({ inbox: t.inboxName, rel: p.rel, path: targetAbs, code: code ?? '' }, this.#now()).isNew) {
      t.log.warn(
        `Inbox "${t.inboxName}": cannot replace ${targetAbs}: another program holds it open (${code}; on a playback machine usually a Movie File In TOP playing it). The new version is verified and kept staged; it replaces the file as soon as that program lets go.`,
        { rel: p.rel, code },
      );
    }
    return new InboxError('BUSY', `Inbox "${t.inboxName}": ${JSON.stringify(p.rel)} is held open by another program on the receiver (${code}); the new version is kept staged and lands when it is released`, { cause: err });
  }

  constructor(private readonly target: LandTarget) {
    this.#index = target.index ?? newLandIndex();
    this.held = target.held ?? new HeldTargets();
    this.#now = target.now ?? Date.now;
    this.#confined = new ConfinedFolder(target.inboxName, 'inbox folder', [target.inboxPath, target.inboxReal], target.inboxReal, target.quick);
    const quick = target.quick;
    this.#renameOpts = quick ? { rename: (from, to) => quick.rename(from, to) } : {};
  }

  /** Resolves once the file is visible under its final name and durable (or was skipped). */
  land(item: LandItem): Promise<LandOutcome> {
    return new Promise<LandOutcome>((resolve, reject) => {
      this.#queue.push({ item, resolve, reject });
      if (!this.#running) void this.#drain();
    });
  }

  async #drain(): Promise<void> {
    this.#running = true;
    try {
      while (this.#queue.length > 0) {
        const batch = this.#queue;
        this.#queue = [];
        await this.#landBatch(batch).catch((err: unknown) => {
          for (const w of batch) w.reject(err);
        });
      }
    } finally {
      this.#running = false;
    }
  }

  async #landBatch(batch: Waiting[]): Promise<void> {
    const t = this.target;
    const index = this.#index;
    try {
      // The inbox swapped for a symlink (or junction) while we run must not make us write
      // outside it (issue #10 item 7): its real path is checked again before every batch.
      await this.#confined.check();
    } catch (err) {
      t.log.error(describeErr(err));
      for (const w of batch) w.reject(err);
      return;
    }
    const parents = new Map<string, Promise<Parent>>();
    // First every name is looked up (checked on disk), then all are planned: a lookup
    // never sees a name planned earlier in the batch but not renamed yet. The names of one
    // folder are looked up together (one stat of the folder for the batch, not one per file).
    const groups = new Map<string, { parent: Parent; files: Array<{ w: Waiting; name: string }> }>();
    for (const w of batch) {
      try {
        const parts = w.item.parts;
        const key = parts.slice(0, -1).join('/');
        let p = parents.get(key);
        if (!p) {
          p = resolveParent({ inboxName: t.inboxName, inboxReal: t.inboxReal, parts, index, quick: t.quick }, true).then((r) => r!);
          parents.set(key, p);
        }
        const parent = await p;
        let g = groups.get(key);
        if (!g) {
          g = { parent, files: [] };
          groups.set(key, g);
        }
        g.files.push({ w, name: parts[parts.length - 1]! });
      } catch (err) {
        w.reject(err);
      }
    }
    const looked: Array<{ w: Waiting; parent: Parent; entries: Listing; name: string }> = [];
    for (const { parent, files } of groups.values()) {
      try {
        const entries = await index.lookup(parent.real, files.map((f) => f.name));
        for (const { w, name } of files) looked.push({ w, parent, name, entries });
      } catch (err) {
        for (const { w } of files) w.reject(err);
      }
    }
    const planned: Planned[] = [];
    for (const { w, parent, entries, name } of looked) {
      try {
        const parts = w.item.parts;
        const atRoot = parent.names.length === 0;
        let plan = planLanding(entries, name, t.policy, atRoot);
        // A rename candidate is free in the index; make sure it is on disk too.
        while (plan.kind === 'new' && plan.name !== name && (await index.taken(parent.real, plan.name))) {
          plan = planLanding(entries, name, t.policy, atRoot);
        }
        if (plan.kind === 'skip') {
          const rel = [...parent.names, plan.existing].join('/');
          w.resolve({ status: 'skipped', rel, abs: path.join(t.inboxPath, ...parent.names, plan.existing) });
          continue;
        }
        if (plan.kind === 'overwrite') {
          const st = await fs.lstat(childPath(parent.real, plan.target));
          if (st.isDirectory()) {
            throw new InboxError(
              'BAD_NAME',
              `Inbox "${t.inboxName}": ${JSON.stringify([...parent.names, plan.target].join('/'))} is a folder, so the incoming file cannot replace it; rename the folder or the file`,
            );
          }
        }
        applyPlan(entries, plan);
        planned.push({ w, parent, plan, rel: [...parent.names, plan.name].join('/'), requested: parts.join('/') });
      } catch (err) {
        w.reject(err);
      }
    }
    const refuse = (p: Planned): void => {
      index.forget(p.parent.real); // applyPlan counted a rename that does not happen
      p.w.reject(new InboxError('CLOSED', `Inbox "${t.inboxName}": stopping; ${JSON.stringify(p.requested)} stays staged and is received again later`));
    };
    planned.splice(0, planned.length, ...planned.filter((p) => (p.w.item.mayLand?.() === false ? (refuse(p), false) : true)));
    if (planned.length === 0) return;
    const touched = new Set(planned.map((p) => p.parent.real));
    for (const d of touched) index.changing(d);
    try {
      await this.#carryOut(planned, refuse);
    } finally {
      // Our own renames are now known to the index; done after the ACKs are on their way.
      for (const d of touched) await index.settled(d);
    }
  }

  /** Journal, renames, folder fsyncs, outcomes: the I/O of a planned batch. */
  async #carryOut(planned: Planned[], refuse: (p: Planned) => void): Promise<void> {
    const t = this.target;
    const index = this.#index;
    // Journal first, renames second: a crash in between leaves records whose file is
    // missing or has other bytes, which Inbox.begin does not count as landed.
    const records = planned.map((p) => p.w.item.record?.(p.rel) ?? null).filter((r): r is LandedRecord => r !== null);
    if (records.length > 0 && t.journal) await t.journal.recordMany(records);

    const landed: Planned[] = [];
    for (const p of planned) {
      if (p.w.item.mayLand?.() === false) {
        refuse(p);
        continue;
      }
      try {
        await this.#rename(p);
        landed.push(p);
      } catch (err) {
        // The index assumed the rename (applyPlan): list that folder again next time.
        index.forget(p.parent.real);
        p.w.reject(err);
      }
    }

    // Durable only once the folder holding each file is flushed, and the folders holding
    // any folder created on the way.
    const dirs = new Map<string, Planned[]>();
    for (const p of landed) {
      for (const d of [p.parent.real, ...p.parent.created]) {
        const list = dirs.get(d) ?? [];
        list.push(p);
        dirs.set(d, list);
      }
    }
    const failed = new Map<Planned, unknown>();
    await Promise.all(
      [...dirs].map(([d, ps]) =>
        fsyncDir(d).catch((err: unknown) => {
          for (const p of ps) failed.set(p, err);
        }),
      ),
    );
    for (const p of landed) {
      if (failed.has(p)) {
        p.w.reject(failed.get(p));
        continue;
      }
      p.w.resolve({
        status: 'landed',
        rel: p.rel,
        abs: below(t.inboxPath, p.rel),
        renamedFrom: p.rel === p.requested ? null : p.requested,
      });
    }
  }

  async #landBeside(p: Planned, targetAbs: string, since: number): Promise<void> {
    await landBesideHeld({ target: this.target, p, targetAbs, heldMs: this.#now() - since });
    this.held.release(targetAbs, this.#now());
    this.#index.forget(p.parent.real);
  }

  async #rename(p: Planned): Promise<void> {
    const { log } = this.target;
    const dir = p.parent.real;
    const plan = p.plan;
    if (plan.kind === 'new') {
      await renameWithRetry(p.w.item.from, childPath(dir, plan.name), log, this.#renameOpts);
      return;
    }
    // overwrite: replace the existing entry atomically (the exact spelling if present).
    const targetAbs = childPath(dir, plan.target);
    const since = this.held.list().find((h) => h.path === targetAbs)?.sinceMs;
    if (since !== undefined && heldTooLong(since, this.#now(), this.target.heldMaxSeconds ?? DEFAULT_HELD_MAX_SECONDS)) {
      await this.#landBeside(p, targetAbs, since);
      return;
    }
    try {
      await renameWithRetry(p.w.item.from, targetAbs, log, this.#renameOpts);
    } catch (err) {
      throw this.#held(p, targetAbs, err);
    }
    if (this.held.release(targetAbs, this.#now())) log.info(`Inbox "${this.target.inboxName}": replaced ${targetAbs}, released by the program that held it`, { rel: p.rel });
    if (plan.target !== plan.name) {
      // Case-only rename: works on case-insensitive volumes too; the file keeps the new content throughout.
      await renameWithRetry(targetAbs, childPath(dir, plan.name), log);
      log.info('replaced a file whose name differed only in case; it now has the incoming spelling', { replaced: plan.target, now: plan.name });
    }
    for (const other of plan.variants) {
      const abs = childPath(dir, other);
      const st = await fs.lstat(abs).catch(() => null);
      if (st && !st.isDirectory()) {
        await retryTransient(() => fs.rm(abs, { force: true }));
        log.info('removed a case variant of the overwritten file (would be the same file on Windows/macOS)', { removed: other, kept: plan.name });
      }
    }
  }
}

/**
 * The bounded wait is over (`heldMaxSeconds`): the verified new version lands beside the
 * held file under the collision-renamed name (`name (1).ext`, the first free one), with
 * its own dedupe record written first, so a re-offer of the same file is still recognised
 * as landed (exactly once: the sender gets its ACK once, for this landing).
 */
async function landBesideHeld(this: void, a: {
  target: LandTarget;
  p: Planned;
  targetAbs: string;
  /** How long the target has been held, ms. */
  heldMs: number;
}): Promise<void> {
  const { target: t, p, targetAbs, heldMs } = a;
  const dir = p.parent.real;
  const name = p.plan.name;
  let n = 1;
  let cand = renameCandidate(name, n);
  while (await fs.lstat(path.join(dir, cand)).then(() => true, () => false)) cand = renameCandidate(name, ++n);
  const rel = [...p.parent.names, cand].join('/');
  const rec = p.w.item.record?.(rel) ?? null;
  if (rec && t.journal) await t.journal.recordMany([rec]);
  await renameWithRetry(p.w.item.from, path.join(dir, cand), t.log);
  p.plan = { kind: 'new', name: cand };
  p.rel = rel;
  t.log.warn(
    `Inbox "${t.inboxName}": ${targetAbs} was held open by another program for ${Math.round(heldMs / 1000)} s (heldMaxSeconds); the new version landed beside it as ${path.join(dir, cand)} instead. The held file is unchanged.`,
    { rel, replaced: false },
  );
}

/** Lands one file on its own (a batch of one). */
export function land(target: LandTarget, item: LandItem): Promise<LandOutcome> {
  return new Lander(target).land(item);
}
