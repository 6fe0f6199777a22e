/**
 * `tdxfer doctor`: checks a machine before a show. Each check prints ✓ or ✗ with what to
 * fix; exit 0 only if every check passed. Nothing is created or changed (write probes
 * remove their file at once); no traffic leaves the machine (ports are probed by binding
 * locally, a running agent by its own status API).
 */
import { randomBytes } from 'node:crypto';
import type { Stats } from 'node:fs';
import fs from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import type { Writable } from 'node:stream';
import type { Command } from 'commander';
import { ConfigErrors, peekKey, prepareConfig, resolveConfigPath, type KeySpec, type UnkeyedConfig } from '../config/index.js';
import { describeError } from '../errors.js';
import { folderProblem } from '../fsutil.js';
import { hookProblems, realLookup, type CommandLookup } from '../hook-check.js';
import { EXIT, statusUrl } from './status-client.js';
import { httpFetch } from './http-fetch.js';

export interface CheckResult {
  ok: boolean;
  label: string;
  detail: string;
  /** How to fix it (failures and warnings). */
  fix?: string;
  /** A warning: worth fixing, but `run` works (ok stays true, the exit code stays 0). */
  warn?: boolean;
}

export interface DoctorOptions {
  config?: string | undefined;
  env?: NodeJS.ProcessEnv;
  /** Below this many free bytes an inbox fails the check (default 512 MiB). */
  minFreeBytes?: number;
}

const GiB = 1024 ** 3;

function pass(label: string, detail: string): CheckResult {
  return { ok: true, label, detail };
}
function fail(label: string, detail: string, fix: string): CheckResult {
  return { ok: false, label, detail, fix };
}
function warn(label: string, detail: string, fix: string): CheckResult {
  return { ok: true, warn: true, label, detail, fix };
}

function humanBytes(n: number): string {
  if (n >= GiB) return `${(n / GiB).toFixed(1)} GiB`;
  return `${Math.round(n / 1024 ** 2)} MiB`;
}

/** How to give the agent's user write access to `dir`, in the terms of the platform doctor runs on. */
export function writeAccessFix(dir: string, platform: NodeJS.Platform = process.platform): string {
  if (platform === 'win32') return `give the agent's user write access (e.g. icacls "${dir}" /grant "%USERNAME%:(OI)(CI)M"; for the Windows service, grant it to the account the service runs as)`;
  if (platform === 'darwin') return `give the agent's user write access (e.g. sudo chown "$USER" "${dir}", or Get Info > Sharing & Permissions in the Finder)`;
  return `give the agent's user write access (e.g. chown tdxfer "${dir}"; under systemd also add it to ReadWritePaths=)`;
}

/** The command that shows which program listens on `port`, on the platform doctor runs on. */
export function portHolderHint(port: number, platform: NodeJS.Platform = process.platform): string {
  if (platform === 'win32') return `\`netstat -ano | findstr :${port}\` (its last column is the PID; \`tasklist /fi "PID eq <pid>"\` names it)`;
  if (platform === 'darwin') return `\`lsof -nP -iTCP:${port} -sTCP:LISTEN\``;
  return `\`ss -ltnp | grep :${port}\``;
}

async function statOrNull(p: string): Promise<Stats | null> {
  return fs.stat(p).catch(() => null);
}

/** Really writes (and removes) a small file: access() lies on some network shares and ACLs. */
async function probeWrite(dir: string): Promise<string | null> {
  const err = await probeWriteError(dir);
  return err === null ? null : describeError(err);
}
async function probeWriteError(dir: string): Promise<unknown> {
  const probe = path.join(dir, `.tdxfer-doctor-${process.pid}-${randomBytes(4).toString('hex')}`);
  try {
    await fs.writeFile(probe, 'tdxfer doctor write probe\n', { flag: 'wx' });
    await fs.rm(probe, { force: true });
    return null;
  } catch (err) {
    return err;
  }
}

/** The closest existing ancestor of `p` (itself included). */
async function existingAncestor(p: string): Promise<string> {
  let cur = p;
  for (;;) {
    if (await statOrNull(cur)) return cur;
    const up = path.dirname(cur);
    if (up === cur) return cur;
    cur = up;
  }
}

/** A missing folder `run` would create (mkdirp): fine when its closest existing ancestor is a writable folder. */
async function checkCreatable(label: string, dir: string, field: string): Promise<CheckResult> {
  const anchor = await existingAncestor(dir);
  const st = await statOrNull(anchor);
  let err: unknown = null;
  if (st && !st.isDirectory()) err = Object.assign(new Error(`${anchor} is not a folder`), { code: 'ENOTDIR', path: anchor });
  else err = await probeWriteError(anchor);
  if (err !== null) {
    if ((err as { path?: unknown }).path === undefined) Object.assign(err as object, { path: anchor });
    return fail(label, `${dir} does not exist and cannot be created`, folderProblem(`${label} (${dir})`, err, field));
  }
  return pass(label, `${dir} does not exist yet: will be created by \`tdxfer run\``);
}

