/**
 * Loading: conf reads the file (read-only use: no `defaults`, no migrations, no watch, no
 * schema, so it never writes and compiles nothing), our `deserialize` parses it with
 * messages that name line and column and brings it up to the current version (migrate.ts);
 * then the schema (schema.ts) is checked by its compiled form, validate.gen.ts, generated at
 * build time by scripts/gen-config-validator.ts; then defaults are applied (resolve.ts),
 * cross-field rules checked (checks.ts) and the key obtained (key.ts).
 *
 * Why the schema is not handed to conf (issue #12): conf compiles it with ajv on every start,
 * ~0.17 s of CPU paid by each one-shot `tdxfer send`; the compiled validator gives the same
 * verdicts and the verbose ajv errors our messages are made from (test/config/validate-gen).
 *
 * conf facts relied on (conf 15.1, dist/source/index.js):
 * - without `schema`, `rootSchema` and `ajvOptions` it builds no validator;
 * - the constructor writes the file only when `defaults` (or migrations) add something,
 *   and `_watch()` writes an empty store when the file is missing: we pass neither;
 * - a missing file makes `store` mkdir the folder and return {}: we stat first.
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import Conf from 'conf';
import { migrateConfig } from './migrate.js';
import type { ErrorObject } from 'ajv/dist/2020.js';
import { ConfigError } from '../errors.js';
import type { Logger } from '../log.js';
import type { AgentConfig } from './types.js';
import type { RawConfig } from './schema.js';
import { ConfigErrors, translateSchemaErrors } from './messages.js';
import { resolveConfig, type KeySpec, type UnkeyedConfig } from './resolve.js';
import { crossFieldChecks } from './checks.js';
import { obtainKey } from './key.js';
import { validate as generatedValidate } from './validate.gen.js';

/** The compiled schema (ajv standalone code, options in ajv-options.ts: allErrors, verbose). */
const validateSchema = generatedValidate as unknown as ((data: unknown) => boolean) & { errors?: ErrorObject[] | null };

export interface LoadOptions {
  env?: NodeJS.ProcessEnv;
  /** Create `<dataDir>/key` if the config names no key and none exists (the agent's first start). */
  createKey?: boolean;
  log?: Logger;
  /** Agent name default (tests); otherwise os.hostname(). */
  hostname?: string;
}

export const BUILT_IN = 'built-in defaults';

/** --config value, else env TDXFER_CONFIG, else null (built-in defaults). Relative to the working directory. */
export function resolveConfigPath(cliValue?: string, env: NodeJS.ProcessEnv = process.env): string | null {
  const v = cliValue !== undefined && cliValue !== '' ? cliValue : env.TDXFER_CONFIG;
  return v !== undefined && v.trim() !== '' ? path.resolve(v) : null;
}

function schemaErrors(data: unknown): ErrorObject[] {
  return validateSchema(data) ? [] : [...(validateSchema.errors ?? [])];
}

/** JSON.parse with errors that name line and column, show the line, and hint at the usual mistakes. */
export function parseJsonText(text: string, make: ConfigErrors): unknown {
  const body = text.charCodeAt(0) === 0xfeff ? text.slice(1) : text; // UTF-8 BOM (Windows Notepad)
  if (body.trim() === '') throw make.fileError('the file is empty: it must hold a JSON object, e.g. {}.');
  try {
    return JSON.parse(body) as unknown;
  } catch (err) {
    const msg = err instanceof Error ? err.message : String(err);
    const m = /at position (\d+)/.exec(msg);
    const pos = m ? Number(m[1]) : body.length;
    const before = body.slice(0, pos);
    const line = before.split('\n').length;
    const column = pos - (before.lastIndexOf('\n') + 1) + 1;
    const lineText = body.split('\n')[line - 1] ?? '';
    const reason = msg.replace(/\s*in JSON at position \d+.*$/, '').replace(/^Unexpected end of JSON input$/, 'unexpected end of file');
    const rest = body.slice(pos);
    const hint = rest.startsWith('/')
      ? ' JSON allows no comments: use a "$comment" field instead.'
      : /,\s*$/.test(before) && /^[}\]]/.test(rest)
        ? ' JSON allows no trailing comma before } or ].'
        : before.endsWith('\\') && /Bad escaped character/i.test(msg)
          ? ' A backslash in a JSON string starts an escape: write Windows paths with forward slashes ("D:/show/inbox") or doubled backslashes ("D:\\\\show\\\\inbox").'
          : '';
    const excerpt = lineText.length <= 120 ? `\n  ${lineText.replace(/\t/g, ' ')}\n  ${' '.repeat(Math.max(0, column - 1))}^` : '';
    throw make.fileError(`invalid JSON at line ${line}, column ${column}: ${reason}.${hint}${excerpt}`, err);
  }
}

