/**
 * The receiving side's parts, built from the config for the agent (agent.ts): inboxes,
 * the transfer listener (TLS-PSK or plain TCP), the legacy TOX listener, and the
 * outbox folders' checks. Each gets its logger and callbacks from the agent.
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import type { AgentConfig } from '../config/types.js';
import type { Logger } from '../log.js';
import { TdxError, describeError } from '../errors.js';
import { folderProblem, mkdirp } from '../fsutil.js';
import { Inbox } from '../inbox/inbox.js';
import { TransportServer } from '../transport/server.js';
import { LegacyListener } from '../legacy/server.js';
import { formatRate } from '../limits/rate.js';
import type { LimitsSnapshot } from '../limits/pacer.js';
import type { ReceivedInfo } from '../types.js';
import type { IncomingBoard } from './incoming.js';

type Connection = Parameters<ConstructorParameters<typeof TransportServer>[1]>[0];

function safeName(name: string): string {
  return name.replace(/[^A-Za-z0-9_.-]/g, '_').slice(0, 100) || '_';
}

/** Opens every configured inbox (staging folder, state, partials to resume). */
export async function openInboxes(cfg: AgentConfig, log: Logger, into: Map<string, Inbox>): Promise<void> {
  for (const ic of cfg.inboxes) {
    const inbox = await Inbox.open(ic, {
      log: log.child({ component: 'inbox', inbox: ic.name }),
      stateDir: path.join(cfg.dataDir, 'state', 'inboxes', safeName(ic.name)),
      maxFileBytes: cfg.limits.maxFileBytes,
      reserveBytes: cfg.limits.reserveBytes,
    });
    into.set(ic.name, inbox);
    log.info(`inbox "${ic.name}" ready`, { path: inbox.path, staging: inbox.stagingDir, onCollision: ic.onCollision });
  }
}

/** The transfer listener, listening; `accept` gets every authenticated connection. */
export async function listenForTransfers(cfg: AgentConfig, log: Logger, accept: (conn: Connection) => void): Promise<{ server: TransportServer; address: { host: string; port: number } }> {
  const server = new TransportServer(
    {
      host: cfg.listen.host,
      port: cfg.listen.port,
      key: cfg.security.key,
      encrypt: cfg.security.encrypt,
      maxConnections: cfg.limits.maxConnections,
      maxConnectionsPerPeer: cfg.limits.maxConnectionsPerPeer,
      handshakeTimeoutMs: cfg.limits.handshakeTimeoutMs,
      log: log.child({ component: 'listener' }),
    },
    accept,
  );
  let address;
  try {
    address = await server.listen();
  } catch (err) {
    throw new TdxError('LISTEN_FAILED', `cannot listen on ${cfg.listen.host}:${cfg.listen.port} (listen): ${describeError(err)}; is another agent running? change "listen.port"`, { cause: err });
  }
  log.info(`listening for transfers on ${address.host}:${address.port}${cfg.security.encrypt ? ' (TLS, installation key)' : ' (plain TCP)'}`);
  return { server, address };
}

/** Logs the configured bandwidth limits, if any. */
export function logLimits(l: LimitsSnapshot, log: Logger): void {
  if (l.outgoing.maxBytesPerSecond > 0 || l.incoming.maxBytesPerSecond > 0 || l.peers.length > 0) {
    const peers = l.peers.map((p) => `${p.name} ${formatRate(p.maxBytesPerSecond)}`).join(', ');
    log.info(`bandwidth limits: outgoing ${formatRate(l.outgoing.maxBytesPerSecond)}, incoming ${formatRate(l.incoming.maxBytesPerSecond)}${peers ? `; per peer: ${peers}` : ''}`);
  }
}

/** The legacy TOX listener when `legacy.listen` is set (started), else null. */
export async function startLegacyListener(
  cfg: AgentConfig,
  inboxes: ReadonlyMap<string, Inbox>,
  deps: { log: Logger; onReceived: (info: ReceivedInfo, markAnnounced?: () => Promise<void>) => void; incoming: IncomingBoard; now: () => number },
): Promise<LegacyListener | null> {
  if (!cfg.legacy.listen) return null;
  const inbox = inboxes.get(cfg.legacy.inbox ?? '');
  if (!inbox) throw new TdxError('CONFIG_INVALID', `legacy.inbox "${cfg.legacy.inbox}" is not one of this agent's inboxes`);
  const legacy = new LegacyListener({
    host: cfg.legacy.listen.host,
    port: cfg.legacy.listen.port,
    inbox,
    allow: cfg.legacy.allow,
    maxFileBytes: Math.min(cfg.legacy.maxFileBytes, cfg.limits.maxFileBytes),
    log: deps.log.child({ component: 'legacy' }),
    idleTimeoutMs: cfg.limits.idleTimeoutMs,
    maxConnections: cfg.limits.maxConnections,
    onReceived: deps.onReceived,
    incoming: deps.incoming,
    now: deps.now,
  });
  const a = await legacy.start();
  deps.log.warn(`legacy TOX listener on ${a.host}:${a.port} → inbox "${inbox.name}": UNAUTHENTICATED and unencrypted by nature${cfg.legacy.allow.length ? `; allowed sources: ${cfg.legacy.allow.join(', ')}` : '; any source address may send (set legacy.allow)'}`);
  return legacy;
}

/** Creates a missing outbox (logged) and checks the agent may move files out of it. */
export async function ensureOutbox(dir: string, log: Logger): Promise<void> {
  try {
    const made = await mkdirp(dir);
    if (made !== undefined) log.info(`created outbox folder ${dir}`);
    await fs.access(dir, fs.constants.R_OK | fs.constants.W_OK);
  } catch (err) {
    // The agent moves sent files out of an outbox (archive, delete): it needs write access too.
    throw new TdxError('OUTBOX_UNUSABLE', folderProblem(`outbox ${dir}`, err, 'outboxes[].path'), { cause: err });
  }
}
