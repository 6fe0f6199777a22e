/**
 * The starter config that `tdxfer init --config FILE` (and so scripts/install.sh) writes:
 * minimal and safe. One inbox and one outbox in one folder the agent may write (by default
 * the data folder; install.sh passes /srv/tdxfer, the unit's show folder), the outbox
 * delivering to this agent's own inbox until a peer is put in its place, no legacy
 * listener, no hooks, no log file, the key inline. config/example.json stays the full,
 * commented example. It names its `version`: a file without one is read as the current
 * version, which after a future format change would skip its migration. Pure: no I/O.
 */
import path from 'node:path';
import { CONFIG_VERSION } from '../config/migrate.js';
import type { RawConfig } from '../config/schema.js';

/** The inbox name the starter config uses. */
export const STARTER_INBOX = 'inbox';

export interface StarterOptions {
  /** This agent's name (defaultAgentName()). */
  name: string;
  /** Absolute data folder (state, journals). */
  dataDir: string;
  /** Absolute folder holding the inbox and outbox folders; default: dataDir. */
  folder?: string;
  /** The installation key, base64. */
  key: string;
}

export function starterConfig(opts: StarterOptions): RawConfig {
  const folder = opts.folder ?? opts.dataDir;
  return {
    $comment: [
      'Starter config written by `tdxfer init`: files dropped into the outbox are sent to this',
      "agent's own inbox over TCP. To send to another machine, list it under \"peers\" and route",
      'the outbox to it ("to": [{ "peer": "playback-1", "inbox": "renders" }]); every machine needs',
      'this same security.key. config/example.json (in the package) shows every setting.',
    ],
    version: CONFIG_VERSION,
    name: opts.name,
    dataDir: opts.dataDir,
    inboxes: [{ name: STARTER_INBOX, path: path.join(folder, 'inbox') }],
    outboxes: [{ path: path.join(folder, 'outbox'), to: [{ peer: opts.name, inbox: STARTER_INBOX }] }],
    peers: [],
    discovery: { enabled: false },
    security: { key: opts.key, encrypt: true },
  };
}
