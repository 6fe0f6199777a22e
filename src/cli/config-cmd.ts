/**
 * `tdxfer config check`, `tdxfer config show` and `tdxfer init`. Each handler takes its
 * arguments and an output sink and returns the exit code, so tests call them directly;
 * `registerConfigCommands` wires them into commander.
 *
 * Exit codes: 0 ok, 1 refused or failed (nothing overwritten), 2 invalid config.
 */
import { existsSync } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Command } from 'commander';
import { ConfigError, describeError } from '../errors.js';
import type { Logger } from '../log.js';
import { BUILT_IN, prepareConfig, resolveConfigPath } from '../config/load.js';
import { defaultAgentName, defaultDataDir } from '../config/defaults.js';
import { starterConfig } from './starter.js';
import { encodeKey, generateKey, peekKey, writeKeyFile, type KeyResult } from '../config/key.js';
import type { KeySpec, UnkeyedConfig } from '../config/resolve.js';

export interface TextSink {
  write(text: string): unknown;
}

export interface CliIO {
  stdout: TextSink;
  stderr: TextSink;
  env: NodeJS.ProcessEnv;
}

export interface ConfigArgs {
  config?: string;
}

export interface InitArgs extends ConfigArgs {
  dataDir?: string;
  /** For a starter config: the folder holding its inbox and outbox (default: the data folder). */
  folder?: string;
  force?: boolean;
}

const EXIT_OK = 0;
const EXIT_FAILED = 1;
const EXIT_CONFIG = 2;

function fail(io: CliIO, err: unknown): number {
  if (err instanceof ConfigError) {
    io.stderr.write(`${err.message}\n`);
    return EXIT_CONFIG;
  }
  io.stderr.write(`error: ${describeError(err)}\n`);
  return EXIT_FAILED;
}

/** Warnings from key checks go to stderr as plain lines. */
function stderrLogger(io: CliIO): Logger {
  const log: Logger = {
    debug: () => undefined,
    info: () => undefined,
    warn: (msg) => void io.stderr.write(`warning: ${msg}\n`),
    error: (msg) => void io.stderr.write(`error: ${msg}\n`),
    child: () => log,
  };
  return log;
}

interface Inspected {
  config: UnkeyedConfig;
  spec: KeySpec;
  key: KeyResult | null;
}

async function inspect(args: ConfigArgs, io: CliIO): Promise<Inspected> {
  const file = resolveConfigPath(args.config, io.env);
  const { config, key: spec, make } = await prepareConfig(file, { env: io.env });
  const key = await peekKey(spec, { make, log: stderrLogger(io) });
  return { config, spec, key };
}

const hp = (x: { host: string; port: number }): string => (x.host.includes(':') ? `[${x.host}]:${x.port}` : `${x.host}:${x.port}`);

function keyLine(spec: KeySpec, key: KeyResult | null): string {
  if (key === null && spec.kind === 'file') return `no key yet: the agent creates ${spec.path} on first start (or run \`tdxfer init\`)`;
  if (spec.kind === 'inline') return 'key set in the config (security.key)';
  return `key from ${spec.path}`;
}

