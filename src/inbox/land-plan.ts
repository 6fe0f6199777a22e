/**
 * PURE: what landing one incoming name does to a folder (collision policy, case variants,
 * "(n)" candidates under `rename`) and the folder's names indexed by collision key.
 * The I/O (confinement, renames, fsync, batches) is land.ts.
 */
import type { CollisionPolicy } from '../config/types.js';
import { collisionKey, renameCandidate } from '../names.js';
import { FALLBACK_DIRNAME } from './staging.js';
import { NameTable } from './nametable.js';

/** What to do with one incoming name, given the folder's current entries. Pure. */
export type LandPlan =
  /** onCollision=skip and `existing` is taken: nothing is renamed. */
  | { kind: 'skip'; existing: string }
  /** Rename into `name`, which is free (also after the rename policy chose a new name). */
  | { kind: 'new'; name: string }
  /**
   * Replace `target` (the exact spelling when present, else a case variant) atomically,
   * then give it the incoming spelling `name`; remove the other case `variants`
   * (possible only on case-sensitive volumes).
   */
  | { kind: 'overwrite'; target: string; name: string; variants: string[] };

/**
 * A folder's entries indexed by collision key, so each file of a batch finds its case
 * variants in O(1) instead of scanning a folder of thousands of entries. The names are
 * held compactly outside the JS heap (nametable.ts): ~25 bytes per name.
 */
export class Listing {
  readonly #table = new NameTable();

  constructor(names: Iterable<string> = []) {
    for (const n of names) this.add(n);
  }

  /** Entries equal to `name` case-insensitively; the exact spelling first. */
  variants(name: string, atRoot: boolean): string[] {
    const found = this.#table.spellings(collisionKey(name)).filter((e) => !(atRoot && e === FALLBACK_DIRNAME));
    return found.sort((a, b) => Number(b === name) - Number(a === name));
  }

  hasKey(key: string): boolean {
    return this.#table.hasKey(key);
  }

  add(name: string): void {
    this.#table.add(name);
  }

  remove(name: string): void {
    this.#table.remove(name);
  }

  names(): string[] {
    return this.#table.names();
  }

  /** Names held and bytes they take (tests, status). */
  size(): { names: number; bytes: number } {
    return { names: this.#table.size, bytes: this.#table.bytes };
  }
}

export function planLanding(entries: readonly string[] | Listing, name: string, policy: CollisionPolicy, atRoot: boolean): LandPlan {
  const listing = entries instanceof Listing ? entries : new Listing(entries);
  const same = listing.variants(name, atRoot);
  if (same.length === 0) return { kind: 'new', name };
  if (policy === 'skip') return { kind: 'skip', existing: same[0]! };
  if (policy === 'rename') {
    let n = 1;
    let cand = renameCandidate(name, n);
    while (listing.hasKey(collisionKey(cand)) || (atRoot && collisionKey(cand) === collisionKey(FALLBACK_DIRNAME))) {
      cand = renameCandidate(name, ++n);
    }
    return { kind: 'new', name: cand };
  }
  return { kind: 'overwrite', target: same[0]!, name, variants: same.slice(1).filter((v) => v !== name) };
}

/** Updates `listing` to the folder's entries after `plan` was carried out (kept in memory for the rest of a batch). */
export function applyPlan(listing: Listing, plan: LandPlan): Listing {
  if (plan.kind === 'skip') return listing;
  if (plan.kind === 'overwrite') for (const gone of [plan.target, ...plan.variants]) listing.remove(gone);
  listing.add(plan.name);
  return listing;
}
