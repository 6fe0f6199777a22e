/**
 * Inbox: the receiving end both protocol receivers (v1 and legacy TOX) write through.
 * Invariants (src/ARCHITECTURE.md): nothing partial is ever visible in the inbox; a file
 * is visible only after its bytes and its folder entry are durable and its SHA-256 matched;
 * no wire path can make us write outside the inbox.
 */
import type { HeldChange, HeldFile } from './held.js';
import { BASELINE_HASH, createFileHash, type HashAlg } from '../hash.js';
import { constants as fsConstants } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import type { InboxConfig } from '../config/types.js';
import type { Logger } from '../log.js';
import { TdxError, describeError } from '../errors.js';
import { collisionKey, sanitizeRelPath } from '../names.js';
import { InboxError } from './errors.js';
import { folderProblem, formatBytes, freeBytes, mkdirp, realpathLong } from '../fsutil.js';
import { IncomingFileImpl, type IncomingFile } from './incoming.js';
import { Journal } from './journal.js';
import { ConfinedFolder, findExisting, Lander, newLandIndex, type LandIndex } from './land.js';
import type { DirOps } from './dirindex.js';
import type { GatherOptions } from './gather-writer.js';
import { chooseStaging, FALLBACK_DIRNAME, Staging } from './staging.js';
import { FreeSpace } from './space.js';
import { WRITE_RESUME, digestOf, hashPrefix, openFresh, openNoFollow, type StagedHandle } from './staged-io.js';
import { QuickFs } from '../quickfs.js';
import { below } from '../paths.js';

export { InboxError } from './errors.js';
export type { InboxErrorCode } from './errors.js';
export type { IncomingFile, Landed } from './incoming.js';

export interface InboxOptions {
  log: Logger;
  /** Folder for this inbox's small state files (dedupe journal); created if missing. */
  stateDir: string;
  maxFileBytes: number;
  /** Partial files (for resume) older than this are deleted on open. Default 24 h. */
  resumeTtlMs?: number;
  /** Extra free space to keep beyond the announced size, bytes. Default 64 MiB. */
  reserveBytes?: number;
  /**
   * Files smaller than this get no resume record: re-sending them costs less than the
   * extra file create, rename and unlink per file, which bound small-file throughput
   * (a crash leaves their partial without a record, deleted on the next open). Default 1 MiB.
   */
  resumeMinBytes?: number;
  /** File-system calls of the inbox's name index (tests count folder listings with it). */
  dirOps?: DirOps;
  /** The QuickFs for the small files' calls; default one of its own (tests pass one to read its counts). */
  quick?: QuickFs;
  /** The streamed writes' periodic datasync (gather-writer.ts; tests inject a failure or a smaller step). */
  gather?: GatherOptions;
}

export interface BeginRequest {
  /** Who sends: v1 agent id (e.g. "a1b2c3d4") or "legacy:<ip>". Part of the partial/dedupe identity. */
  source: string;
  /** Path as received on the wire: '/'-separated, untrusted. Sanitised by names.ts. */
  path: string;
  /** Exact size when known (v1), null when unknown (legacy). */
  size: number | null;
  /** Source mtime (v1) or null. With size and source: identity of the version, for resume and dedupe. */
  mtimeMs: number | null;
  /** false: discard any partial and start at 0. */
  resume: boolean;
  /** The file hash of the connection (v1.1 negotiation); default SHA-256 (legacy, older peers). */
  hash?: HashAlg;
  /** Who sends, as the announcement of the landing names it (peer name, legacy address); default `source`. */
  from?: string;
  /** The protocol it comes by; default 'tdxfer'. */
  via?: 'tdxfer' | 'legacy';
}

/** A landing found unannounced after a restart (Inbox.recoverAnnouncements). */
export interface RecoveredLanding {
  rel: string;
  abs: string;
  size: number;
  /** The verified digest of the landed bytes, in `hashAlg`. */
  hashAlg: HashAlg;
  digest: string;
  from: string;
  via: 'tdxfer' | 'legacy';
  /** When it landed (ms since the epoch). */
  at: number;
  /** Writes its announced mark synchronously, before it returns (call it right before announcing); never rejects. */
  markAnnounced: () => Promise<void>;
}

export type BeginResult =
  | { kind: 'skip'; status: 'skipped' | 'duplicate'; rel: string }
  | { kind: 'write'; file: IncomingFile };

