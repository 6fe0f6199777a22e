/**
 * JSON Schema (draft 2020-12, as conf/ajv use it) of the config FILE: what users may write.
 * The resolved shape the agent runs on is `AgentConfig` (types.ts); defaults are applied
 * by resolve.ts, never through the schema (a `default` here would let ajv/conf mutate or
 * rewrite the user's data).
 *
 * Every object is closed (`additionalProperties: false`) so a typo is an error with a
 * did-you-mean hint, and every object may carry a `"$comment"` (string or list of
 * strings) because JSON has no comments. A node's `description` is the phrase error
 * messages use for "must be ..."; nodes without one are described from their structure
 * (messages.ts `describeSchema`).
 */

export type SchemaNode = Record<string, unknown>;

const comment: SchemaNode = {
  anyOf: [{ type: 'string' }, { type: 'array', items: { type: 'string' } }],
  description: 'a string or a list of strings (ignored: for notes)',
};

/** A closed object whose properties are `props`; `$comment` is always allowed. */
function obj(props: Record<string, SchemaNode>, required: string[] = []): SchemaNode {
  const node: SchemaNode = { type: 'object', additionalProperties: false, properties: { ...props, $comment: comment } };
  if (required.length > 0) node.required = required;
  return node;
}

const int = (minimum: number, maximum: number, description?: string): SchemaNode =>
  description ? { type: 'integer', minimum, maximum, description } : { type: 'integer', minimum, maximum };

/** Where the agent connects to: 1..65535. */
const port: SchemaNode = int(1, 65535);
/** Where the agent listens: 0 means "any free port" (tests). */
const listenPort: SchemaNode = int(0, 65535, 'an integer from 0 to 65535 (0 = any free port)');
const host: SchemaNode = { type: 'string', minLength: 1, description: 'a host name or IP address (non-empty string)' };
const path: SchemaNode = { type: 'string', minLength: 1, description: 'a path (non-empty string)' };
const nullablePath: SchemaNode = { type: ['string', 'null'], minLength: 1, description: 'a path (non-empty string) or null' };

/** Agent, peer and inbox names travel on the wire and appear in logs and URLs. */
export const NAME_PATTERN = '^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$';
const NAME_RULE = "1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit";
const name: SchemaNode = { type: 'string', pattern: NAME_PATTERN, description: `a name of ${NAME_RULE}` };
const globs: SchemaNode = {
  type: 'array',
  items: { type: 'string', minLength: 1, description: 'a glob pattern (non-empty string)' },
  description: 'a list of glob patterns, e.g. ["**/*.png"]',
};

export const MAX_SAFE_BYTES = Number.MAX_SAFE_INTEGER;
const bytes = (minimum: number): SchemaNode => int(minimum, MAX_SAFE_BYTES, `a whole number of bytes, at least ${minimum}`);

const route = obj(
  {
    peer: {
      type: 'string',
      anyOf: [{ pattern: NAME_PATTERN }, { const: '*' }],
      description: `a peer name (${NAME_RULE}) or "*" for every discovered peer`,
    },
    inbox: name,
    flatten: { type: 'boolean' },
  },
  ['peer'],
);

const inbox = obj(
  {
    name,
    path,
    onCollision: { enum: ['overwrite', 'rename', 'skip'] },
    heldMaxSeconds: int(0, 31_536_000),
    staging: path,
    onReceive: obj(
      {
        command: {
          type: 'array',
          minItems: 1,
          items: { type: 'string', minLength: 1 },
          description: 'a non-empty list of strings: the program and its arguments, e.g. ["/usr/bin/x", "arg"] (no shell)',
        },
        timeoutMs: int(1, 86_400_000),
      },
      ['command'],
    ),
  },
  ['name', 'path'],
);

const outbox = obj(
  {
    path,
    to: {
      type: 'array',
      minItems: 1,
      items: route,
      description: 'a non-empty list of destinations like { "peer": "playback-1", "inbox": "renders" }',
    },
    include: globs,
    exclude: globs,
    after: { enum: ['archive', 'delete', 'keep'] },
    settleMs: int(0, 600_000),
    followSymlinks: { type: 'boolean' },
  },
  ['path', 'to'],
);

/** Bandwidth limits: bytes per second, 0 = unlimited. */
const rate: SchemaNode = int(0, MAX_SAFE_BYTES, 'a whole number of bytes per second, 0 for unlimited (e.g. 20000000 for 20 MB/s = 160 Mbit/s)');

const peer = obj(
  {
    name,
    host,
    port,
    protocol: { enum: ['tdxfer', 'legacy'] },
    maxBytesPerSecond: rate,
  },
  ['name', 'host'],
);

const hostPort = (p: SchemaNode): SchemaNode => obj({ host, port: p }, ['host', 'port']);

