/**
 * The resolved configuration the agent runs on: every default applied, every path
 * absolute. The JSON field names are the public contract (README "Config reference");
 * add fields freely, never rename.
 *
 * The file's shape is schema.ts (RawConfig is derived from it); the value sets below come
 * from there too, and the checks at the end of this file make tsc name any field of the
 * schema that has no resolved counterpart here (and any field here the file cannot set).
 */
import type { HashAlg } from '../hash.js';
import type { RawConfig, RawInbox, RawOutbox, RawPeer, RawRoute } from './schema.js';

export type CollisionPolicy = NonNullable<RawInbox['onCollision']>;
export type AfterAction = NonNullable<RawOutbox['after']>;
export type PeerProtocol = NonNullable<RawPeer['protocol']>;
export type LogLevel = NonNullable<NonNullable<RawConfig['log']>['level']>;

export interface InboxConfig {
  name: string;
  path: string;
  onCollision: CollisionPolicy;
  /** Seconds a new version waits for a file another program holds open before landing as `name (1).ext`; 0 = forever. */
  heldMaxSeconds?: number | undefined;
  /** Staging folder for partial files: absolute path; by default a sibling of the inbox (`<parent>/.<inbox-basename>.tdxfer-staging`). */
  staging: string;
  /** Optional command run (no shell) after each file lands: argv array. */
  onReceive?: { command: string[]; timeoutMs: number } | undefined;
  /**
   * The inbox or its staging folder is on a network drive the agent cannot recognise by
   * itself (a mapped drive letter on Windows): every file call goes through Node's thread
   * pool, never synchronously (quickfs.ts), so a share that hangs cannot stall the agent.
   */
  networkDrive?: boolean;
}

export interface RouteConfig {
  /** Peer name, or "*" for every discovered peer that has `inbox`. */
  peer: string;
  /** Inbox name at the peer; optional for legacy peers (single target folder). */
  inbox?: string | undefined;
  /** Legacy routes: send the base name only (default true; the TOX receiver cannot create folders). */
  flatten?: boolean | undefined;
}

export interface OutboxConfig {
  path: string;
  to: RouteConfig[];
  include: string[];
  exclude: string[];
  after: AfterAction;
  settleMs: number;
  /**
   * Follow symlinks found in the outbox (default false: links are skipped with a warning,
   * so nothing outside the outbox's real path is read, moved or deleted). When true,
   * after-actions still act on the link, never on its target.
   */
  followSymlinks?: boolean;
  /** The outbox is on a network drive the agent cannot recognise by itself: see InboxConfig.networkDrive. */
  networkDrive?: boolean;
}

export interface PeerConfig {
  name: string;
  host: string;
  port: number;
  protocol: PeerProtocol;
  /** Outgoing bandwidth cap for this peer, bytes/s (0 or absent = none; the agent-wide cap still applies). */
  maxBytesPerSecond?: number | undefined;
}

export interface DiscoveryConfig {
  enabled: boolean;
  /** Restrict announcing/browsing to these NICs (interface names or IPv4 addresses). Empty: all. */
  interfaces: string[];
}

export interface SecurityConfig {
  /** 32-byte installation key (decoded). */
  key: Buffer;
  /** Where the key came from, for logs: "config", a key file path, or "generated:<path>". */
  keySource: string;
  /** TLS with the key as pre-shared key. false = plain TCP (still authenticated), loudly logged. */
  encrypt: boolean;
  /**
   * End-to-end file hashes this agent offers (as sender) and accepts (as receiver), most
   * preferred first; always includes "sha256". Absent = the default ["xxh3-128", "sha256"].
   */
  hashes?: HashAlg[];
}

export interface LegacyConfig {
  listen: { host: string; port: number } | null;
  inbox: string | null;
  /** Source address allow-list (IPs or CIDRs). Empty = allow all. */
  allow: string[];
  /** Max decoded file size accepted from legacy senders, bytes. */
  maxFileBytes: number;
}

export interface StatusConfig {
  enabled: boolean;
  host: string;
  port: number;
  token: string | null;
}

export interface OscConfig {
  targets: Array<{ host: string; port: number }>;
  heartbeatSeconds: number;
  progress: boolean;
}

export interface LimitsConfig {
  /** Largest file accepted or sent, bytes. */
  maxFileBytes: number;
  /** Simultaneous inbound connections overall / per source address. */
  maxConnections: number;
  maxConnectionsPerPeer: number;
  /** A connection with no traffic for this long is dropped (slow-loris, dead links). */
  idleTimeoutMs: number;
  /** Handshake must complete within this. */
  handshakeTimeoutMs: number;
  /** Free space an inbox's volume must keep beyond an incoming file, bytes. */
  reserveBytes: number;
  /**
   * Files up to this size may be sent eagerly to this agent (no wait for ACCEPT,
   * PROTOCOL.md 6.4); announced to senders in WELCOME. 0 turns it off.
   */
  eagerMaxBytes: number;
  /** Total incoming rate this agent reads at, bytes/s, paced by reading less (0 = unlimited). */
  maxIncomingBytesPerSecond: number;
}