async function checkFolder(label: string, dir: string, needWrite: boolean, field: string): Promise<CheckResult> {
  const st = await statOrNull(dir);
  if (!st) return checkCreatable(label, dir, field);
  if (!st.isDirectory()) return fail(label, `${dir} is not a folder`, 'point the config at a folder');
  if (needWrite) {
    const problem = await probeWrite(dir);
    if (problem) return fail(label, `${dir} is not writable (${problem})`, writeAccessFix(dir));
    return pass(label, `${dir} exists and is writable`);
  }
  try {
    await fs.access(dir, fs.constants.R_OK);
  } catch (err) {
    return fail(label, `${dir} is not readable (${describeError(err)})`, "give the agent's user read access");
  }
  return pass(label, `${dir} exists and is readable`);
}

async function checkStaging(label: string, inbox: string, staging: string): Promise<CheckResult> {
  const inboxSt = await statOrNull(await existingAncestor(inbox));
  const anchor = await existingAncestor(staging);
  const anchorSt = await statOrNull(anchor);
  if (!inboxSt || !anchorSt) return fail(label, `cannot check ${staging}: its folders are missing`, 'create the inbox folder first');
  if (inboxSt.dev !== anchorSt.dev) {
    return fail(label, `${staging} is on another volume than ${inbox}: files could not appear by one atomic rename`, 'set "staging" of this inbox to a folder on the same disk, or remove it to use the default sibling folder');
  }
  const problem = await probeWrite(anchor);
  if (problem) return fail(label, `${anchor === staging ? staging : `${anchor} (to create ${staging})`} is not writable (${problem})`, `give the agent's user write access to ${anchor}`);
  return pass(label, `${staging} is on the same volume as the inbox${anchor === staging ? '' : ' (created on first use)'}`);
}

async function checkFreeSpace(label: string, dir: string, minFree: number): Promise<CheckResult | null> {
  let free: number;
  try {
    const s = await fs.statfs(await existingAncestor(dir));
    free = Number(s.bavail) * Number(s.bsize);
  } catch {
    return null; // folder missing: reported by the folder check
  }
  if (free < minFree) return fail(label, `only ${humanBytes(free)} free on the disk of ${dir}`, 'free disk space or move the inbox to a bigger disk');
  return pass(label, `${humanBytes(free)} free`);
}

type PortState = { state: 'free' } | { state: 'in-use' } | { state: 'error'; code: string; message: string };

export function probePort(host: string, port: number): Promise<PortState> {
  return new Promise((resolve) => {
    const srv = net.createServer();
    srv.once('error', (err: NodeJS.ErrnoException) => {
      if (err.code === 'EADDRINUSE') resolve({ state: 'in-use' });
      else resolve({ state: 'error', code: err.code ?? 'ERROR', message: describeError(err) });
    });
    srv.listen({ host, port, exclusive: true }, () => srv.close(() => resolve({ state: 'free' })));
  });
}

interface RunningAgent {
  name: string;
  version: string;
  listen: string;
}

/** The agent answering at the configured status address (its /status), if any. */
async function runningAgent(cfg: UnkeyedConfig): Promise<RunningAgent | null> {
  if (!cfg.status.enabled) return null;
  const headers: Record<string, string> = {};
  if (cfg.status.token) headers.Authorization = `Bearer ${cfg.status.token}`;
  try {
    const res = await httpFetch(`${statusUrl(cfg.status.host, cfg.status.port)}/status`, { headers, signal: AbortSignal.timeout(2000) });
    if (res.status !== 200) return null;
    const a = ((await res.json()) as { agent?: Partial<RunningAgent> }).agent;
    return a && typeof a.name === 'string' && typeof a.version === 'string' && typeof a.listen === 'string' ? { name: a.name, version: a.version, listen: a.listen } : null;
  } catch {
    return null;
  }
}

function portOf(listen: string): number {
  return Number(listen.slice(listen.lastIndexOf(':') + 1));
}

/**
 * A port in use is fine only when this config's own agent holds it (restarting it frees the port
 * for the same config): the agent answering at this config's status address, with this config's
 * name and transfer port. Any other holder would make `tdxfer run` on this config fail.
 */