/** Top-level properties (conf's `schema` option). */
export const topLevelProperties: Record<string, SchemaNode> = {
  $schema: { type: 'string', description: 'a string (the URL or path of a JSON schema, for editors)' },
  $comment: comment,
  version: int(1, 1_000_000, 'a positive integer (the config version; default: the current one, see config/migrate.ts)'),
  name,
  listen: obj({ host, port: listenPort }),
  dataDir: path,
  inboxes: { type: 'array', items: inbox, description: 'a list of inboxes like { "name": "renders", "path": "/show/inbox" }' },
  outboxes: { type: 'array', items: outbox, description: 'a list of outboxes like { "path": "/show/outbox", "to": [...] }' },
  peers: { type: 'array', items: peer, description: 'a list of peers like { "name": "playback-1", "host": "10.0.0.12" }' },
  discovery: obj({
    enabled: { type: 'boolean' },
    interfaces: { type: 'array', items: { type: 'string', minLength: 1 }, description: 'a list of interface names or IPv4 addresses' },
  }),
  security: obj({
    key: { type: 'string', minLength: 1, description: 'the base64 text of 32 random bytes (make one with `tdxfer init` or `openssl rand -base64 32`)' },
    keyFile: path,
    encrypt: { type: 'boolean' },
    hashes: {
      type: 'array',
      minItems: 1,
      uniqueItems: true,
      items: { enum: ['xxh3-128', 'sha256'], description: '"xxh3-128" or "sha256"' },
      description: 'a list of file hash names, most preferred first, that includes "sha256": ["xxh3-128", "sha256"] (default) or ["sha256"]',
    },
  }),
  legacy: obj({
    listen: { ...hostPort(listenPort), type: ['object', 'null'], description: 'an object { "host": ..., "port": ... } or null' },
    inbox: { type: ['string', 'null'], pattern: NAME_PATTERN, description: 'the name of an inbox of this agent, or null' },
    allow: { type: 'array', items: { type: 'string', minLength: 1 }, description: 'a list of IP addresses or CIDRs, e.g. ["10.0.0.0/24"]' },
    maxFileBytes: bytes(1),
  }),
  status: obj({
    enabled: { type: 'boolean' },
    host,
    port: listenPort,
    token: { type: ['string', 'null'], minLength: 16, description: 'a string of at least 16 characters (e.g. `openssl rand -hex 16`) or null' },
  }),
  osc: obj({
    targets: { type: 'array', items: hostPort(port), description: 'a list of { "host": ..., "port": ... } targets' },
    heartbeatSeconds: { type: 'number', minimum: 0, maximum: 3600, description: 'a number of seconds from 0 to 3600 (0 = no heartbeat)' },
    progress: { type: 'boolean' },
  }),
  limits: obj({
    maxFileBytes: bytes(1),
    maxConnections: int(1, 65535),
    maxConnectionsPerPeer: int(1, 65535),
    idleTimeoutMs: int(100, 86_400_000),
    handshakeTimeoutMs: int(100, 3_600_000),
    reserveBytes: bytes(0),
    eagerMaxBytes: int(0, 16 * 1024 * 1024),
    maxIncomingBytesPerSecond: rate,
  }),
  transfer: obj({
    window: int(1, 1024),
    connections: int(1, 16),
    retryInitialMs: int(1, 3_600_000),
    retryMaxMs: int(1, 86_400_000),
    chunkBytes: int(4096, 1024 * 1024), // a DATA frame carries at most 1 MiB (PROTOCOL.md)
    maxBytesPerSecond: rate,
    peerMaxBytesPerSecond: {
      type: 'object',
      propertyNames: { pattern: NAME_PATTERN },
      additionalProperties: rate,
      description: 'an object of peer names to bytes per second, e.g. { "playback-1": 20000000 } (for discovered peers)',
    },
  }),
  log: obj({
    level: { enum: ['error', 'warn', 'info', 'debug'] },
    file: nullablePath,
    // Rotation of log.file: at most maxFiles files of about maxSizeBytes each (issue #20).
    maxSizeBytes: bytes(64 * 1024),
    maxFiles: int(1, 1000),
  }),
};

/** Everything but `properties` of the root (conf's `rootSchema` option). */
export const rootSchema: SchemaNode = { type: 'object', additionalProperties: false };

/** The whole schema as one document (what conf compiles from the two options above). */
export const configSchema: SchemaNode = { ...rootSchema, properties: topLevelProperties };

/** The config file as users write it (every field optional; validated by `configSchema`). */
export interface RawRoute {
  peer: string;
  inbox?: string;
  flatten?: boolean;
}
export interface RawInbox {
  name: string;
  path: string;
  onCollision?: 'overwrite' | 'rename' | 'skip';
  heldMaxSeconds?: number;
  staging?: string;
  onReceive?: { command: string[]; timeoutMs?: number };
}
export interface RawOutbox {
  path: string;
  to: RawRoute[];
  include?: string[];
  exclude?: string[];
  after?: 'archive' | 'delete' | 'keep';
  settleMs?: number;
  followSymlinks?: boolean;
}
export interface RawPeer {
  name: string;
  host: string;
  port?: number;
  protocol?: 'tdxfer' | 'legacy';
  maxBytesPerSecond?: number;
}
export interface RawConfig {
  /** Config version (config/migrate.ts); absent = current. */
  version?: number;
  name?: string;
  listen?: { host?: string; port?: number };
  dataDir?: string;
  inboxes?: RawInbox[];
  outboxes?: RawOutbox[];
  peers?: RawPeer[];
  discovery?: { enabled?: boolean; interfaces?: string[] };
  security?: { key?: string; keyFile?: string; encrypt?: boolean; hashes?: Array<'xxh3-128' | 'sha256'> };
  legacy?: { listen?: { host: string; port: number } | null; inbox?: string | null; allow?: string[]; maxFileBytes?: number };
  status?: { enabled?: boolean; host?: string; port?: number; token?: string | null };
  osc?: { targets?: Array<{ host: string; port: number }>; heartbeatSeconds?: number; progress?: boolean };
  limits?: Partial<Record<'maxFileBytes' | 'maxConnections' | 'maxConnectionsPerPeer' | 'idleTimeoutMs' | 'handshakeTimeoutMs' | 'reserveBytes' | 'eagerMaxBytes' | 'maxIncomingBytesPerSecond', number>>;
  transfer?: Partial<Record<'window' | 'connections' | 'retryInitialMs' | 'retryMaxMs' | 'chunkBytes' | 'maxBytesPerSecond', number>> & { peerMaxBytesPerSecond?: Record<string, number> };
  log?: { level?: 'error' | 'warn' | 'info' | 'debug'; file?: string | null; maxSizeBytes?: number; maxFiles?: number };
}
