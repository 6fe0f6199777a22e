/**
 * Cross-field rules the JSON schema cannot express. Runs on the resolved config (paths
 * absolute, defaults applied); array indices match the file's, so field paths do too.
 * Returns every problem found, not just the first.
 */
import { BlockList, isIP } from 'node:net';
import path from 'node:path';
import type { ConfigError } from '../errors.js';
import { expandWindowsEnv, windowsPathProblem } from './winpath.js';
import type { RawConfig } from './schema.js';
import type { UnkeyedConfig } from './resolve.js';
import { closest, type ConfigErrors } from './messages.js';
import { needsInbox } from './protocols.js';

const LOOPBACK = new BlockList();
LOOPBACK.addSubnet('127.0.0.0', 8, 'ipv4');
LOOPBACK.addAddress('::1', 'ipv6');

/** 127.0.0.0/8, ::1 (any spelling, also IPv4-mapped) and "localhost": reachable from this machine only. */
export function isLoopbackHost(host: string): boolean {
  const h = host.toLowerCase().replace(/^\[|\]$/g, '');
  if (h === 'localhost' || h.endsWith('.localhost')) return true;
  const family = isIP(h);
  return family !== 0 && LOOPBACK.check(h, family === 4 ? 'ipv4' : 'ipv6');
}

/** An IP address, or an address/prefix CIDR with a prefix in range for its family. */
export function isIpOrCidr(entry: string): boolean {
  const m = /^([^/]+)(?:\/(\d{1,3}))?$/.exec(entry.trim());
  if (!m) return false;
  const family = isIP(m[1]!);
  if (family === 0) return false;
  if (m[2] === undefined) return true;
  return Number(m[2]) <= (family === 4 ? 32 : 128);
}

/** Folder comparison follows the platform's usual case rule (Windows and macOS: case-insensitive). */
function samePathOrInside(child: string, parent: string): boolean {
  const fold = process.platform === 'win32' || process.platform === 'darwin';
  const c = fold ? child.toLowerCase() : child;
  const p = fold ? parent.toLowerCase() : parent;
  const rel = path.relative(p, c);
  return rel === '' || (!rel.startsWith('..') && !path.isAbsolute(rel));
}

