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
 *
 * One shape, written once: the schema is built with small typed helpers (`Node<T>` carries
 * the TypeScript type of the values a node accepts, at compile time only), and `RawConfig`
 * is derived from it (`Infer`). A field added here is in the types at once; types.ts checks
 * at compile time that the resolved config (`AgentConfig`) has a counterpart for every field.
 */

export type SchemaNode = Record<string, unknown>;

declare const VALUE: unique symbol;
/** A schema node and, for the compiler only, the type of the values it accepts. */
export type Node<T> = SchemaNode & { readonly [VALUE]?: T };
/** The type of the values a node accepts. */
export type Infer<N> = N extends Node<infer T> ? T : never;

/** A node accepting values of type T (the caller vouches that the schema says T). */
const node = <T>(n: SchemaNode): Node<T> => n as Node<T>;
/** One of `values` (JSON Schema `enum`). */
const oneOf = <const V extends readonly string[]>(values: V, description?: string): Node<V[number]> =>
  node(description === undefined ? { enum: values } : { enum: values, description });
const bool = (): Node<boolean> => node({ type: 'boolean' });
const arrayOf = <I extends Node<unknown>>(items: I, { description, ...limits }: SchemaNode & { description: string }): Node<Array<Infer<I>>> =>
  node({ type: 'array', ...limits, items, description });

const comment = node<string | string[]>({
  anyOf: [{ type: 'string' }, { type: 'array', items: { type: 'string' } }],
  description: 'a string or a list of strings (ignored: for notes)',
});

type Props = Record<string, Node<unknown>>;
type Flat<T> = { [K in keyof T]: T[K] };
/** The object a closed node with `props` accepts: `required` keys present, the rest optional. */
type ObjectOf<P extends Props, R extends keyof P> = Flat<
  { [K in R]: Infer<P[K]> } & { [K in Exclude<keyof P, R>]?: Infer<P[K]> } & { $comment?: string | string[] }
>;

/** A closed object whose properties are `props`; `$comment` is always allowed. */
function obj<P extends Props, R extends keyof P & string = never>(props: P, required: readonly R[] = []): Node<ObjectOf<P, R>> {
  const n: SchemaNode = { type: 'object', additionalProperties: false, properties: { ...props, $comment: comment } };
  if (required.length > 0) n.required = required;
  return node(n);
}

const int = (minimum: number, maximum: number, description?: string): Node<number> =>
  node(description ? { type: 'integer', minimum, maximum, description } : { type: 'integer', minimum, maximum });

/** Where the agent connects to: 1..65535. */
const port = int(1, 65535);
/** Where the agent listens: 0 means "any free port" (tests). */
const listenPort = int(0, 65535, 'an integer from 0 to 65535 (0 = any free port)');
const host = node<string>({ type: 'string', minLength: 1, description: 'a host name or IP address (non-empty string)' });
const path = node<string>({ type: 'string', minLength: 1, description: 'a path (non-empty string)' });
const nullablePath = node<string | null>({ type: ['string', 'null'], minLength: 1, description: 'a path (non-empty string) or null' });

/** Agent, peer and inbox names travel on the wire and appear in logs and URLs. */
export const NAME_PATTERN = '^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$';
const NAME_RULE = "1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit";
const name = node<string>({ type: 'string', pattern: NAME_PATTERN, description: `a name of ${NAME_RULE}` });
const globs = arrayOf(node<string>({ type: 'string', minLength: 1, description: 'a glob pattern (non-empty string)' }), {
  description: 'a list of glob patterns, e.g. ["**/*.png"]',
});

export const MAX_SAFE_BYTES = Number.MAX_SAFE_INTEGER;
const bytes = (minimum: number): Node<number> => int(minimum, MAX_SAFE_BYTES, `a whole number of bytes, at least ${minimum}`);

const route = obj(
  {
    peer: node<string>({
      type: 'string',
      anyOf: [{ pattern: NAME_PATTERN }, { const: '*' }],
      description: `a peer name (${NAME_RULE}) or "*" for every discovered peer`,
    }),
    inbox: name,
    flatten: bool(),
  },
  ['peer'],
);

const inbox = obj(
  {
    name,
    path,
    onCollision: oneOf(['overwrite', 'rename', 'skip']),
    heldMaxSeconds: int(0, 31_536_000),
    staging: path,
    onReceive: obj(
      {
        command: arrayOf(node<string>({ type: 'string', minLength: 1 }), {
          minItems: 1,
          description: 'a non-empty list of strings: the program and its arguments, e.g. ["/usr/bin/x", "arg"] (no shell)',
        }),
        timeoutMs: int(1, 86_400_000),
      },
      ['command'],
    ),
    networkDrive: bool(),
  },
  ['name', 'path'],
);

const outbox = obj(
  {
    path,
    to: arrayOf(route, { minItems: 1, description: 'a non-empty list of destinations like { "peer": "playback-1", "inbox": "renders" }' }),
    include: globs,
    exclude: globs,
    after: oneOf(['archive', 'delete', 'keep']),
    settleMs: int(0, 600_000),
    followSymlinks: bool(),
    networkDrive: bool(),
  },
  ['path', 'to'],
);

