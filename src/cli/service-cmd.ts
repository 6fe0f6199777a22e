/** `tdxfer service install|uninstall|status|start|stop`: the agent as a system service (systemd, Windows service via WinSW, launchd). */
import { readFileSync, existsSync } from 'node:fs';
import path from 'node:path';
import sea from 'node:sea';
import type { Command } from 'commander';
import { packageBinary, packageFile } from '../build-info.js';
import { DEFAULT_PORT } from '../config/defaults.js';
import { applyPlan, printPlan, type ApplyIO } from '../service/apply.js';
import { LINUX_CONFIG, linuxPlan } from '../service/linux.js';
import { MACOS_CONFIG, macosPlan } from '../service/macos.js';
import { hostPlatform, ServiceError, type Plan, type ServiceAction, type ServiceOptions, type ServicePlatform } from '../service/plan.js';
import { WINSW_CONFIG_SOURCE, WINSW_SOURCE, windowsPaths, windowsPlan } from '../service/windows.js';

export interface ServiceArgs {
  action: ServiceAction;
  config?: string;
  user?: string;
  dryRun?: boolean;
  firewall?: boolean;
  platform?: string;
  program?: string;
  enable?: boolean;
}

const EXIT_FAILED = 1;
const EXIT_USAGE = 2;

function isSea(): boolean {
  try {
    return sea.isSea();
  } catch {
    return false;
  }
}

/** How this tdxfer is started: the executable itself, or node and this checkout's main.js. */
export function selfProgram(): { program: string[]; sea: boolean } {
  if (isSea()) return { program: [process.execPath], sea: true };
  return { program: [process.execPath, path.resolve(process.argv[1] ?? 'dist/src/cli/main.js')], sea: false };
}

function defaultConfig(platform: ServicePlatform, env: Record<string, string | undefined>): string {
  if (platform === 'linux') return LINUX_CONFIG;
  if (platform === 'macos') return MACOS_CONFIG;
  return `${windowsPaths(env).home}\\config.json`;
}

/** The transfer port from the config when it is readable, else the default. */
function configPort(file: string): number {
  try {
    const cfg = JSON.parse(readFileSync(file, 'utf8')) as { listen?: { port?: unknown } };
    const p = cfg.listen?.port;
    return typeof p === 'number' && Number.isInteger(p) && p > 0 && p < 65536 ? p : DEFAULT_PORT;
  } catch {
    return DEFAULT_PORT;
  }
}

function parsePlatform(s: string | undefined): ServicePlatform {
  if (s === undefined) {
    const host = hostPlatform();
    if (!host) throw new ServiceError('SERVICE_FOREIGN_PLATFORM', `no service support on ${process.platform}; use --platform linux|windows|macos with --dry-run to see what it would do`);
    return host;
  }
  if (s === 'linux' || s === 'windows' || s === 'macos') return s;
  throw new ServiceError('SERVICE_BAD_OPTION', `--platform ${s}: expected linux, windows or macos`);
}