/** Reads and schema-validates the file with conf. Never writes, never creates anything. */
export async function readConfigFile(file: string): Promise<RawConfig> {
  const make = new ConfigErrors(file);
  let st;
  try {
    st = await fs.stat(file);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') {
      throw new ConfigError('', `config file not found: ${file}; create it (\`tdxfer init --config ${file}\` writes a starter) or pass another --config.`, { cause: err });
    }
    throw make.fileError(`cannot read the file (${code ?? String(err)}).`, err);
  }
  if (!st.isFile()) throw make.fileError('this is not a regular file: pass the path of a JSON config file.');

  const ext = path.extname(file);
  let conf: Conf<Record<string, unknown>>;
  let parsed: unknown; // what the file holds, before conf makes a store object of it (an array would become {0: …})
  try {
    conf = new Conf<Record<string, unknown>>({
      cwd: path.dirname(file),
      configName: ext === '' ? path.basename(file) : path.basename(file, ext),
      fileExtension: ext === '' ? '' : ext.slice(1),
      clearInvalidConfig: false,
      watch: false,
      accessPropertiesByDotNotation: false,
      deserialize: (text: string) => (parsed = migrateConfig(parseJsonText(text, make), make)) as Record<string, unknown>,
    });
  } catch (err) {
    if (err instanceof ConfigError) throw err;
    const code = (err as NodeJS.ErrnoException).code;
    throw make.fileError(`cannot read the file (${code ?? (err instanceof Error ? err.message : String(err))}).`, err);
  }
  if (path.resolve(conf.path) !== path.resolve(file)) {
    throw new Error(`conf resolved ${conf.path} instead of ${file}`);
  }
  const errors = schemaErrors(parsed);
  if (errors.length > 0) throw translateSchemaErrors(errors, parsed, make);
  return structuredClone(conf.store) as RawConfig;
}

/**
 * Everything but the key: validated, defaults applied, paths absolute, cross-field rules
 * checked. `tdxfer config check` and `init` use this; the agent uses `loadConfig`.
 */
export async function prepareConfig(
  file: string | null,
  opts: Omit<LoadOptions, 'createKey' | 'log'> = {},
): Promise<{ config: UnkeyedConfig; key: KeySpec; make: ConfigErrors }> {
  const abs = file === null ? null : path.resolve(file);
  const raw = abs === null ? {} : await readConfigFile(abs);
  const make = new ConfigErrors(abs ?? BUILT_IN);
  const { config, key } = resolveConfig(raw, { configFile: abs, env: opts.env ?? process.env, hostname: opts.hostname });
  const problems = crossFieldChecks(raw, config, make);
  if (problems.length > 0) throw make.combine(problems);
  return { config, key, make };
}

/** The resolved config the agent runs on; throws ConfigError with the field and how to fix it. */
export async function loadConfig(file: string | null, opts: LoadOptions = {}): Promise<AgentConfig> {
  const { config, key: spec, make } = await prepareConfig(file, opts);
  const { key, source } = await obtainKey(spec, { createKey: opts.createKey ?? false, log: opts.log, make });
  return { ...config, security: { key, keySource: source, encrypt: config.security.encrypt, hashes: config.security.hashes } };
}
