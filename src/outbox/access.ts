/**
 * FileAccess: may the agent read a settled outbox file now? Opens it (exclusively on
 * Windows, never through a symlink unless followSymlinks), and keeps what the operator
 * must hear about once: files another program holds open, files the agent's user may not
 * read (listed in /status and /health until readable), symlinks that are not followed.
 * What an open error means is decided by watch-rules.ts (classifyOpenError).
 */
import { closeSync, constants as fsc, openSync } from 'node:fs';
import { open, readlink } from 'node:fs/promises';
import os from 'node:os';
import { describeError } from '../errors.js';
import type { Logger } from '../log.js';
import type { FileVersion } from './settle.js';
import { classifyOpenError, errCode } from './watch-rules.js';
import { THREAD_POOL_FS, type QuickFs } from '../quickfs.js';

export type OpenCheck = 'ok' | 'busy' | 'gone';

/** libuv's UV_FS_O_EXLOCK: on Windows, open without sharing (fails with EBUSY while anyone has the file open). */
export const UV_FS_O_EXLOCK = 0x10000000;
const EXCLUSIVE_READ = fsc.O_RDONLY | UV_FS_O_EXLOCK;

export class FileAccess {
  /** rel -> version key whose "held open" was already logged. */
  private readonly busyWarned = new Map<string, string>();
  /** Symlinks skipped (outboxes[].followSymlinks is off): rel → target, warned once each. */
  private readonly links = new Map<string, string>();
  /** Settled files the agent may not read (EACCES/EPERM): rel → error code. Warned once each; retried until readable. */
  private readonly unreadable = new Map<string, string>();
  /** Windows: "cannot open exclusively" means another program is still writing the file. */
  private readonly exclusive = process.platform === 'win32';

  constructor(
    private readonly root: string,
    private readonly log: Logger,
    private readonly followSymlinks: boolean,
    /** Quick (synchronous) open checks while the outbox's volume is local and fast (quickfs.ts). */
    private readonly quick: QuickFs = THREAD_POOL_FS,
  ) {}

  /**
   * Can the file be opened for reading, and on Windows exclusively? Windows programs
   * (TouchDesigner's Movie File Out TOP, most encoders, Explorer copies) keep a file open
   * while writing it; an open without sharing (UV_FS_O_EXLOCK) then fails with EBUSY, so
   * such a file is still being written and is not sent, however long it stayed the same
   * size (settleMs). POSIX has no such signal: there settling alone decides.
   */
  async canOpen(rel: string, abs: string, v: FileVersion): Promise<OpenCheck> {
    try {
      // No-follow (unless followSymlinks): a file swapped for a link after it settled is not read either.
      const flags = (this.exclusive ? EXCLUSIVE_READ : fsc.O_RDONLY) | (this.followSymlinks ? 0 : (fsc.O_NOFOLLOW ?? 0));
      await this.quick.call(abs, () => closeSync(openSync(abs, flags)), async () => (await open(abs, flags)).close());
      return 'ok';
    } catch (err) {
      const code = errCode(err);
      const kind = classifyOpenError(code);
      if (kind === 'gone') return 'gone';
      if (kind === 'busy') {
        const key = `${rel}\0${v.size}\0${v.mtimeMs}`;
        if (this.busyWarned.get(rel) !== key) {
          this.busyWarned.set(rel, key);
          this.log.info(`Waiting for ${abs}: another program has it open (still writing it); it is sent once that program closes it.`);
        }
      } else if (kind === 'unreadable') {
        // Warned once per file (not per version): it is listed in /status and /health until readable.
        if (!this.unreadable.has(rel)) {
          this.log.warn(`Cannot read ${abs} (${code}): the agent's user (${agentUser()}) lacks read permission, so it is not sent. Make it readable by user ${agentUser()}; it is sent as soon as it is.`);
        }
        this.unreadable.set(rel, code);
      } else {
        this.log.debug('file not readable yet; retrying', { rel, error: describeError(err) });
      }
      return 'busy';
    }
  }

  /** The open check of `rel` is over (`ok` or `gone`): its warnings are reset. */
  settled(rel: string, abs: string, check: OpenCheck): void {
    this.busyWarned.delete(rel);
    if (this.unreadable.delete(rel) && check === 'ok') this.log.info(`${abs} is readable now; sending it.`);
  }

  /** A symlink found where a file was expected (followSymlinks off): warned once, listed by skippedLinks(). */
  async skipLink(rel: string, abs: string): Promise<void> {
    if (this.links.has(rel)) return;
    let target = '?';
    try {
      target = await readlink(abs);
    } catch {
      /* vanished meanwhile: the path is enough */
    }
    this.links.set(rel, target);
    this.log.warn(`Skipping symlink ${abs} -> ${target}: links in an outbox are not followed, so nothing outside ${this.root} is read, moved or deleted. Put the file itself in the outbox, or set outboxes[].followSymlinks: true for this outbox.`);
  }

  /** chokidar reported `rel` unlinked: a skipped link there is no longer listed. */
  unlinked(rel: string): void {
    this.links.delete(rel);
  }

  /** `rel` is gone: nothing about it is remembered. */
  forget(rel: string): void {
    this.unreadable.delete(rel);
    this.busyWarned.delete(rel);
  }

  skippedLinks(): Array<{ rel: string; target: string }> {
    return [...this.links].map(([rel, target]) => ({ rel, target }));
  }

  unreadableFiles(absOf: (rel: string) => string): Array<{ rel: string; abs: string; code: string; fix: string }> {
    const user = agentUser();
    return [...this.unreadable].map(([rel, code]) => ({ rel, abs: absOf(rel), code, fix: `make it readable by user ${user} (the agent's user), e.g. chmod a+r` }));
  }
}

let userName: string | null = null;
/** The user the agent runs as (for "make it readable by user X"). */
export function agentUser(): string {
  if (userName === null) {
    try {
      userName = os.userInfo().username;
    } catch {
      userName = typeof process.getuid === 'function' ? `uid ${process.getuid()}` : 'the agent runs as';
    }
  }
  return userName;
}