function judgeHeldPort(label: string, p: { field: string; port: number }, cfg: UnkeyedConfig, agent: RunningAgent | null): CheckResult {
  const fix = `stop that program (e.g. ${portHolderHint(p.port)} shows which) or change ${p.field}.port`;
  if (agent === null) return fail(label, 'in use by another program', fix);
  const same = agent.name === cfg.name && portOf(agent.listen) === cfg.listen.port;
  const who = `the running tdxfer agent "${agent.name}" (${agent.version}, transfer port ${agent.listen})`;
  if (same) {
    if (p.field === 'legacy.listen') return pass(label, `in use while this config's agent ${who} runs (it holds the legacy port when legacy is on)`);
    return pass(label, `held by this config's running agent "${agent.name}" (${agent.version})`);
  }
  const holds = p.field === 'status' || (p.field === 'listen' && portOf(agent.listen) === p.port);
  if (holds) {
    return fail(label, `held by ${who}, which is not this config's agent (name "${cfg.name}", transfer port ${cfg.listen.port}): this config's agent could not start next to it`, `stop that agent (\`tdxfer stop\` with its config) or change ${p.field}.port in this config`);
  }
  return fail(label, `in use by another program (the tdxfer agent "${agent.name}" answering on the status port is not this config's agent)`, fix);
}

async function checkPorts(cfg: UnkeyedConfig): Promise<CheckResult[]> {
  const ports: Array<{ label: string; field: string; host: string; port: number }> = [{ label: 'transfer port', field: 'listen', host: cfg.listen.host, port: cfg.listen.port }];
  if (cfg.status.enabled) ports.push({ label: 'status port', field: 'status', host: cfg.status.host, port: cfg.status.port });
  if (cfg.legacy.listen) ports.push({ label: 'legacy (TOX) port', field: 'legacy.listen', host: cfg.legacy.listen.host, port: cfg.legacy.listen.port });
  const results: CheckResult[] = [];
  let agent: RunningAgent | null | undefined;
  for (const p of ports) {
    const where = `${p.host.includes(':') ? `[${p.host}]` : p.host}:${p.port}`;
    const label = `${p.label} ${where}`;
    const st = await probePort(p.host, p.port);
    if (st.state === 'free') {
      results.push(pass(label, 'free'));
      continue;
    }
    if (st.state === 'error') {
      const fix =
        st.code === 'EADDRNOTAVAIL'
          ? `${p.host} is not an address of this machine: fix ${p.field}.host (0.0.0.0 = all interfaces)`
          : st.code === 'EACCES'
            ? `ports below 1024 need privileges: use a port from 1024 up in ${p.field}.port`
            : `check ${p.field} in the config`;
      results.push(fail(label, `cannot listen (${st.message})`, fix));
      continue;
    }
    agent ??= await runningAgent(cfg);
    results.push(judgeHeldPort(label, p, cfg, agent));
  }
  return results;
}

async function checkKey(spec: KeySpec, make: ConfigErrors): Promise<CheckResult> {
  let found;
  try {
    found = await peekKey(spec, { make });
  } catch (err) {
    return fail('key', describeError(err), 'fix security.key / security.keyFile as the message says');
  }
  if (!found) {
    const p = spec.kind === 'file' ? spec.path : '';
    return fail('key', `no key yet: ${p} does not exist`, 'run `tdxfer init` (then copy the key file to every machine of the installation), or start the agent once to create it');
  }
  if (spec.kind === 'inline') return pass('key', 'inline in the config file (keep that file private)');
  if (process.platform === 'win32') {
    // NTFS ACLs are not in the mode bits Node reports; judging them would need icacls.
    return pass('key', `${spec.path} present (access not checked on Windows: keep it where only the agent's user and administrators can read it, e.g. icacls "${spec.path}" /inheritance:r /grant:r "%USERNAME%:R")`);
  }
  const st = await statOrNull(spec.path);
  if (st && (st.mode & 0o077) !== 0) {
    return warn('key', `${spec.path} is readable by other users (mode ${(st.mode & 0o777).toString(8).padStart(4, '0')}): anyone with it can send files to and read transfers of this installation`, `chmod 600 "${spec.path}"`);
  }
  return pass('key', `${spec.path} present, private`);
}

function checkInterfaces(cfg: UnkeyedConfig): CheckResult {
  if (!cfg.discovery.enabled) return pass('discovery', 'off (peers come from the config)');
  if (cfg.discovery.interfaces.length === 0) return pass('discovery', 'on, all interfaces');
  const nics = os.networkInterfaces();
  const names = Object.keys(nics);
  const addrs = new Set(Object.values(nics).flatMap((list) => (list ?? []).map((a) => a.address)));
  const missing = cfg.discovery.interfaces.filter((i) => !names.includes(i) && !addrs.has(i));
  if (missing.length > 0) {
    return fail('discovery interfaces', `not on this machine: ${missing.join(', ')}`, `use interface names or IPv4 addresses of this machine: ${names.map((n) => JSON.stringify(n)).join(', ')}`);
  }
  return pass('discovery interfaces', cfg.discovery.interfaces.join(', '));
}

