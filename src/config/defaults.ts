/**
 * Every built-in default in one place. config/default.json writes these out for users;
 * test/config/defaults.test.ts proves the two agree.
 */
import os from 'node:os';
import path from 'node:path';
import envPaths from 'env-paths';
import type {
  AfterAction,
  CollisionPolicy,
  DiscoveryConfig,
  LegacyConfig,
  LimitsConfig,
  OscConfig,
  PeerProtocol,
  StatusConfig,
  TransferConfig,
} from './types.js';

export const GiB = 1024 ** 3;
export const MiB = 1024 ** 2;

export const DEFAULT_PORT = 7770;
export const DEFAULT_STATUS_PORT = 7771;
/** Name of the installation key file inside dataDir when the config names no key. */
export const KEY_FILE_NAME = 'key';
/** Zero-config (no config file at all): the inbox the agent delivers its own outbox to. */
export const ZERO_CONFIG_INBOX = 'default';

export const DEFAULTS = {
  listen: { host: '0.0.0.0', port: DEFAULT_PORT },
  inbox: { onCollision: 'overwrite' as CollisionPolicy, onReceiveTimeoutMs: 30_000, heldMaxSeconds: 600 },
  outbox: { include: [] as string[], exclude: [] as string[], after: 'archive' as AfterAction, settleMs: 1000 },
  peer: { port: DEFAULT_PORT, protocol: 'tdxfer' as PeerProtocol, maxBytesPerSecond: 0 },
  discovery: { enabled: false, interfaces: [] } satisfies DiscoveryConfig,
  security: { encrypt: true },
  legacy: { listen: null, inbox: null, allow: [], maxFileBytes: 64 * GiB } satisfies LegacyConfig,
  status: { enabled: true, host: '127.0.0.1', port: DEFAULT_STATUS_PORT, token: null } satisfies StatusConfig,
  osc: { targets: [], heartbeatSeconds: 5, progress: false } satisfies OscConfig,
  limits: {
    maxFileBytes: 2 ** 40,
    maxConnections: 64,
    maxConnectionsPerPeer: 8,
    idleTimeoutMs: 30_000,
    handshakeTimeoutMs: 10_000,
    reserveBytes: 64 * MiB,
    eagerMaxBytes: 1 * MiB,
    maxIncomingBytesPerSecond: 0,
  } satisfies LimitsConfig,
  transfer: { window: 32, connections: 1, retryInitialMs: 500, retryMaxMs: 30_000, chunkBytes: 1 * MiB, maxBytesPerSecond: 0, readBufferBytes: 32 * MiB, eagerBufferBytes: 8 * MiB, fanoutLagBytes: 16 * MiB } satisfies Omit<TransferConfig, 'peerMaxBytesPerSecond'>,
  log: { level: 'info' as const, file: null as string | null, maxSizeBytes: 10 * MiB, maxFiles: 10 },
} as const;

/**
 * This machine's host name made into a valid agent name (see schema NAME_PATTERN):
 * other characters become '-', at most 64 characters.
 */
export function defaultAgentName(hostname: string = os.hostname()): string {
  const cleaned = hostname
    .replace(/[^A-Za-z0-9._-]/g, '-')
    .replace(/^[^A-Za-z0-9]+/, '')
    .slice(0, 64);
  return cleaned.length > 0 ? cleaned : 'tdxfer';
}

/** `TDXFER_DATA_DIR` (relative to the working directory), else the platform's per-user data folder. */
export function defaultDataDir(env: NodeJS.ProcessEnv = process.env): string {
  const fromEnv = env.TDXFER_DATA_DIR;
  if (fromEnv !== undefined && fromEnv.trim() !== '') return path.resolve(fromEnv);
  return envPaths('tdxfer', { suffix: '' }).data;
}

/**
 * Staging folder of an inbox: a hidden sibling, so it is on the same volume (atomic
 * rename) but never inside the inbox that TouchDesigner reads.
 */
export function defaultStaging(inboxPath: string): string {
  return path.join(path.dirname(inboxPath), `.${path.basename(inboxPath)}.tdxfer-staging`);
}

export function defaultKeyFile(dataDir: string): string {
  return path.join(dataDir, KEY_FILE_NAME);
}
