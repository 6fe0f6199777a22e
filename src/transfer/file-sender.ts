/**
 * The one seam between the two protocols a destination can speak: tdxfer v1 (shared
 * TLS-PSK connections, resume, end-to-end hash) and the legacy TOX protocol (one
 * plain connection per file). A destination picks its implementation once, with
 * `fileSenderFor()`, where it is built; nothing above this module branches on the
 * protocol any more.
 */
import type { Logger } from '../log.js';
import { TdxError } from '../errors.js';
import type { PeerInfo } from '../types.js';
import { PeerConnection, type OpenOptions, type SendResult } from './sender.js';
import { sendLegacyFile } from '../legacy/client.js';

import type { PeerProtocol as Protocol } from '../config/types.js';

/** One file to send, as the sender needs it. */
export interface OutgoingFile {
  abs: string;
  size: number;
  mtimeMs: number;
  /** Wire path at the receiver ('/'-separated), already made by `targetName()`. */
  target: string;
  /**
   * The job's cancel signal, made when asked: an AbortController costs ~1 KiB and several µs
   * per file, and only the legacy client listens to it (a v1 transfer is cancelled by its
   * destination queue).
   */
  abortSignal?: () => AbortSignal;
}

export interface FileSender {
  readonly protocol: Protocol;
  /** Files in flight at once to this destination. */
  readonly concurrency: number;
  /** Whether a successful `open()` shows the peer reachable (v1 connected; legacy only looked up an address). */
  readonly openProvesReachable: boolean;
  /**
   * A link to send one file on (v1: a connected, handshaken connection, reused while it
   * stays open; legacy: the peer's address, connected per file). Rejects with a TdxError
   * when the peer cannot be reached; the destination's backoff decides when to try again.
   */
  open(): Promise<FileLink>;
  /** Peer announced itself again: forget connections known to be closed. */
  refresh(): void;
  /** Drops every connection (stop). */
  close(): void;
}

export interface FileLink {
  /** True once the link cannot carry another file (v1: the connection closed; legacy: never, it connects per file). */
  readonly closed: boolean;
  /** Sends one file, reporting progress; resolves once the receiver confirmed it. */
  send(file: OutgoingFile, onProgress: (done: number, total: number) => void): Promise<SendResult>;
}

export interface FileSenderDeps {
  log: Logger;
  /** Display name of the peer, for messages. */
  peer: string;
  /** The destination's inbox (v1), or null. */
  inbox: string | null;
  resolvePeer: () => PeerInfo | null;
  connectBase: Omit<OpenOptions, 'host' | 'port' | 'log'>;
  /** Files in flight at once on v1 connections. */
  window: number;
  /** v1 connections per destination. */
  connections?: number;
  onPeerInboxes?: (inboxes: string[]) => void;
}

/** The implementation for a destination's protocol: the only place the choice is made. */
export function fileSenderFor(protocol: Protocol, deps: FileSenderDeps): FileSender {
  return protocol === 'legacy' ? new LegacyFileSender(deps) : new V1FileSender(deps);
}

/**
 * tdxfer v1. Several connections per destination: each carries one file's OFFER →
 * ACCEPT → DATA at a time, so small files, bound by the receiver's per-file latency
 * (creating the partial), overlap across connections instead of queueing behind one.
 */
export class V1FileSender implements FileSender {
  readonly protocol = 'tdxfer' as const;
  readonly concurrency: number;
  readonly openProvesReachable = true;
  private readonly slots: Array<{ conn: PeerConnection | null; connecting: Promise<PeerConnection> | null }>;
  private nextSlot = 0;

  constructor(private readonly deps: FileSenderDeps) {
    this.concurrency = deps.window;
    this.slots = Array.from({ length: Math.max(1, deps.connections ?? 1) }, () => ({ conn: null, connecting: null }));
  }

  async open(): Promise<FileLink> {
    const conn = await this.connection();
    const inbox = this.deps.inbox ?? '';
    return {
      get closed() {
        return conn.closed;
      },
      send: (file, onProgress) => conn.sendFile({ abs: file.abs, inbox, path: file.target, size: file.size, mtimeMs: file.mtimeMs, onProgress }),
    };
  }

  refresh(): void {
    for (const s of this.slots) if (s.conn?.closed) s.conn = null;
  }

  close(): void {
    for (const s of this.slots) s.conn?.destroy();
  }

  private async connection(): Promise<PeerConnection> {
    const slot = this.slots[this.nextSlot++ % this.slots.length]!;
    if (slot.conn && !slot.conn.closed) return slot.conn;
    slot.connecting ??= this.connect()
      .then((c) => {
        slot.conn = c;
        c.on('close', () => {
          if (slot.conn === c) slot.conn = null;
        });
        return c;
      })
      .finally(() => (slot.connecting = null));
    return slot.connecting;
  }

  private async connect(): Promise<PeerConnection> {
    const { peer: name, inbox, log } = this.deps;
    const peer = this.deps.resolvePeer();
    if (!peer) throw new TdxError('UNKNOWN_PEER', `peer ${name} not known (yet): waiting for it to be discovered or configured`);
    if (peer.state === 'gone') throw new TdxError('PEER_GONE', `peer ${name} is gone (no announcement for a while): waiting for it to return`);
    if (peer.addresses.length === 0) throw new TdxError('PEER_NO_ADDRESS', `peer ${name} has no usable address`);
    let last: unknown = null;
    for (const host of peer.addresses) {
      try {
        const c = await PeerConnection.open({ ...this.deps.connectBase, host, port: peer.port, log });
        this.deps.onPeerInboxes?.(c.inboxes);
        if (inbox !== null && c.inboxes.length > 0 && !c.inboxes.includes(inbox)) {
          log.warn(`${name} has no inbox "${inbox}" (it has: ${c.inboxes.join(', ')}); files for it wait`);
        }
        return c;
      } catch (err) {
        last = err;
        if ((err as TdxError).code === 'AUTH_FAILED') break;
      }
    }
    throw last instanceof Error ? last : new TdxError('CONNECT_FAILED', `cannot reach ${name}`);
  }
}

/** The original TOX receiver: one unauthenticated connection per file, one file at a time. */
export class LegacyFileSender implements FileSender {
  readonly protocol = 'legacy' as const;
  readonly concurrency = 1;
  readonly openProvesReachable = false;

  constructor(private readonly deps: FileSenderDeps) {}

  async open(): Promise<FileLink> {
    const peer = this.deps.resolvePeer();
    if (!peer || peer.addresses.length === 0) throw new TdxError('UNKNOWN_PEER', `legacy peer ${this.deps.peer} has no address`);
    const host = peer.addresses[0]!;
    const log = this.deps.log;
    return {
      closed: false,
      send: async (file, onProgress) => {
        await sendLegacyFile({ host, port: peer.port, file: file.abs, targetName: file.target, log, onProgress, ...(file.abortSignal ? { signal: file.abortSignal() } : {}) });
        return { status: 'stored', path: file.target, sha256: null, bytesSent: file.size, resumedFrom: 0 };
      },
    };
  }

  refresh(): void {
    /* the address is looked up again for every file */
  }

  close(): void {
    /* one connection per file: nothing stays open */
  }
}