/** Every check after the config loaded, in print order. */
export async function doctorChecks(cfg: UnkeyedConfig, key: KeySpec, make: ConfigErrors, opts: { minFreeBytes?: number; lookup?: CommandLookup } = {}): Promise<CheckResult[]> {
  const minFree = opts.minFreeBytes ?? 512 * 1024 ** 2;
  const out: CheckResult[] = [];
  out.push(await checkKey(key, make));
  const dataAnchor = await existingAncestor(cfg.dataDir);
  if (dataAnchor === cfg.dataDir) out.push(await checkFolder('data folder', cfg.dataDir, true, 'dataDir'));
  else {
    const problem = await probeWrite(dataAnchor);
    out.push(problem ? fail('data folder', `${cfg.dataDir} does not exist and ${dataAnchor} is not writable (${problem})`, `create ${cfg.dataDir} for the agent's user`) : pass('data folder', `${cfg.dataDir} will be created on first start`));
  }
  for (const ib of cfg.inboxes) {
    const label = `inbox "${ib.name}"`;
    const folder = await checkFolder(label, ib.path, true, 'the "path" of this inbox');
    out.push(folder);
    if (!folder.ok) continue; // staging and disk cannot be judged without the inbox
    out.push(await checkStaging(`${label} staging`, ib.path, ib.staging));
    const space = await checkFreeSpace(`${label} disk`, ib.path, minFree);
    if (space) out.push(space);
  }
  const hooks = await hookProblems(cfg.inboxes, opts.lookup ?? realLookup());
  for (const ib of cfg.inboxes) {
    if (!ib.onReceive) continue;
    const h = hooks.find((x) => x.inbox === ib.name);
    const label = `inbox "${ib.name}" onReceive`;
    out.push(h ? fail(label, `${h.problem}: the hook would fail on every received file`, h.fix) : pass(label, `${ib.onReceive.command[0]} can be started`));
  }
  for (const [i, ob] of cfg.outboxes.entries()) {
    // `run` moves files out of an outbox (archive, delete) and creates a missing one: it needs write access.
    out.push(await checkFolder(`outbox ${i + 1} (after: ${ob.after})`, ob.path, ob.after !== 'keep', 'outboxes[].path'));
  }
  if (cfg.log.file) {
    const dir = path.dirname(cfg.log.file);
    const anchor = await existingAncestor(dir);
    const problem = anchor === dir ? await probeWrite(dir) : `${dir} does not exist`;
    out.push(problem ? fail('log file', `${cfg.log.file}: ${problem}`, `create ${dir} and give the agent's user write access, or set log.file to null`) : pass('log file', `${cfg.log.file} can be written`));
  }
  out.push(...(await checkPorts(cfg)));
  out.push(checkInterfaces(cfg));
  return out;
}

export function formatCheck(c: CheckResult): string {
  if (c.warn) return `! ${c.label}: ${c.detail}\n    fix: ${c.fix}\n`;
  return c.ok ? `✓ ${c.label}: ${c.detail}\n` : `✗ ${c.label}: ${c.detail}\n    fix: ${c.fix}\n`;
}

export async function runDoctor(o: DoctorOptions, io: { out: Writable }): Promise<number> {
  const env = o.env ?? process.env;
  const file = resolveConfigPath(o.config, env);
  let prepared;
  try {
    prepared = await prepareConfig(file, { env });
  } catch (err) {
    io.out.write(`✗ config ${file ?? '(built-in defaults)'}:\n    ${describeError(err).replace(/\n/g, '\n    ')}\n\n1 problem: fix the config first (\`tdxfer config check\` shows the details)\n`);
    return EXIT.failed;
  }
  io.out.write(formatCheck(pass('config', `${file ?? 'built-in defaults'} is valid (agent "${prepared.config.name}")`)));
  const checks = await doctorChecks(prepared.config, prepared.key, prepared.make, { minFreeBytes: o.minFreeBytes });
  for (const c of checks) io.out.write(formatCheck(c));
  const failed = checks.filter((c) => !c.ok).length;
  const warned = checks.filter((c) => c.warn).length;
  const warnings = warned === 0 ? '' : `${warned} warning${warned === 1 ? '' : 's'}`;
  if (failed === 0) io.out.write(warned === 0 ? '\nall checks passed\n' : `\nall checks passed, ${warnings}\n`);
  else io.out.write(`\n${failed} problem${failed === 1 ? '' : 's'} to fix${warned ? `, ${warnings}` : ''}\n`);
  return failed === 0 ? EXIT.ok : EXIT.failed;
}

export function registerDoctorCommand(program: Command): void {
  program
    .command('doctor')
    .description('check this machine for the agent: config, folders, disk space, ports, key, interfaces (exit 0 only if all good)')
    .option('-c, --config <file>', 'config file (default: $TDXFER_CONFIG, else built-in defaults)')
    .action(async (o: { config?: string }) => {
      process.exitCode = await runDoctor({ config: o.config }, { out: process.stdout });
    });
}