export const DEFAULT_RESUME_TTL_MS = 24 * 3600 * 1000;
export const DEFAULT_RESERVE_BYTES = 64 * 1024 * 1024;
export const DEFAULT_RESUME_MIN_BYTES = 1024 * 1024;
/** Files up to this size are staged with QuickFs calls (small files, issue #12); larger ones through a FileHandle. */
const QUICK_MAX_BYTES = 1024 * 1024;

async function exists(p: string): Promise<boolean> {
  return fs.stat(p).then(
    () => true,
    () => false,
  );
}

export class Inbox {
  readonly name: string;
  readonly path: string;
  readonly stagingDir: string;
  readonly #cfg: InboxConfig;
  readonly #log: Logger;
  readonly #real: string;
  readonly #staging: Staging;
  /** The staging folder's real path at open: checked again before each file is started. */
  /** The staging folder and the inbox, checked before each file (land-path.ts ConfinedFolder). */
  readonly #confined: ConfinedFolder[];
  readonly #journal: Journal;
  readonly #maxFileBytes: number;
  readonly #reserveBytes: number;
  readonly #resumeMinBytes: number;
  readonly #gather: GatherOptions | undefined;
  readonly #lander: Lander;
  /** Small files' staging and landing calls, synchronous while the volumes are local and fast (quickfs.ts). */
  readonly #quick: QuickFs;

  /** Files of this inbox another program holds open while their new version waits staged. */
  heldFiles(): HeldFile[] {
    return this.#lander.held.list();
  }

  /** Tells `fn` of each held/released change of this inbox's targets (one listener; null to stop). */
  onHeldChange(fn: ((c: HeldChange) => void) | null): void {
    this.#lander.held.onChange = fn;
  }
  /** Names in the inbox's folders, shared by landing and the onCollision=skip lookup in begin(). */
  readonly #index: LandIndex;
  /** Free space of the staging volume: one statfs per burst of files (space.ts). */
  readonly #space = new FreeSpace();
  /** Open writers by (source, rel): at most one each. */
  readonly #active = new Map<string, IncomingFile | null>();
  #closed = false;