export interface TransferConfig {
  /** Files in flight (offered but not yet acknowledged) per destination. */
  window: number;
  /** TCP connections per destination (files stream in parallel across them). */
  connections: number;
  /** Retry backoff for unreachable peers / failed attempts. */
  retryInitialMs: number;
  retryMaxMs: number;
  /** Read/write buffer size for file streams, bytes. */
  chunkBytes: number;
  /** Total outgoing rate of this agent across all peers and connections, bytes/s (0 = unlimited). */
  maxBytesPerSecond: number;
  /** Read buffers of streamed files, agent-wide, for every destination together (transfer/sources.ts). */
  readBufferBytes: number;
  /** Small (eager) files held whole for sending, agent-wide, for every destination together. */
  eagerBufferBytes: number;
  /**
   * How far a destination may fall behind the fastest one sending the same file before it
   * leaves the shared read and reads on its own (at most half of readBufferBytes).
   */
  fanoutLagBytes: number;
  /** Outgoing caps by peer name (for discovered peers; static ones may use peers[].maxBytesPerSecond). */
  peerMaxBytesPerSecond: Record<string, number>;
}

export interface AgentConfig {
  /** Path of the config file this came from, or null for built-in defaults. */
  configFile: string | null;
  name: string;
  listen: { host: string; port: number };
  dataDir: string;
  inboxes: InboxConfig[];
  outboxes: OutboxConfig[];
  peers: PeerConfig[];
  discovery: DiscoveryConfig;
  security: SecurityConfig;
  legacy: LegacyConfig;
  status: StatusConfig;
  osc: OscConfig;
  limits: LimitsConfig;
  transfer: TransferConfig;
  /** `file` rotates by size: at most `maxFiles` files of about `maxSizeBytes` each. */
  log: { level: LogLevel; file: string | null; maxSizeBytes: number; maxFiles: number };
}

// --- compile-time: the file's fields (schema.ts) and the resolved ones agree -------------------
// A field added to the schema but not here (or the reverse) fails tsc with
// `Type '"theField"' does not satisfy the constraint 'never'` on the line of its section.

/** Fields of a file object `Raw` with no counterpart in `Resolved` (`$comment` and `except` aside). */
export type Unresolved<Raw, Resolved, Except extends PropertyKey = never> = Exclude<keyof Raw, keyof Resolved | '$comment' | Except>;
/** Fields of `Resolved` that the file object `Raw` cannot set (`except` aside). */
export type Unwritable<Raw, Resolved, Except extends PropertyKey = never> = Exclude<keyof Resolved, keyof Raw | Except>;
/** Compiles only when T is `never`. */
export type None<T extends never> = T;
/** The fields that differ, both directions at once (`never` when the two agree). */
export type Mismatch<Raw, Resolved, RawOnly extends PropertyKey = never, ResolvedOnly extends PropertyKey = never> =
  | Unresolved<Raw, Resolved, RawOnly>
  | Unwritable<Raw, Resolved, ResolvedOnly>;
type Section<K extends keyof RawConfig> = NonNullable<RawConfig[K]>;

export type ConfigShapeChecks = [
  // `$schema` is for editors, `version` is consumed by migrate.ts; `configFile` is where it came from.
  None<Mismatch<RawConfig, AgentConfig, '$schema' | 'version', 'configFile'>>,
  None<Mismatch<Section<'listen'>, AgentConfig['listen']>>,
  None<Mismatch<RawInbox, InboxConfig>>,
  None<Mismatch<NonNullable<RawInbox['onReceive']>, NonNullable<InboxConfig['onReceive']>>>,
  None<Mismatch<RawOutbox, OutboxConfig>>,
  None<Mismatch<RawRoute, RouteConfig>>,
  None<Mismatch<RawPeer, PeerConfig>>,
  None<Mismatch<Section<'discovery'>, DiscoveryConfig>>,
  // The key is written inline (`key`) or as a file (`keyFile`); resolved, it is the bytes and where they came from.
  None<Mismatch<Section<'security'>, SecurityConfig, 'keyFile', 'keySource'>>,
  None<Mismatch<Section<'legacy'>, LegacyConfig>>,
  None<Mismatch<Section<'status'>, StatusConfig>>,
  None<Mismatch<Section<'osc'>, OscConfig>>,
  None<Mismatch<Section<'limits'>, LimitsConfig>>,
  None<Mismatch<Section<'transfer'>, TransferConfig>>,
  None<Mismatch<Section<'log'>, AgentConfig['log']>>,
];

// The check itself is checked: a field missing on one side must not compile.
// @ts-expect-error `extra` has no resolved counterpart
export type ConfigShapeSelfCheck = None<Mismatch<{ kept: 1; extra: 2 }, { kept: 1 }>>;
