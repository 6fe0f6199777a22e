/**
 * Raw (validated) config file → resolved config: every default applied, every path
 * absolute. Pure apart from reading the environment it is given. The key is resolved
 * separately (key.ts) from the `KeySpec` returned here.
 */
import os from 'node:os';
import path from 'node:path';
import type { AgentConfig, InboxConfig, OutboxConfig, PeerConfig, PeerProtocol, RouteConfig } from './types.js';
import type { RawConfig } from './schema.js';
import { expandWindowsEnv } from './winpath.js';
import { flattensByDefault } from './protocols.js';
import { DEFAULTS, ZERO_CONFIG_INBOX, defaultAgentName, defaultDataDir, defaultKeyFile, defaultStaging } from './defaults.js';
import { HASH_ALGS, type HashAlg } from '../hash.js';

/** Where the installation key comes from (before reading anything). */
export type KeySpec =
  | { kind: 'inline'; value: string }
  /** `explicit`: named by security.keyFile (must exist) vs. the default `<dataDir>/key` (may be created). */
  | { kind: 'file'; path: string; explicit: boolean };

/** The resolved config minus the key material, which key.ts adds. */
export type UnkeyedConfig = Omit<AgentConfig, 'security'> & { security: { encrypt: boolean; hashes: HashAlg[] } };

export interface ResolveOptions {
  /** Absolute path of the config file, or null for built-in defaults. */
  configFile: string | null;
  env?: NodeJS.ProcessEnv;
  /** Defaults to `defaultAgentName()`; tests pin it. */
  hostname?: string;
  /** Defaults to process.platform; tests pin it. */
  platform?: NodeJS.Platform;
}

/** Absolute path: `~/x` is the home folder, otherwise relative to `base`. */
export function resolvePath(base: string, p: string): string {
  if (p === '~' || p.startsWith('~/') || p.startsWith('~\\')) return path.join(os.homedir(), p.slice(1));
  return path.resolve(base, p);
}