  private constructor(a: {
    cfg: InboxConfig;
    path: string;
    real: string;
    log: Logger;
    staging: Staging;
    stagingReal: string;
    journal: Journal;
    maxFileBytes: number;
    reserveBytes: number;
    resumeMinBytes: number;
    dirOps: DirOps | undefined;
    quick: QuickFs;
    gather: GatherOptions | undefined;
  }) {
    this.name = a.cfg.name;
    this.path = a.path;
    this.stagingDir = a.staging.dir;
    this.#cfg = a.cfg;
    this.#log = a.log;
    this.#real = a.real;
    this.#staging = a.staging;
    this.#confined = [
      new ConfinedFolder(this.name, 'staging folder', [a.staging.dir], a.stagingReal, a.quick),
      new ConfinedFolder(this.name, 'inbox folder', [this.path, a.real], a.real, a.quick),
    ];
    this.#journal = a.journal;
    this.#maxFileBytes = a.maxFileBytes;
    this.#reserveBytes = a.reserveBytes;
    this.#resumeMinBytes = a.resumeMinBytes;
    this.#gather = a.gather;
    this.#quick = a.quick;
    this.#index = newLandIndex(a.dirOps, a.quick);
    this.#lander = new Lander({ inboxName: this.name, inboxPath: this.path, inboxReal: a.real, policy: a.cfg.onCollision, log: a.log, journal: a.journal, index: this.#index, heldMaxSeconds: a.cfg.heldMaxSeconds, quick: a.quick });
  }

  static async open(cfg: InboxConfig, opts: InboxOptions): Promise<Inbox> {
    const log = opts.log.child({ component: 'inbox', inbox: cfg.name });
    const inboxPath = path.resolve(cfg.path);
    const where = `inbox "${cfg.name}" (${inboxPath})`;
    try {
      if (!(await exists(inboxPath))) {
        try {
          await mkdirp(inboxPath);
        } catch (err) {
          throw new TdxError('FOLDER_UNUSABLE', folderProblem(where, err, `the "path" of this inbox`), { cause: err });
        }
        log.info('created inbox folder', { path: inboxPath });
      }
      const inboxStat = await fs.stat(inboxPath);
      if (!inboxStat.isDirectory()) throw new InboxError('IO', `The ${where} is not a folder; point "path" of this inbox at a folder`);
      try {
        await fs.access(inboxPath, fsConstants.W_OK);
      } catch (err) {
        throw new TdxError('FOLDER_UNUSABLE', folderProblem(where, err, `the "path" of this inbox`), { cause: err });
      }

      const configured = path.resolve(cfg.staging);
      let stagingDev: number | bigint | null = null;
      let stagingError: string | undefined;
      try {
        if (!(await exists(configured))) {
          await fs.mkdir(configured, { recursive: true });
          log.info('created staging folder', { path: configured });
        }
        stagingDev = (await fs.stat(configured)).dev;
      } catch (err) {
        stagingError = describeError(err);
      }
      const choice = chooseStaging({ inboxPath, configured, inboxDev: inboxStat.dev, stagingDev, stagingError });
      if (choice.fallback) {
        log.warn(`partial files go to ${choice.dir} inside the inbox: ${choice.reason}`, { staging: choice.dir });
        await fs.mkdir(choice.dir, { recursive: true });
      }
      try {
        const probe = path.join(choice.dir, `.probe-${process.pid}-${Date.now()}`);
        await fs.writeFile(probe, '');
        await fs.rm(probe, { force: true });
      } catch (err) {
        throw new InboxError('IO', `The staging folder ${choice.dir} of ${where} is not writable: ${describeError(err)}; fix its permissions or set "staging"`, { cause: err });
      }

      const staging = new Staging(choice.dir, choice.suffix);
      await staging.cleanup(opts.resumeTtlMs ?? DEFAULT_RESUME_TTL_MS, log);
      const journal = await Journal.open(opts.stateDir, log, undefined, { durable: cfg.onCollision === 'rename' });
      const real = await realpathLong(inboxPath);
      const stagingReal = await realpathLong(choice.dir);
      const quick = opts.quick ?? new QuickFs({ log });
      for (const dir of new Set([inboxPath, real, choice.dir])) await quick.addRoot(dir, { never: cfg.networkDrive === true });
      log.debug('inbox open', { path: inboxPath, staging: choice.dir, onCollision: cfg.onCollision });
      return new Inbox({
        cfg,
        path: inboxPath,
        real,
        log,
        staging,
        stagingReal,
        journal,
        maxFileBytes: opts.maxFileBytes,
        reserveBytes: opts.reserveBytes ?? DEFAULT_RESERVE_BYTES,
        resumeMinBytes: opts.resumeMinBytes ?? DEFAULT_RESUME_MIN_BYTES,
        dirOps: opts.dirOps,
        quick,
        gather: opts.gather,
      });
    } catch (err) {
      if (err instanceof InboxError || (err instanceof TdxError && err.code === 'FOLDER_UNUSABLE')) throw err;
      throw new InboxError('IO', `Cannot open ${where}: ${describeError(err)}`, { cause: err });
    }
  }

  async begin(req: BeginRequest): Promise<BeginResult> {
    if (this.#closed) throw new InboxError('CLOSED', `Inbox "${this.name}" is closed (the agent is shutting down)`);
    const n = sanitizeRelPath(req.path);
    if (!n.ok) {
      throw new InboxError('BAD_NAME', `Inbox "${this.name}" refuses the file name ${JSON.stringify(req.path)} from ${req.source}: ${n.reason}`);
    }
    if (collisionKey(n.parts[0]!) === collisionKey(FALLBACK_DIRNAME)) {
      throw new InboxError('BAD_NAME', `Inbox "${this.name}" refuses ${JSON.stringify(req.path)} from ${req.source}: "${FALLBACK_DIRNAME}" is reserved for partial files`);
    }
    if (req.size !== null && !(Number.isSafeInteger(req.size) && req.size >= 0)) {
      throw new InboxError('SIZE_MISMATCH', `Inbox "${this.name}": invalid size ${String(req.size)} announced for ${JSON.stringify(n.rel)}`, { retryable: false });
    }
    if (req.size !== null && req.size > this.#maxFileBytes) {
      throw new InboxError(
        'TOO_LARGE',
        `Inbox "${this.name}" refuses ${JSON.stringify(n.rel)} from ${req.source}: ${formatBytes(req.size)} exceeds the limit of ${formatBytes(this.#maxFileBytes)} (limits.maxFileBytes at the receiver)`,
      );
    }
    const key = `${req.source}\0${n.rel}`;
    if (this.#active.has(key)) {
      throw new InboxError('BUSY', `Inbox "${this.name}" is already receiving ${JSON.stringify(n.rel)} from ${req.source}; retry when that transfer has ended`);
    }
    this.#active.set(key, null);
    if (n.changes.length > 0) {
      this.#log.info('sanitised incoming file name', { source: req.source, path: req.path, rel: n.rel, changes: n.changes });
    }
    try {
      const result = await this.#begin(req, n.rel, n.parts, key);
      if (result.kind === 'skip') this.#active.delete(key);
      else this.#active.set(key, result.file);
      return result;
    } catch (err) {
      this.#active.delete(key);
      if (err instanceof InboxError) throw err;
      throw new InboxError('IO', `Inbox "${this.name}" (${this.path}) could not start ${JSON.stringify(n.rel)}: ${describeError(err)}`, { cause: err });
    }
  }

  async #begin(req: BeginRequest, rel: string, parts: string[], key: string): Promise<BeginResult> {
    const { source, size, mtimeMs } = req;
    const inboxRef = { inboxName: this.name, inboxPath: this.path, inboxReal: this.#real, parts, index: this.#index, quick: this.#quick };

    if (size !== null && mtimeMs !== null) {
      const rec = this.#journal.get(source, rel);
      if (rec && rec.size === size && rec.mtimeMs === mtimeMs) {
        const landedAbs = below(this.path, rec.landedRel);
        const st = await fs.stat(landedAbs).catch(() => null);
        // The record is written just before the rename (see incoming.ts), so it only
        // counts once the file it names is there with the recorded bytes.
        // Checked with the record's own hash, whichever the connection that landed it used.
        const recorded = rec.xxh128 !== undefined ? { alg: 'xxh3-128' as const, digest: rec.xxh128 } : { alg: 'sha256' as const, digest: rec.sha256 };
        if (st?.isFile() && st.size === size && recorded.digest !== undefined && (await digestOf(landedAbs, recorded.alg)) === recorded.digest) {
          this.#log.info('file already landed, not receiving it again', { source, rel, landedAs: rec.landedRel });
          return { kind: 'skip', status: 'duplicate', rel: rec.landedRel };
        }
      }
    }
    if (this.#cfg.onCollision === 'skip') {
      const hit = await findExisting(inboxRef);
      if (hit) {
        this.#log.info('file exists, skipping it (onCollision=skip)', { source, rel, existing: hit.rel });
        return { kind: 'skip', status: 'skipped', rel: hit.rel };
      }
    }

    const staging = this.#staging;
    // Staging or inbox swapped for a link while we run: refuse before writing a byte (issue #10 item 7).
    try {
      for (const c of this.#confined) await c.check();
    } catch (err) {
      this.#log.error(err instanceof Error ? err.message : String(err));
      throw err;
    }
    const id = staging.id(source, rel);
    const dataPath = staging.dataPath(id);
    // Asked now, awaited below: the statfs runs while the resume check reads the meta.
    const freeSoon = this.#space.free(staging.dir, (size ?? 0) + this.#reserveBytes);
    let offset = 0;
    let resumeLength: number | null = null;
    if (req.resume && size !== null && mtimeMs !== null) {
      const meta = await staging.readMeta(id);
      if (meta && meta.source === source && meta.rel === rel && meta.size === size && meta.mtimeMs === mtimeMs) {
        const st = await fs.stat(dataPath).catch(() => null);
        if (st?.isFile()) {
          resumeLength = st.size;
          offset = Math.min(st.size, size);
        }
      }
    }

    const needed = (size ?? 0) - offset + this.#reserveBytes;
    const free = await freeSoon;
    if (free !== null && free < needed) {
      throw new InboxError(
        'NO_SPACE',
        `Inbox "${this.name}" (${this.path}) has ${formatBytes(free)} free but needs ${formatBytes(needed)} for ${JSON.stringify(rel)} (${formatBytes((size ?? 0) - offset)} still to receive + ${formatBytes(this.#reserveBytes)} reserve); free space on that volume`,
      );
    }

    this.#space.admit((size ?? 0) - offset);
    const hash = await createFileHash(req.hash ?? BASELINE_HASH);
    let handle: StagedHandle;
    // A resumed partial has its meta; a fresh one gets one only at resumeMinBytes and up.
    let hasMeta = resumeLength !== null;
    if (resumeLength !== null) {
      handle = await openNoFollow(dataPath, WRITE_RESUME);
      try {
        if (resumeLength > offset) await handle.truncate(offset);
        await hashPrefix(dataPath, offset, hash);
      } catch (err) {
        await handle.close().catch(() => undefined); // error path: the error being thrown is the one to report
        throw err;
      }
      this.#log.info('resuming partial file', { source, rel, offset });
    } else {
      // Data first (created or truncated: an old partial's bytes are gone), then its
      // meta: a crash in between leaves an empty partial, never old bytes under the new
      // description. Fewer steps than remove + mkdir + write: this runs once per file
      // while the sender waits for ACCEPT, so it bounds small-file throughput.
      handle = await openFresh(dataPath, staging.dir, size !== null && size <= QUICK_MAX_BYTES ? this.#quick : undefined);
      try {
        if (size !== null && mtimeMs !== null && size >= this.#resumeMinBytes) {
          await staging.writeMeta(id, { v: 1, source, rel, size, mtimeMs, createdAt: Date.now() });
          hasMeta = true;
        }
      } catch (err) {
        await handle.close().catch(() => undefined); // error path: the error being thrown is the one to report
        throw err;
      }
    }
    const prefixDigest = offset > 0 ? hash.peek() : null;

    const file = new IncomingFileImpl(
      {
        inboxName: this.name,
        inboxPath: this.path,
        inboxReal: this.#real,
        policy: this.#cfg.onCollision,
        log: this.#log,
        staging,
        lander: this.#lander,
        journal: this.#journal,
        maxFileBytes: this.#maxFileBytes,
        ...(this.#gather ? { gather: this.#gather } : {}),
        release: () => {
          if (this.#active.get(key) === file) this.#active.delete(key);
        },
      },
      { id, source, rel, parts, size, mtimeMs, offset, prefixDigest, hash, handle, hasMeta, from: req.from, via: req.via },
    );
    return { kind: 'write', file };
  }

  /**
   * Landings a crash left unannounced (journal records still pending, see journal.ts): each
   * whose file is in the inbox with the recorded bytes is returned, to be announced once
   * (the caller calls `markAnnounced` right before it announces it); the others never landed (the crash came
   * before the rename, the sender sends them again) and are cleared here.
   */
  async recoverAnnouncements(): Promise<RecoveredLanding[]> {
    const out: RecoveredLanding[] = [];
    for (const rec of this.#journal.pending()) {
      const abs = below(this.path, rec.landedRel);
      const st = await fs.stat(abs).catch(() => null);
      const recorded = rec.xxh128 !== undefined ? { alg: 'xxh3-128' as const, digest: rec.xxh128 } : { alg: 'sha256' as const, digest: rec.sha256 };
      const landed = st?.isFile() === true && st.size === rec.size && recorded.digest !== undefined && (await digestOf(abs, recorded.alg)) === recorded.digest;
      if (!landed) {
        this.#log.debug('a landing recorded before a crash did not happen (the file stays staged or is sent again)', { source: rec.source, rel: rec.rel });
        await this.#journal.markAnnounced(rec);
        continue;
      }
      out.push({
        rel: rec.landedRel,
        abs,
        size: rec.size,
        hashAlg: recorded.alg,
        digest: recorded.digest!,
        from: rec.from ?? rec.source,
        via: rec.via ?? 'tdxfer',
        at: rec.at,
        markAnnounced: () => this.#journal.markAnnounced(rec),
      });
    }
    return out;
  }

  async health(): Promise<{ exists: boolean; writable: boolean; freeBytes: number | null }> {
    const st = await fs.stat(this.path).catch(() => null);
    const isDir = st?.isDirectory() ?? false;
    const writable = isDir && (await fs.access(this.path, fsConstants.W_OK).then(() => true, () => false));
    return { exists: isDir, writable, freeBytes: isDir ? await freeBytes(this.path) : null };
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    const open = [...this.#active.values()].filter((f): f is IncomingFile => f !== null);
    await Promise.all(open.map((f) => f.abort(true)));
    await this.#journal.flush();
  }
}

