/**
 * `tdxfer service`: what installing, removing, starting, stopping or querying the agent as a
 * system service means on each platform, as a list of steps (files to write, commands to run).
 * Pure: the platform modules build plans from options; src/service/apply.ts carries them out
 * or, with --dry-run, prints them.
 */
export type ServicePlatform = 'linux' | 'windows' | 'macos';
export type ServiceAction = 'install' | 'uninstall' | 'status' | 'start' | 'stop';

export interface ServiceOptions {
  platform: ServicePlatform;
  /** Absolute config path (the platform's default when --config is not given). */
  config: string;
  /** --user: the account the agent runs as (null: the platform default). */
  user: string | null;
  /** How this tdxfer is started: [executable] for a single executable, [node, main.js] from source. */
  program: string[];
  /** True when running as a single executable (install copies it into place). */
  sea: boolean;
  /** --program: the service runs this launcher as is (scripts/install.sh passes <prefix>/bin/tdxfer). */
  launcher: boolean;
  /** --no-enable (Linux): write the unit, do not enable it. */
  enable: boolean;
  /** The transfer port (firewall rule). */
  port: number;
  /** Windows: run the firewall command instead of printing it. */
  firewall: boolean;
  /** Linux: DESTDIR for packaging and tests: files under it, no users, no systemctl. */
  destdir: string;
  /** Environment lookups (ProgramData, ProgramFiles, TDXFER_SERVICE_PASSWORD). */
  env: Record<string, string | undefined>;
}

export type Step =
  /** Copy a file (the running executable into place). */
  | { kind: 'copy'; from: string; to: string; mode: number }
  /** Write a file; `binary` is base64 content; `secret` hides content in --dry-run. */
  | { kind: 'write'; path: string; content: string; mode: number; binary?: boolean; shown?: string }
  | { kind: 'mkdir'; path: string; mode: number; owner?: string }
  | { kind: 'remove'; path: string }
  /** Create the system user when missing (Linux). */
  | { kind: 'user'; name: string; home: string }
  /** Run a command; `allowFail`: its failure is reported, not fatal; `shown`: argv as printed. */
  | { kind: 'run'; argv: string[]; allowFail?: boolean; shown?: string[]; passExit?: boolean }
  | { kind: 'note'; text: string };

export interface Plan {
  steps: Step[];
}

export class ServiceError extends Error {
  constructor(
    readonly code: 'SERVICE_BAD_OPTION' | 'SERVICE_FOREIGN_PLATFORM' | 'SERVICE_STEP_FAILED',
    message: string,
  ) {
    super(message);
    this.name = 'ServiceError';
  }
}

export const SERVICE_NAME = 'tdxfer';

/** Characters allowed in paths and names written into unit files, plists and service XML. */
const SAFE = /^[A-Za-z0-9/\\:._+ ()-]+$/;

export function checkSafe(what: string, value: string): void {
  if (!SAFE.test(value) || /[\n\r"']/.test(value)) {
    throw new ServiceError(
      'SERVICE_BAD_OPTION',
      `${what} ${JSON.stringify(value)} has characters a service definition cannot carry safely: use letters, digits, spaces and / \\ : . _ + - ( )`,
    );
  }
}

export function checkUser(user: string): void {
  if (!/^[A-Za-z_][A-Za-z0-9_.-]{0,63}$/.test(user)) {
    throw new ServiceError('SERVICE_BAD_OPTION', `--user ${JSON.stringify(user)} is not a valid account name (letters, digits, _ . -; starting with a letter or _)`);
  }
}

/** The platform of this machine, or null where tdxfer has no service support. */
export function hostPlatform(platform: string = process.platform): ServicePlatform | null {
  return platform === 'linux' ? 'linux' : platform === 'win32' ? 'windows' : platform === 'darwin' ? 'macos' : null;
}
