/**
 * The installation key: 32 random bytes shared by every machine of one installation,
 * written as base64 (in `security.key`, or a key file). Never logged.
 */
import { randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import type { Logger } from '../log.js';
import type { ConfigErrors } from './messages.js';
import type { KeySpec } from './resolve.js';
import { fsyncDir, renameRetrying, writeTempSynced } from '../fsutil.js';

export const KEY_BYTES = 32;
export const KEY_HOWTO = 'make one with `tdxfer init` or `openssl rand -base64 32`';

export interface KeyResult {
  key: Buffer;
  /** "config", the key file's path, or "generated:<path>" (types.ts SecurityConfig.keySource). */
  source: string;
  /** True when this call created the key file: the caller prints the key once. */
  created: boolean;
}

export function generateKey(): Buffer {
  return randomBytes(KEY_BYTES);
}

export function encodeKey(key: Buffer): string {
  return key.toString('base64');
}

/** base64 text → 32-byte key, or a reason it is not one. Whitespace around it is ignored. */
export function decodeKey(text: string): Buffer | { problem: string } {
  const t = text.trim();
  if (t === '') return { problem: 'is empty' };
  // Buffer.from(…, 'base64') silently skips junk, so check the alphabet first.
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(t) && !/^[A-Za-z0-9_-]+={0,2}$/.test(t)) return { problem: 'is not base64 text' };
  const key = Buffer.from(t, t.includes('-') || t.includes('_') ? 'base64url' : 'base64');
  if (key.length !== KEY_BYTES) return { problem: `decodes to ${key.length} bytes, not ${KEY_BYTES}` };
  return key;
}

/**
 * Writes a new key file with mode 0600, atomically: a temp file in the same folder is
 * fsynced, then hard-linked into place, so readers never see a partial key and two agents
 * starting at once cannot each create a different one (the loser reads the winner's).
 * With `overwrite`, an existing key is replaced (by rename, retrying Windows' transient locks).
 * Returns the key now in the file.
 */
export async function writeKeyFile(file: string, opts: { overwrite?: boolean; key?: Buffer } = {}): Promise<{ key: Buffer; created: boolean }> {
  const key = opts.key ?? generateKey();
  await fs.mkdir(path.dirname(file), { recursive: true, mode: 0o700 });
  const tmp = await writeTempSynced(file, `${encodeKey(key)}\n`, 0o600);
  try {
    if (opts.overwrite) {
      await renameRetrying(tmp, file);
    } else {
      try {
        await fs.link(tmp, file);
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (code === 'EEXIST') {
          const existing = decodeKey(await fs.readFile(file, 'utf8'));
          if (Buffer.isBuffer(existing)) return { key: existing, created: false };
          throw err;
        }
        // Filesystems without hard links (FAT/exFAT, some network shares): rename if still absent.
        if (code !== 'EPERM' && code !== 'ENOTSUP' && code !== 'ENOSYS' && code !== 'EOPNOTSUPP') throw err;
        if (await exists(file)) throw err;
        await renameRetrying(tmp, file);
      }
    }
    await fsyncDir(path.dirname(file));
  } finally {
    await fs.rm(tmp, { force: true });
  }
  return { key, created: true };
}

async function exists(file: string): Promise<boolean> {
  try {
    await fs.stat(file);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw err;
  }
}

export interface ObtainKeyOptions {
  /** Create `<dataDir>/key` when the config names no key and none exists yet. */
  createKey?: boolean;
  log?: Logger;
  make: ConfigErrors;
}

/**
 * The key a config points to. Inline: decoded. Key file: read, checked, permissions
 * warned about. Default key file missing: created when `createKey`, otherwise an error
 * that says how to create one; `peekKey` is the non-throwing variant for `config check`.
 */
export async function obtainKey(spec: KeySpec, opts: ObtainKeyOptions): Promise<KeyResult> {
  const found = await peekKey(spec, opts);
  if (found) return found;
  if (spec.kind !== 'file') throw new Error('unreachable: inline keys are always found');
  if (!opts.createKey) {
    throw opts.make.error(
      'security.keyFile',
      `is not set and the default key file ${spec.path} does not exist yet: run \`tdxfer init\` (then copy the key to every machine), or start the agent once to create it.`,
    );
  }
  const { key, created } = await writeKeyFile(spec.path);
  return { key, source: created ? `generated:${spec.path}` : spec.path, created };
}

/** Like `obtainKey` without creating anything: null when the default key file does not exist yet. */
export async function peekKey(spec: KeySpec, opts: Omit<ObtainKeyOptions, 'createKey'>): Promise<KeyResult | null> {
  if (spec.kind === 'inline') {
    const key = decodeKey(spec.value);
    if (!Buffer.isBuffer(key)) {
      throw opts.make.error('security.key', `${key.problem}: it must be the base64 text of ${KEY_BYTES} random bytes (${KEY_HOWTO}).`);
    }
    return { key, source: 'config', created: false };
  }
  let text: string;
  try {
    text = await fs.readFile(spec.path, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' && !spec.explicit) return null;
    const what =
      code === 'ENOENT'
        ? `points to ${spec.path}, which does not exist: copy the installation's key file there, or ${KEY_HOWTO}`
        : `points to ${spec.path}, which cannot be read (${code ?? String(err)}): check its permissions`;
    throw opts.make.error('security.keyFile', `${what}.`, err);
  }
  const key = decodeKey(text);
  if (!Buffer.isBuffer(key)) {
    throw opts.make.error(
      'security.keyFile',
      `points to ${spec.path}, whose content ${key.problem}: the file must hold the base64 text of ${KEY_BYTES} random bytes (${KEY_HOWTO}).`,
    );
  }
  await warnIfExposed(spec.path, opts.log);
  return { key, source: spec.path, created: false };
}

/** POSIX: a key file readable by group or others is a leak waiting to happen. */
async function warnIfExposed(file: string, log: Logger | undefined): Promise<void> {
  if (process.platform === 'win32' || !log) return;
  const st = await fs.stat(file);
  if ((st.mode & 0o077) !== 0) {
    log.warn(`key file ${file} is readable by other users (mode ${(st.mode & 0o777).toString(8)}): run \`chmod 600 ${file}\``, {
      file,
      mode: (st.mode & 0o777).toString(8),
    });
  }
}