/** Bandwidth limits: bytes per second, 0 = unlimited. */
const rate = int(0, MAX_SAFE_BYTES, 'a whole number of bytes per second, 0 for unlimited (e.g. 20000000 for 20 MB/s = 160 Mbit/s)');

const peer = obj(
  {
    name,
    host,
    port,
    protocol: oneOf(['tdxfer', 'legacy']),
    maxBytesPerSecond: rate,
  },
  ['name', 'host'],
);

const hostPort = (p: Node<number>) => obj({ host, port: p }, ['host', 'port']);
const nonEmptyString = node<string>({ type: 'string', minLength: 1 });

/** Top-level properties (conf's `schema` option). */
export const topLevelProperties = {
  $schema: node<string>({ type: 'string', description: 'a string (the URL or path of a JSON schema, for editors)' }),
  $comment: comment,
  version: int(1, 1_000_000, 'a positive integer (the config version; default: the current one, see config/migrate.ts)'),
  name,
  listen: obj({ host, port: listenPort }),
  dataDir: path,
  inboxes: arrayOf(inbox, { description: 'a list of inboxes like { "name": "renders", "path": "/show/inbox" }' }),
  outboxes: arrayOf(outbox, { description: 'a list of outboxes like { "path": "/show/outbox", "to": [...] }' }),
  peers: arrayOf(peer, { description: 'a list of peers like { "name": "playback-1", "host": "10.0.0.12" }' }),
  discovery: obj({
    enabled: bool(),
    interfaces: arrayOf(nonEmptyString, { description: 'a list of interface names or IPv4 addresses' }),
  }),
  security: obj({
    key: node<string>({ type: 'string', minLength: 1, description: 'the base64 text of 32 random bytes (make one with `tdxfer init` or `openssl rand -base64 32`)' }),
    keyFile: path,
    encrypt: bool(),
    hashes: arrayOf(oneOf(['xxh3-128', 'sha256'], '"xxh3-128" or "sha256"'), {
      minItems: 1,
      uniqueItems: true,
      description: 'a list of file hash names, most preferred first, that includes "sha256": ["xxh3-128", "sha256"] (default) or ["sha256"]',
    }),
  }),
  legacy: obj({
    listen: node<Infer<ReturnType<typeof hostPort>> | null>({ ...hostPort(listenPort), type: ['object', 'null'], description: 'an object { "host": ..., "port": ... } or null' }),
    inbox: node<string | null>({ type: ['string', 'null'], pattern: NAME_PATTERN, description: 'the name of an inbox of this agent, or null' }),
    allow: arrayOf(nonEmptyString, { description: 'a list of IP addresses or CIDRs, e.g. ["10.0.0.0/24"]' }),
    maxFileBytes: bytes(1),
  }),
  status: obj({
    enabled: bool(),
    host,
    port: listenPort,
    token: node<string | null>({ type: ['string', 'null'], minLength: 16, description: 'a string of at least 16 characters (e.g. `openssl rand -hex 16`) or null' }),
  }),
  osc: obj({
    targets: arrayOf(hostPort(port), { description: 'a list of { "host": ..., "port": ... } targets' }),
    heartbeatSeconds: node<number>({ type: 'number', minimum: 0, maximum: 3600, description: 'a number of seconds from 0 to 3600 (0 = no heartbeat)' }),
    progress: bool(),
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
    // Agent-wide sending memory (issue #19): the same for 1 destination or 50.
    readBufferBytes: int(16 * 1024, 1024 * 1024 * 1024, 'a whole number of bytes from 16384 to 1073741824 (1 GiB)'),
    eagerBufferBytes: int(0, 1024 * 1024 * 1024, 'a whole number of bytes from 0 to 1073741824 (1 GiB)'),
    fanoutLagBytes: int(8 * 1024, 512 * 1024 * 1024, 'a whole number of bytes from 8192 to 536870912 (512 MiB)'),
    peerMaxBytesPerSecond: node<Record<string, number>>({
      type: 'object',
      propertyNames: { pattern: NAME_PATTERN },
      additionalProperties: rate,
      description: 'an object of peer names to bytes per second, e.g. { "playback-1": 20000000 } (for discovered peers)',
    }),
  }),
  log: obj({
    level: oneOf(['error', 'warn', 'info', 'debug']),
    file: nullablePath,
    // Rotation of log.file: at most maxFiles files of about maxSizeBytes each (issue #20).
    maxSizeBytes: bytes(64 * 1024),
    maxFiles: int(1, 1000),
  }),
} satisfies Props;

/** Everything but `properties` of the root (conf's `rootSchema` option). */
export const rootSchema: SchemaNode = { type: 'object', additionalProperties: false };

/** The whole schema as one document (what conf compiles from the two options above). */
export const configSchema: SchemaNode = { ...rootSchema, properties: topLevelProperties };

/** The config file as users write it (every field optional; validated by `configSchema`). */
export type RawConfig = Flat<{ [K in keyof typeof topLevelProperties]?: Infer<(typeof topLevelProperties)[K]> }>;
export type RawInbox = Infer<typeof inbox>;
export type RawOutbox = Infer<typeof outbox>;
export type RawRoute = Infer<typeof route>;
export type RawPeer = Infer<typeof peer>;