export function resolveConfig(raw: RawConfig, opts: ResolveOptions): { config: UnkeyedConfig; key: KeySpec } {
  const env = opts.env ?? process.env;
  const name = raw.name ?? defaultAgentName(opts.hostname);
  const fileDir = opts.configFile === null ? null : path.dirname(opts.configFile);
  // Windows: %NAME% in paths is expanded (winpath.ts); odd forms are refused in checks.ts.
  const win = (opts.platform ?? process.platform) === 'win32';
  const dataDir = raw.dataDir !== undefined && fileDir !== null ? resolvePath(fileDir, win ? expandWindowsEnv(raw.dataDir, env) : raw.dataDir) : defaultDataDir(env);
  // Relative paths: against the config file's folder; with built-in defaults, against dataDir.
  const base = fileDir ?? dataDir;
  const abs = (p: string): string => resolvePath(base, win ? expandWindowsEnv(p, env) : p);

  const peers: PeerConfig[] = (raw.peers ?? []).map((p) => ({
    name: p.name,
    host: p.host,
    port: p.port ?? DEFAULTS.peer.port,
    protocol: p.protocol ?? DEFAULTS.peer.protocol,
    maxBytesPerSecond: p.maxBytesPerSecond ?? DEFAULTS.peer.maxBytesPerSecond,
  }));
  const protocolOf = (peer: string): PeerProtocol =>
    peers.find((p) => p.name === peer)?.protocol ?? 'tdxfer';

  const inboxes: InboxConfig[] = (raw.inboxes ?? []).map((i) => {
    const inboxPath = abs(i.path);
    const inbox: InboxConfig = {
      name: i.name,
      path: inboxPath,
      onCollision: i.onCollision ?? DEFAULTS.inbox.onCollision,
      heldMaxSeconds: i.heldMaxSeconds ?? DEFAULTS.inbox.heldMaxSeconds,
      staging: i.staging !== undefined ? abs(i.staging) : defaultStaging(inboxPath),
    };
    if (i.networkDrive === true) inbox.networkDrive = true;
    if (i.onReceive) {
      inbox.onReceive = { command: [...i.onReceive.command], timeoutMs: i.onReceive.timeoutMs ?? DEFAULTS.inbox.onReceiveTimeoutMs };
    }
    return inbox;
  });

  const outboxes: OutboxConfig[] = (raw.outboxes ?? []).map((o) => ({
    path: abs(o.path),
    to: o.to.map((r): RouteConfig => {
      const route: RouteConfig = { peer: r.peer };
      if (r.inbox !== undefined) route.inbox = r.inbox;
      // The TOX receiver cannot create folders, so legacy routes flatten unless told otherwise.
      route.flatten = r.flatten ?? flattensByDefault(protocolOf(r.peer));
      return route;
    }),
    include: [...(o.include ?? DEFAULTS.outbox.include)],
    exclude: [...(o.exclude ?? DEFAULTS.outbox.exclude)],
    after: o.after ?? DEFAULTS.outbox.after,
    settleMs: o.settleMs ?? DEFAULTS.outbox.settleMs,
    ...(o.followSymlinks === true ? { followSymlinks: true } : {}),
    ...(o.networkDrive === true ? { networkDrive: true } : {}),
  }));

  if (opts.configFile === null) {
    // Zero-config: the agent is its own peer, so a file dropped into the outbox lands in the inbox.
    const inboxPath = path.join(dataDir, 'inbox');
    inboxes.push({ name: ZERO_CONFIG_INBOX, path: inboxPath, onCollision: DEFAULTS.inbox.onCollision, heldMaxSeconds: DEFAULTS.inbox.heldMaxSeconds, staging: defaultStaging(inboxPath) });
    outboxes.push({
      path: path.join(dataDir, 'outbox'),
      to: [{ peer: name, inbox: ZERO_CONFIG_INBOX, flatten: false }],
      include: [...DEFAULTS.outbox.include],
      exclude: [...DEFAULTS.outbox.exclude],
      after: DEFAULTS.outbox.after,
      settleMs: DEFAULTS.outbox.settleMs,
    });
  }

  const sec = raw.security ?? {};
  const key: KeySpec =
    sec.key !== undefined
      ? { kind: 'inline', value: sec.key }
      : sec.keyFile !== undefined
        ? { kind: 'file', path: abs(sec.keyFile), explicit: true }
        : { kind: 'file', path: defaultKeyFile(dataDir), explicit: false };

  const legacyListen = raw.legacy?.listen;
  const logFile = raw.log?.file;
  const config: UnkeyedConfig = {
    configFile: opts.configFile,
    name,
    listen: { host: raw.listen?.host ?? DEFAULTS.listen.host, port: raw.listen?.port ?? DEFAULTS.listen.port },
    dataDir,
    inboxes,
    outboxes,
    peers,
    discovery: {
      enabled: raw.discovery?.enabled ?? DEFAULTS.discovery.enabled,
      interfaces: [...(raw.discovery?.interfaces ?? DEFAULTS.discovery.interfaces)],
    },
    security: { encrypt: sec.encrypt ?? DEFAULTS.security.encrypt, hashes: [...(sec.hashes ?? HASH_ALGS)] },
    legacy: {
      listen: legacyListen ? { host: legacyListen.host, port: legacyListen.port } : DEFAULTS.legacy.listen,
      inbox: raw.legacy?.inbox ?? DEFAULTS.legacy.inbox,
      allow: [...(raw.legacy?.allow ?? DEFAULTS.legacy.allow)],
      maxFileBytes: raw.legacy?.maxFileBytes ?? DEFAULTS.legacy.maxFileBytes,
    },
    status: {
      enabled: raw.status?.enabled ?? DEFAULTS.status.enabled,
      host: raw.status?.host ?? DEFAULTS.status.host,
      port: raw.status?.port ?? DEFAULTS.status.port,
      token: raw.status?.token ?? DEFAULTS.status.token,
    },
    osc: {
      targets: (raw.osc?.targets ?? DEFAULTS.osc.targets).map((t) => ({ host: t.host, port: t.port })),
      heartbeatSeconds: raw.osc?.heartbeatSeconds ?? DEFAULTS.osc.heartbeatSeconds,
      progress: raw.osc?.progress ?? DEFAULTS.osc.progress,
    },
    limits: withDefaults(DEFAULTS.limits, raw.limits),
    transfer: {
      ...withDefaults(DEFAULTS.transfer, raw.transfer),
      peerMaxBytesPerSecond: Object.fromEntries(Object.entries(raw.transfer?.peerMaxBytesPerSecond ?? {}).filter(([k]) => k !== '$comment')),
    },
    log: {
      level: raw.log?.level ?? DEFAULTS.log.level,
      file: logFile === undefined || logFile === null ? DEFAULTS.log.file : abs(logFile),
      maxSizeBytes: raw.log?.maxSizeBytes ?? DEFAULTS.log.maxSizeBytes,
      maxFiles: raw.log?.maxFiles ?? DEFAULTS.log.maxFiles,
    },
  };
  return { config, key };
}

/** Each field of `defaults`, taken from `given` when set there (other keys such as "$comment" are dropped). */
function withDefaults<T extends Record<string, number>>(defaults: T, given: Partial<Record<keyof T, number>> | undefined): T {
  const out = { ...defaults };
  for (const k of Object.keys(defaults) as Array<keyof T>) {
    const v = given?.[k];
    if (v !== undefined) out[k] = v as T[keyof T];
  }
  return out;
}