export function buildPlan(a: ServiceArgs, env: Record<string, string | undefined>, self = selfProgram()): { plan: Plan; platform: ServicePlatform } {
  const platform = parsePlatform(a.platform);
  if (platform !== hostPlatform() && !a.dryRun) {
    throw new ServiceError('SERVICE_FOREIGN_PLATFORM', `--platform ${platform} is not this machine's platform: only --dry-run can show it here`);
  }
  if (a.firewall && platform !== 'windows') throw new ServiceError('SERVICE_BAD_OPTION', '--firewall is for Windows (on Linux and macOS open the port in your own firewall tool)');
  if (a.program !== undefined && !(platform === 'windows' ? path.win32.isAbsolute : path.posix.isAbsolute)(a.program)) {
    throw new ServiceError('SERVICE_BAD_OPTION', `--program ${a.program}: give the absolute path of the launcher`);
  }
  if (a.user !== undefined && a.action !== 'install') throw new ServiceError('SERVICE_BAD_OPTION', '--user only applies to `service install`');
  const isAbs = platform === 'windows' ? path.win32.isAbsolute : path.posix.isAbsolute;
  let config = a.config ?? defaultConfig(platform, env);
  if (!isAbs(config)) {
    if (platform !== hostPlatform()) throw new ServiceError('SERVICE_BAD_OPTION', `--config ${config}: give an absolute path for another platform`);
    config = path.resolve(config);
  }
  const o: ServiceOptions = {
    platform,
    config,
    user: a.user ?? null,
    program: a.program !== undefined ? [a.program] : self.program,
    sea: self.sea,
    launcher: a.program !== undefined,
    enable: a.enable ?? true,
    port: existsSync(config) ? configPort(config) : DEFAULT_PORT,
    firewall: a.firewall ?? false,
    destdir: platform === 'linux' ? (env.DESTDIR ?? '') : '',
    env,
  };
  if (o.destdir !== '' && !path.isAbsolute(o.destdir)) throw new ServiceError('SERVICE_BAD_OPTION', `DESTDIR=${o.destdir} must be an absolute path`);
  if (platform === 'linux') return { plan: linuxPlan(a.action, o, packageFile('systemd/tdxfer.service')), platform };
  if (platform === 'macos') return { plan: macosPlan(a.action, o), platform };
  const winsw = a.action === 'install' ? { exe: packageBinary(WINSW_SOURCE), config: packageFile(WINSW_CONFIG_SOURCE) } : null;
  return { plan: windowsPlan(a.action, o, winsw), platform };
}

export function serviceCommand(a: ServiceArgs, env: Record<string, string | undefined>, io: ApplyIO): number {
  try {
    const { plan, platform } = buildPlan(a, env);
    if (a.dryRun) {
      printPlan(`tdxfer service ${a.action} (${platform})`, plan, io);
      return 0;
    }
    return applyPlan(plan, io);
  } catch (err) {
    if (err instanceof ServiceError) {
      io.stderr.write(`tdxfer service ${a.action}: ${err.message} [${err.code}]\n`);
      return err.code === 'SERVICE_STEP_FAILED' ? EXIT_FAILED : EXIT_USAGE;
    }
    const e = err as NodeJS.ErrnoException;
    const hint = e.code === 'EACCES' || e.code === 'EPERM' ? ' (run it as root / administrator)' : '';
    io.stderr.write(`tdxfer service ${a.action}: ${e.message}${hint}\n`);
    return EXIT_FAILED;
  }
}

export function registerServiceCommands(program: Command): void {
  const service = program
    .command('service')
    .description('run the agent as a system service: systemd (Linux), a Windows service (WinSW), a LaunchDaemon (macOS)');
  const actions: Array<[ServiceAction, string]> = [
    ['install', 'install the service for this tdxfer (started at boot, restarted after failures); needs root / administrator'],
    ['uninstall', 'stop and remove the service (config, key and data stay)'],
    ['status', 'show the service state'],
    ['start', 'start the service'],
    ['stop', 'stop the service gracefully (transfers finish first)'],
  ];
  for (const [action, description] of actions) {
    const c = service
      .command(action)
      .description(description)
      .option('--dry-run', 'print every file and command it would write or run, change nothing')
      .option('--platform <name>', 'linux, windows or macos (default: this machine; another only with --dry-run)');
    if (action === 'install' || action === 'uninstall') {
      c.option('-c, --config <file>', 'config file the service runs with (default: /etc/tdxfer/config.json, %ProgramData%\\tdxfer\\config.json, /Library/Application Support/tdxfer/config.json)');
      c.option('--firewall', 'Windows: add (install) or delete (uninstall) the inbound rule for the transfer port, private networks only');
    }
    if (action === 'install') {
      c.option('--user <name>', 'account the agent runs as (Linux default: tdxfer, created; Windows: LocalSystem; macOS: root)');
      c.option('--program <path>', 'run the service with this launcher instead of this tdxfer (scripts/install.sh passes <prefix>/bin/tdxfer)');
      c.option('--no-enable', 'Linux: write the unit but do not enable it');
    }
    c.action((o: Omit<ServiceArgs, 'action'>) => {
      process.exitCode = serviceCommand({ ...o, action }, process.env, { stdout: process.stdout, stderr: process.stderr });
    });
  }
}