export function crossFieldChecks(raw: RawConfig, cfg: UnkeyedConfig, make: ConfigErrors, platform: NodeJS.Platform = process.platform): ConfigError[] {
  const errors: ConfigError[] = [];
  const fail = (field: string, text: string): void => void errors.push(make.error(field, text));

  // Windows path forms that mean something else than they seem (winpath.ts).
  if (platform === 'win32') {
    const paths: Array<[string, string | undefined]> = [['dataDir', raw.dataDir], ['security.keyFile', raw.security?.keyFile]];
    (raw.inboxes ?? []).forEach((b, i) => paths.push([`inboxes[${i}].path`, b.path], [`inboxes[${i}].staging`, b.staging]));
    (raw.outboxes ?? []).forEach((b, i) => paths.push([`outboxes[${i}].path`, b.path]));
    for (const [field, value] of paths) {
      if (value === undefined) continue;
      const problem = windowsPathProblem(expandWindowsEnv(value, process.env));
      if (problem) fail(field, problem);
    }
  }

  // Inboxes: unique names.
  const inboxNames = new Map<string, number>();
  cfg.inboxes.forEach((inbox, i) => {
    if (raw.inboxes === undefined) return; // zero-config inbox
    const key = inbox.name.toLowerCase();
    const first = inboxNames.get(key);
    if (first !== undefined) {
      fail(`inboxes[${i}].name`, `is ${JSON.stringify(inbox.name)}, already used by \`inboxes[${first}].name\` (names are compared ignoring case): give each inbox its own name.`);
    } else inboxNames.set(key, i);
  });

  const ownName = cfg.name;
  const staticPeers = new Map(cfg.peers.map((p) => [p.name, p]));
  const peerNames = new Map<string, number>();
  cfg.peers.forEach((p, i) => {
    const first = peerNames.get(p.name.toLowerCase());
    if (first !== undefined) fail(`peers[${i}].name`, `is ${JSON.stringify(p.name)}, already used by \`peers[${first}].name\` (names are compared ignoring case).`);
    else peerNames.set(p.name.toLowerCase(), i);
  });
  for (const name of Object.keys(cfg.transfer.peerMaxBytesPerSecond)) {
    const i = cfg.peers.findIndex((p) => p.name === name && (p.maxBytesPerSecond ?? 0) > 0);
    if (i !== -1) {
      fail(`transfer.peerMaxBytesPerSecond[${JSON.stringify(name)}]`, `sets a limit for ${JSON.stringify(name)}, which \`peers[${i}].maxBytesPerSecond\` already sets: keep one of the two.`);
    }
  }
  const inboxByName = new Map(cfg.inboxes.map((i) => [i.name, i]));
  const discovery = cfg.discovery.enabled;

  cfg.outboxes.forEach((ob, o) => {
    ob.to.forEach((route, r) => {
      const field = `outboxes[${o}].to[${r}]`;
      const peer = route.peer;
      const known = [...staticPeers.keys(), ownName];
      let protocol: 'tdxfer' | 'legacy' = 'tdxfer';
      if (peer === '*') {
        if (!discovery) fail(`${field}.peer`, `is "*" (every discovered peer), but discovery is off: set "discovery": { "enabled": true } or name a peer.`);
      } else if (staticPeers.has(peer)) {
        protocol = staticPeers.get(peer)!.protocol;
      } else if (peer !== ownName && !discovery) {
        const hint = closest(peer, known);
        fail(
          `${field}.peer`,
          `names unknown peer ${JSON.stringify(peer)}: add it to "peers" or enable discovery` +
            `${hint ? `; did you mean ${JSON.stringify(hint)}?` : '.'} Peers listed: ${[...staticPeers.keys()].map((k) => JSON.stringify(k)).join(', ') || 'none'}; this agent: ${JSON.stringify(ownName)}.`,
        );
        return;
      }
      if (needsInbox(protocol) && route.inbox === undefined) {
        fail(`${field}.inbox`, `is missing: peer ${JSON.stringify(peer)} is a tdxfer agent, so the route must name one of its inboxes, e.g. { "peer": ${JSON.stringify(peer)}, "inbox": "renders" }.`);
      }
      if (peer === ownName && !staticPeers.has(peer) && route.inbox !== undefined && !inboxByName.has(route.inbox)) {
        const hint = closest(route.inbox, inboxByName.keys());
        fail(
          `${field}.inbox`,
          `is ${JSON.stringify(route.inbox)}, but this agent (${JSON.stringify(ownName)}) has no such inbox` +
            `${hint ? `; did you mean ${JSON.stringify(hint)}?` : '.'} Inboxes here: ${[...inboxByName.keys()].map((n) => JSON.stringify(n)).join(', ') || 'none'}.`,
        );
      }
    });

    // Loops: an outbox inside an inbox (or the reverse) would resend what it receives.
    cfg.inboxes.forEach((inbox, i) => {
      if (samePathOrInside(ob.path, inbox.path) || samePathOrInside(inbox.path, ob.path)) {
        fail(`outboxes[${o}].path`, `is ${JSON.stringify(ob.path)}, which overlaps inbox \`inboxes[${i}].path\` (${JSON.stringify(inbox.path)}): received files would be sent again (a loop). Use separate folders.`);
      }
    });
    cfg.outboxes.forEach((other, j) => {
      if (j < o && (samePathOrInside(ob.path, other.path) || samePathOrInside(other.path, ob.path))) {
        fail(`outboxes[${o}].path`, `is ${JSON.stringify(ob.path)}, which overlaps \`outboxes[${j}].path\` (${JSON.stringify(other.path)}): files would be picked up twice. Use separate folders.`);
      }
    });
  });

  // Staging outside every inbox and outbox: partial files must never be visible or sent.
  cfg.inboxes.forEach((inbox, i) => {
    for (const [j, other] of cfg.inboxes.entries()) {
      if (samePathOrInside(inbox.staging, other.path)) {
        fail(`inboxes[${i}].staging`, `is ${JSON.stringify(inbox.staging)}, inside inbox \`inboxes[${j}].path\` (${JSON.stringify(other.path)}): partial files would be visible there; choose a folder outside every inbox on the same volume.`);
      }
    }
    for (const [j, ob] of cfg.outboxes.entries()) {
      if (samePathOrInside(inbox.staging, ob.path)) {
        fail(`inboxes[${i}].staging`, `is ${JSON.stringify(inbox.staging)}, inside outbox \`outboxes[${j}].path\` (${JSON.stringify(ob.path)}): partial files would be sent; choose a folder outside every outbox.`);
      }
    }
  });

  const sec = raw.security;
  if (sec?.key !== undefined && sec.keyFile !== undefined) {
    fail('security.keyFile', `is set together with \`security.key\`: use one of them (the key inline, or a file holding it), not both.`);
  }
  if (sec?.hashes !== undefined && !sec.hashes.includes('sha256')) {
    fail('security.hashes', `is ${JSON.stringify(sec.hashes)}, without "sha256": every tdxfer agent speaks SHA-256, and agents of protocol revision 1.0 (before hash negotiation) speak nothing else; use ["xxh3-128", "sha256"] (the default) or ["sha256"].`);
  }

  if (cfg.legacy.listen !== null) {
    const inbox = cfg.legacy.inbox;
    if (inbox === null) {
      fail('legacy.inbox', `is missing: \`legacy.listen\` is set, so name the inbox that files from TOX senders go to (inboxes here: ${[...inboxByName.keys()].map((n) => JSON.stringify(n)).join(', ') || 'none'}).`);
    } else if (!inboxByName.has(inbox)) {
      const hint = closest(inbox, inboxByName.keys());
      fail('legacy.inbox', `is ${JSON.stringify(inbox)}, which is not an inbox of this agent${hint ? `; did you mean ${JSON.stringify(hint)}?` : '.'} Inboxes here: ${[...inboxByName.keys()].map((n) => JSON.stringify(n)).join(', ') || 'none'}.`);
    }
  }
  cfg.legacy.allow.forEach((entry, i) => {
    if (!isIpOrCidr(entry)) fail(`legacy.allow[${i}]`, `is ${JSON.stringify(entry)}, not an IP address or CIDR: use e.g. "10.0.0.12" or "10.0.0.0/24".`);
  });

  if (cfg.status.enabled && !isLoopbackHost(cfg.status.host) && cfg.status.token === null) {
    fail('status.token', `is missing: \`status.host\` is ${JSON.stringify(cfg.status.host)}, reachable from other machines, so the status API needs a token (e.g. \`openssl rand -hex 16\`), or set "host": "127.0.0.1".`);
  }

  const t = cfg.transfer;
  if (t.readBufferBytes < 4 * t.chunkBytes) {
    fail('transfer.readBufferBytes', `is ${t.readBufferBytes}, less than 4 × \`transfer.chunkBytes\` (${4 * t.chunkBytes}): a file being sent needs a chunk being read, one being written and one ahead of each.`);
  } else if (raw.transfer?.fanoutLagBytes !== undefined && (t.fanoutLagBytes < 2 * t.chunkBytes || t.fanoutLagBytes > t.readBufferBytes / 2)) {
    // Left out, it is 16 MiB or half of readBufferBytes, whichever is less (transfer/sources.ts).
    fail('transfer.fanoutLagBytes', `is ${t.fanoutLagBytes}: it must be from 2 × \`transfer.chunkBytes\` (${2 * t.chunkBytes}) to half of \`transfer.readBufferBytes\` (${Math.floor(t.readBufferBytes / 2)}); the other half of the read buffers serves the sockets and other files.`);
  }
  if (cfg.transfer.retryMaxMs < cfg.transfer.retryInitialMs) {
    fail('transfer.retryMaxMs', `is ${cfg.transfer.retryMaxMs}, less than \`transfer.retryInitialMs\` (${cfg.transfer.retryInitialMs}): the backoff cap must be at least the first delay.`);
  }
  return errors;
}
