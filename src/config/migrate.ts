/**
 * Config file versions (issue #13 item 8). A file may say `"version": N`; without it, it is read as
 * the current version. Before the schema sees a file, `migrateConfig` brings an older version up to
 * CONFIG_VERSION one step at a time (MIGRATIONS[n] turns version n into n+1), so the schema, the
 * types and the resolver only ever know the current shape. A version newer than this tdxfer knows
 * is a clear error (the file was written for a later release). Pure: data in, data out.
 */
import type { ConfigErrors } from './messages.js';

/** The config version this build reads and writes. */
export const CONFIG_VERSION = 1;

type ConfigObject = Record<string, unknown>;

/** MIGRATIONS[n]: version n -> n + 1. Empty while there is only version 1. */
export const MIGRATIONS: Readonly<Record<number, (c: ConfigObject) => ConfigObject>> = {};

/**
 * Returns `data` at CONFIG_VERSION (a new object when anything changed; `version` set when the file
 * had one). Anything that is not an object, or a `version` that is not a positive integer, is left
 * for the schema to report with its usual field message.
 */
export function migrateConfig(
  data: unknown,
  make: Pick<ConfigErrors, 'error'>,
  current = CONFIG_VERSION,
  migrations: Readonly<Record<number, (c: ConfigObject) => ConfigObject>> = MIGRATIONS,
): unknown {
  if (data === null || typeof data !== 'object' || Array.isArray(data)) return data;
  const v = (data as ConfigObject).version;
  if (v === undefined || typeof v !== 'number' || !Number.isInteger(v) || v < 1) return data;
  if (v > current) {
    throw make.error(
      'version',
      `is ${v}, but this tdxfer reads config versions up to ${current}: the file was written for a newer tdxfer. Upgrade tdxfer, or set "version": ${current} after checking the file against this release's README.`,
    );
  }
  let out = data as ConfigObject;
  for (let n = v; n < current; n++) {
    const step = migrations[n];
    if (!step) throw new Error(`config migration from version ${n} to ${n + 1} is missing (a bug in tdxfer)`);
    out = { ...step(out), version: n + 1 };
  }
  return out;
}