/** The short "what would this agent do" text of `config check`. */
export function summarize(config: UnkeyedConfig, spec: KeySpec, key: KeyResult | null): string {
  const lines: string[] = [];
  const add = (label: string, text: string): void => void lines.push(`${label.padEnd(10)}${text}`);
  add('config', config.configFile ?? `${BUILT_IN} (no config file)`);
  add('agent', `${config.name}, listening on ${hp(config.listen)}, data in ${config.dataDir}`);
  if (config.inboxes.length === 0) add('inboxes', 'none (receives nothing)');
  config.inboxes.forEach((i, n) =>
    add(n === 0 ? 'inboxes' : '', `${i.name}: ${i.path} (on collision: ${i.onCollision}${i.onReceive ? `, then runs ${i.onReceive.command[0]}` : ''})`),
  );
  if (config.outboxes.length === 0) add('outboxes', 'none (sends nothing)');
  config.outboxes.forEach((o, n) => {
    const routes = o.to
      .map((r) => {
        const who = r.peer === '*' ? 'every discovered peer' : r.peer === config.name && !config.peers.some((p) => p.name === r.peer) ? `${r.peer} (this agent)` : r.peer;
        return r.inbox !== undefined ? `${who}/${r.inbox}` : who;
      })
      .join(', ');
    const filters = [o.include.length > 0 ? `only ${o.include.join(' ')}` : '', o.exclude.length > 0 ? `not ${o.exclude.join(' ')}` : ''].filter(Boolean).join(', ');
    add(n === 0 ? 'outboxes' : '', `${o.path} -> ${routes} (then ${o.after}, settle ${o.settleMs} ms${filters ? `, ${filters}` : ''})`);
  });
  if (config.peers.length === 0) add('peers', 'none listed');
  config.peers.forEach((p, n) => add(n === 0 ? 'peers' : '', `${p.name}: ${hp(p)} (${p.protocol})`));
  add('discovery', config.discovery.enabled ? `on${config.discovery.interfaces.length > 0 ? ` (${config.discovery.interfaces.join(', ')})` : ''}` : 'off');
  add('security', `${config.security.encrypt ? 'encrypted (TLS-PSK)' : 'NOT encrypted (plain TCP, still authenticated)'}; ${keyLine(spec, key)}`);
  if (config.legacy.listen) add('legacy', `TOX receiver on ${hp(config.legacy.listen)} into inbox ${config.legacy.inbox ?? '?'}${config.legacy.allow.length > 0 ? ` (from ${config.legacy.allow.join(', ')})` : ''}`);
  add('status', config.status.enabled ? `http://${hp(config.status)}/${config.status.token ? ' (token required)' : ''}` : 'off');
  if (config.osc.targets.length > 0) add('osc', config.osc.targets.map(hp).join(', '));
  return lines.join('\n') + '\n';
}

export async function configCheck(args: ConfigArgs, io: CliIO): Promise<number> {
  try {
    const { config, spec, key } = await inspect(args, io);
    io.stdout.write(`Config OK.\n${summarize(config, spec, key)}`);
    return EXIT_OK;
  } catch (err) {
    return fail(io, err);
  }
}

export const REDACTED = '<redacted>';

export async function configShow(args: ConfigArgs, io: CliIO): Promise<number> {
  try {
    const { config, spec, key } = await inspect(args, io);
    const shown = {
      ...config,
      security: {
        key: key ? REDACTED : null,
        keySource: key ? key.source : `none yet (created at ${spec.kind === 'file' ? spec.path : '?'} on first start)`,
        encrypt: config.security.encrypt,
      },
      status: { ...config.status, token: config.status.token === null ? null : REDACTED },
    };
    io.stdout.write(`${JSON.stringify(shown, null, 2)}\n`);
    return EXIT_OK;
  } catch (err) {
    return fail(io, err);
  }
}

/** The package folder (holds config/example.json), from src/cli or dist/src/cli. */
export function packageRoot(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (;;) {
    if (existsSync(path.join(dir, 'package.json')) && existsSync(path.join(dir, 'config', 'example.json'))) return dir;
    const up = path.dirname(dir);
    if (up === dir) throw new Error('cannot find the tdxfer package folder (with config/example.json)');
    dir = up;
  }
}

function printKey(io: CliIO, key: Buffer, where: string): void {
  io.stdout.write(
    `Installation key (${where}):\n\n  ${encodeKey(key)}\n\n` +
      'Copy this same key to every machine of the installation (as "security": { "key": "..." } in its config,\n' +
      'or into its key file). Keep it secret: whoever has it can send files into your inboxes.\n' +
      'It is shown only now.\n',
  );
}

export async function init(args: InitArgs, io: CliIO): Promise<number> {
  try {
    const env = args.dataDir !== undefined ? { ...io.env, TDXFER_DATA_DIR: path.resolve(args.dataDir) } : io.env;
    const file = resolveConfigPath(args.config, io.env);
    if (file !== null && !existsSync(file)) return await writeStarterConfig(file, args, io);

    const { key: spec, make } = await prepareConfig(file, { env });
    if (spec.kind === 'inline') {
      io.stdout.write(`The key is already set in ${file ?? BUILT_IN} (security.key); nothing to do. To change it, edit that file on every machine.\n`);
      return EXIT_OK;
    }
    if (existsSync(spec.path) && !args.force) {
      // Validates the existing file, so a broken one is reported rather than hidden.
      await peekKey(spec, { make, log: stderrLogger(io) });
      io.stderr.write(
        `A key file already exists: ${spec.path}. Nothing changed.\n` +
          'Pass --force to replace it (then every machine of the installation needs the new key).\n',
      );
      return EXIT_FAILED;
    }
    const { key, created } = await writeKeyFile(spec.path, { overwrite: args.force === true });
    if (!created) {
      io.stderr.write(`Another process created ${spec.path} meanwhile; it was kept. Nothing changed.\n`);
      return EXIT_FAILED;
    }
    printKey(io, key, `written to ${spec.path}`);
    return EXIT_OK;
  } catch (err) {
    return fail(io, err);
  }
}

