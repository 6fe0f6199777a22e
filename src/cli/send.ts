/**
 * `tdxfer send FILE... --to PEER[/INBOX]`: a one-shot sender. It reads the peers from
 * the config, connects itself (no local agent needed), sends every file over one
 * connection and exits 0 only when the receiver confirmed each one durable and verified.
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import { ConfigError, describeError } from '../errors.js';
import { createLogger } from '../log.js';
import { loadConfig, resolveConfigPath } from '../config/load.js';
import { PeerTable } from '../discovery/table.js';
import { selectPeers } from '../routing.js';
import { fileSenderFor } from '../transfer/file-sender.js';
import { flattensByDefault, needsInbox, targetFor } from '../config/protocols.js';
import { loadAgentId, softwareVersion } from '../agent/identity.js';
import { toWirePath } from '../names.js';

export interface SendArgs {
  files: string[];
  to: string;
  config?: string | undefined;
  as?: string | undefined;
  quiet: boolean;
}

export async function sendCommand(args: SendArgs): Promise<number> {
  const err = (msg: string) => void process.stderr.write(`${msg}\n`);
  const log = createLogger({ level: 'warn', stderr: true });
  let cfg;
  try {
    cfg = await loadConfig(resolveConfigPath(args.config, process.env), { createKey: false, log });
  } catch (e) {
    err(e instanceof ConfigError ? e.message : `error: ${describeError(e)}`);
    return 2;
  }
  const slash = args.to.indexOf('/');
  const peerName = slash < 0 ? args.to : args.to.slice(0, slash);
  const inbox = slash < 0 ? null : args.to.slice(slash + 1) || null;
  if (args.as !== undefined && args.files.length !== 1) {
    err('--as names one file: give exactly one file with it');
    return 2;
  }
  const table = new PeerTable();
  table.setStatic(cfg.peers);
  const peer = selectPeers(peerName, table.list())[0];
  const self = peerName === cfg.name;
  if (!peer && !self) {
    const known = [cfg.name, ...cfg.peers.map((p) => p.name)].join(', ');
    err(`unknown peer "${peerName}": tdxfer send uses the peers of the config (${known}); add it to "peers" or pass --config`);
    return 2;
  }
  const protocol = peer?.protocol ?? 'tdxfer';
  if (needsInbox(protocol) && inbox === null) {
    err(`--to ${args.to}: name the inbox too, e.g. --to ${peerName}/renders`);
    return 2;
  }
  const files: Array<{ abs: string; size: number; mtimeMs: number; target: string }> = [];
  for (const f of args.files) {
    const abs = path.resolve(f);
    try {
      const st = await fs.stat(abs);
      if (!st.isFile()) throw new Error('not a regular file');
      const target = args.as ?? path.basename(abs);
      files.push({ abs, size: st.size, mtimeMs: st.mtimeMs, target: targetFor(toWirePath(target), flattensByDefault(protocol)) });
    } catch (e) {
      err(`cannot send ${abs}: ${describeError(e)}`);
      return 2;
    }
  }
  const hosts = self ? ['127.0.0.1'] : peer!.addresses;
  const port = self ? cfg.listen.port : peer!.port;
  const tty = !args.quiet && process.stderr.isTTY === true;
  // Loaded only for a terminal: its 17 module files are ~10 % of the command's start (issue #12).
  const cliProgress = tty ? (await import('cli-progress')).default : null;
  const bar = cliProgress
    ? new cliProgress.SingleBar({ format: '{file} |{bar}| {percentage}% {value}/{total} B {speed} MB/s', stream: process.stderr, hideCursor: true }, cliProgress.Presets.shades_classic)
    : null;
  let confirmed = 0;
  const started = Date.now();
  const progress = (name: string) => {
    const t0 = Date.now();
    return (done: number, total: number) => {
      const s = Math.max(0.001, (Date.now() - t0) / 1000);
      bar?.update(done, { file: name, speed: (done / 1e6 / s).toFixed(1) });
      void total;
    };
  };

  // v1 or legacy TOX: chosen once here (transfer/file-sender.ts); one link for every file.
  const id = await loadAgentId(cfg.dataDir).catch(() => 'tdxfer-send');
  const sender = fileSenderFor(protocol, {
    log,
    peer: peerName,
    inbox,
    window: 1,
    connections: 1,
    resolvePeer: () => ({ id: null, name: peerName, source: 'static', protocol, addresses: hosts, port, inboxes: [], version: null, state: 'up', lastSeen: null }),
    connectBase: {
      key: cfg.security.key, encrypt: cfg.security.encrypt,
      self: { id, name: `${cfg.name}-send`, software: softwareVersion() },
      connectTimeoutMs: 10_000, handshakeTimeoutMs: cfg.limits.handshakeTimeoutMs, idleTimeoutMs: cfg.limits.idleTimeoutMs,
      chunkBytes: cfg.transfer.chunkBytes,
      hashes: cfg.security.hashes,
    },
  });
  let link;
  try {
    link = await sender.open();
  } catch (e) {
    err(`cannot reach ${peerName}: ${describeError(e)}`);
    return 1;
  }
  for (const f of files) {
    bar?.start(f.size, 0, { file: f.target, speed: '0' });
    try {
      const r = await link.send(f, progress(f.target));
      bar?.stop();
      confirmed++;
      if (!args.quiet) {
        process.stdout.write(
          needsInbox(sender.protocol)
            ? `${r.status === 'stored' ? 'sent' : r.status} ${f.abs} → ${peerName}/${inbox}/${r.path}${r.resumedFrom ? ` (resumed at ${r.resumedFrom})` : ''}\n`
            : `sent ${f.abs} → ${peerName} (legacy) as ${f.target}\n`,
        );
      }
    } catch (e) {
      bar?.stop();
      err(`FAILED ${f.abs}: ${describeError(e)}`);
      if (link.closed) {
        err(`connection to ${peerName} lost: ${files.length - confirmed} file(s) not confirmed`);
        break;
      }
    }
  }
  sender.close();
  if (!args.quiet) {
    const secs = ((Date.now() - started) / 1000).toFixed(1);
    process.stdout.write(`${confirmed} of ${files.length} file(s) confirmed in ${secs} s\n`);
  }
  return confirmed === files.length ? 0 : 1;
}