/**
 * A minimal, safe starter config (see starter.ts) with this machine's name and a new inline key.
 * Its data folder: --data-dir, else the one the agent would use ($TDXFER_DATA_DIR, else the
 * per-user data folder), written as an absolute path so every later run agrees.
 */
async function writeStarterConfig(file: string, args: InitArgs, io: CliIO): Promise<number> {
  const key = generateKey();
  const dataDir = args.dataDir !== undefined ? path.resolve(args.dataDir) : defaultDataDir(io.env);
  const folder = args.folder !== undefined ? path.resolve(args.folder) : dataDir;
  const starter = starterConfig({ name: defaultAgentName(), dataDir, folder, key: encodeKey(key) });
  await fs.mkdir(path.dirname(file), { recursive: true });
  // Mode 0600 and exclusive create: the file holds the key, and an existing file is never replaced.
  await fs.writeFile(file, `${JSON.stringify(starter, null, 2)}\n`, { flag: 'wx', mode: 0o600 });
  io.stdout.write(
    `Wrote a starter config to ${file}: agent ${String(starter.name)}, data in ${dataDir},\n` +
      `outbox ${path.join(folder, 'outbox')} -> inbox ${path.join(folder, 'inbox')} (this agent; route it to a peer).\n` +
      `Check it with \`tdxfer config check --config ${file}\`; config/example.json shows every setting.\n`,
  );
  printKey(io, key, `stored in ${file} as security.key`);
  return EXIT_OK;
}

export interface RegisterOptions extends Partial<CliIO> {
  /** Receives each command's exit code; default: sets process.exitCode. */
  setExitCode?: (code: number) => void;
}

/** Adds `config check`, `config show` and `init` to the tdxfer program. */
export function registerConfigCommands(program: Command, opts: RegisterOptions = {}): void {
  const io: CliIO = { stdout: opts.stdout ?? process.stdout, stderr: opts.stderr ?? process.stderr, env: opts.env ?? process.env };
  const setExitCode =
    opts.setExitCode ??
    ((code: number) => {
      process.exitCode = code;
    });
  const configOf = (cmd: Command): string | undefined => (cmd.optsWithGlobals() as { config?: string }).config;

  const config = program.command('config').description('check or show the configuration');
  config
    .command('check')
    .description('validate the config and print what the agent would do (creates nothing)')
    .option('-c, --config <file>', 'config file (default: $TDXFER_CONFIG, else built-in defaults)')
    .action(async (_o: unknown, cmd: Command) => setExitCode(await configCheck({ config: configOf(cmd) }, io)));
  config
    .command('show')
    .description('print the resolved config as JSON (every default applied, paths absolute, secrets redacted)')
    .option('-c, --config <file>', 'config file (default: $TDXFER_CONFIG, else built-in defaults)')
    .action(async (_o: unknown, cmd: Command) => setExitCode(await configShow({ config: configOf(cmd) }, io)));

  program
    .command('init')
    .description(
      'create the installation key (in the data folder, or where the config says), or, when --config names a file ' +
        'that does not exist, write a starter config holding a new key; prints the key once',
    )
    .option('-c, --config <file>', 'config file (default: $TDXFER_CONFIG); an existing config file is never rewritten')
    .option('-d, --data-dir <dir>', 'data folder (default: $TDXFER_DATA_DIR, else the per-user data folder)')
    .option('--folder <dir>', 'starter config only: the folder for its inbox and outbox (default: the data folder)')
    .option('-f, --force', 'replace an existing key file (every machine then needs the new key)')
    .action(async (o: { dataDir?: string; folder?: string; force?: boolean }, cmd: Command) =>
      setExitCode(await init({ config: configOf(cmd), dataDir: o.dataDir, folder: o.folder, force: o.force }, io)),
    );
}
