/**
 * PURE state machines of the protocol v1 handshake (PROTOCOL.md 5): HELLO → WELCOME →
 * AUTH → READY, for both sides. Events in (a frame, the connection closing, the timer),
 * actions out (send a frame, close, report): no sockets, no timers, no randomness (the
 * nonces are given). sender.ts and receiver.ts execute the actions; the tests drive the
 * machines in memory, every illegal transition included.
 */
import { TdxError } from '../errors.js';
import { BASELINE_HASH, HASH_ALGS, hashLabel, isHashAlg, pickHash, type HashAlg } from '../hash.js';
import { ProtocolError, makeProof, peerErrorFrom, verifyProof, type ControlFrame, type Frame, type FrameOf } from '../protocol/index.js';

/** What the handshake learnt about the other side. */
export interface PeerHello {
  agentId: string;
  name: string;
  /** Client side only (from WELCOME): the peer's inboxes and eager limit. */
  inboxes: string[];
  eagerMaxBytes: number;
  /** The file hash algorithm of this connection (v1.1; "sha256" with a peer that predates it). */
  hash: HashAlg;
}

export type HandshakeAction =
  | { kind: 'send'; frame: ControlFrame }
  /** Close the connection: `end` gracefully, or `fail` (an ERROR frame for `error`, then close). */
  | { kind: 'close'; how: 'end' }
  | { kind: 'close'; how: 'fail'; error: TdxError }
  /** Client: the handshake is over; `error` absent means established. */
  | { kind: 'settle'; error?: TdxError; peer?: PeerHello }
  /** Server: the client proved the key; admit it (connection limits) and answer with admitted(). */
  | { kind: 'admit'; peer: PeerHello }
  /** Server: the client's AUTH did not verify (log it, count it). */
  | { kind: 'authFailed'; peer: PeerHello }
  /** Server: the peer sent ERROR during the handshake (log it). */
  | { kind: 'peerError'; frame: FrameOf<'error'> };

export type HandshakeEvent = { kind: 'frame'; frame: Frame } | { kind: 'closed' } | { kind: 'timeout' };

export interface ClientHandshakeInput {
  key: Buffer;
  self: { id: string; name: string; software: string };
  clientNonce: string;
  /** host:port, for messages. */
  where: string;
  handshakeTimeoutMs: number;
  /** Hash algorithms to announce in HELLO, most preferred first (default HASH_ALGS). */
  hashes?: readonly HashAlg[];
}

export type ClientStep = 'start' | 'welcome' | 'ready' | 'done' | 'failed';

/** Client side: start() sends HELLO; the machine settles exactly once. */
export class ClientHandshake {
  #step: ClientStep = 'start';
  #peer: PeerHello | null = null;

  constructor(private readonly input: ClientHandshakeInput) {}

  get step(): ClientStep {
    return this.#step;
  }

  start(): HandshakeAction[] {
    if (this.#step !== 'start') throw new TdxError('INTERNAL', `ClientHandshake.start() in step ${this.#step}`);
    const { self, clientNonce } = this.input;
    this.#step = 'welcome';
    const hashes = [...(this.input.hashes ?? HASH_ALGS)];
    return [{ kind: 'send', frame: { type: 'hello', protocol: 1, agentId: self.id, name: self.name, software: self.software, nonce: clientNonce, hashes } }];
  }

  on(ev: HandshakeEvent): HandshakeAction[] {
    if (this.#step === 'done' || this.#step === 'failed') return [];
    if (this.#step === 'start') throw new TdxError('INTERNAL', 'ClientHandshake: event before start()');
    const where = this.input.where;
    if (ev.kind === 'timeout') {
      return this.#fail(
        new TdxError('HANDSHAKE_TIMEOUT', `${where}: no handshake answer within ${this.input.handshakeTimeoutMs} ms (is it a tdxfer agent? a legacy TOX receiver needs "protocol": "legacy")`),
        { kind: 'close', how: 'fail', error: new TdxError('TIMEOUT', 'handshake not finished in time') },
      );
    }
    if (ev.kind === 'closed') return this.#fail(new TdxError('CONNECTION_LOST', `${where} closed the connection during the handshake`));
    const f = ev.frame;
    if (f.type === 'error') {
      let e: TdxError;
      if (f.code === 'AUTH_FAILED') e = new TdxError('AUTH_FAILED', `${where} refused us: ${f.message} (security.key must be identical on both machines)`);
      else if (f.code === 'TOO_MANY_CONNECTIONS') {
        e = new TdxError('TOO_MANY_CONNECTIONS', `${where} refused the connection: ${f.message}; raise limits.maxConnectionsPerPeer (or limits.maxConnections) in the receiver's config, or lower transfer.connections in this one`);
      } else e = peerErrorFrom(f);
      return this.#fail(e, { kind: 'close', how: 'end' });
    }
    if (this.#step === 'welcome' && f.type === 'welcome') {
      const { key, clientNonce, self } = this.input;
      if (!verifyProof({ key, role: 'server', clientNonce, serverNonce: f.nonce, agentId: f.agentId, proof: f.proof })) {
        return this.#fail(
          new TdxError('AUTH_FAILED', `${where} (${f.name}) does not hold this installation's key: refusing to send to it (security.key must be identical on both machines)`),
          { kind: 'close', how: 'fail', error: new TdxError('AUTH_FAILED', 'server proof did not verify: different installation key') },
        );
      }
      // A server before v1.1 leaves `hash` out: it speaks SHA-256 only.
      const hash = f.hash ?? BASELINE_HASH;
      const offered = this.input.hashes ?? HASH_ALGS;
      if (!isHashAlg(hash) || !offered.includes(hash)) {
        return this.#fail(
          new ProtocolError('BAD_MESSAGE', `${where} (${f.name}) chose the file hash ${JSON.stringify(hash)}, which this agent did not offer (it offered ${offered.join(', ')})`, { frame: 'welcome', field: 'hash' }),
          { kind: 'close', how: 'fail', error: new TdxError('PROTOCOL_ERROR', `WELCOME.hash ${JSON.stringify(hash)} was not offered in HELLO.hashes (${offered.join(', ')})`) },
        );
      }
      this.#peer = { agentId: f.agentId, name: f.name, inboxes: f.inboxes, eagerMaxBytes: f.eagerMaxBytes ?? 0, hash };
      this.#step = 'ready';
      return [{ kind: 'send', frame: { type: 'auth', proof: makeProof({ key, role: 'client', clientNonce, serverNonce: f.nonce, agentId: self.id }) } }];
    }
    if (this.#step === 'ready' && f.type === 'ready') {
      this.#step = 'done';
      return [{ kind: 'settle', peer: this.#peer! }];
    }
    return this.#fail(
      new ProtocolError('BAD_MESSAGE', `${where} sent ${f.type.toUpperCase()} during the handshake (expected ${this.#step === 'welcome' ? 'WELCOME' : 'READY'})`, { frame: f.type, wireCode: 'OUT_OF_ORDER' }),
      { kind: 'close', how: 'fail', error: new TdxError('OUT_OF_ORDER', `unexpected ${f.type} during handshake`) },
    );
  }

  /** Settle first (with the precise message), then close: the close would otherwise settle with a vaguer one. */
  #fail(error: TdxError, close?: HandshakeAction): HandshakeAction[] {
    this.#step = 'failed';
    return close ? [{ kind: 'settle', error }, close] : [{ kind: 'settle', error }];
  }
}

export interface ServerHandshakeInput {
  key: Buffer;
  self: { id: string; name: string; software: string };
  serverNonce: string;
  inboxes: string[];
  encrypted: boolean;
  eagerMaxBytes: number;
  /** Hash algorithms this server accepts, most preferred first (default HASH_ALGS). */
  hashes?: readonly HashAlg[];
}

export type ServerStep = 'hello' | 'auth' | 'admitting' | 'ready' | 'closed';

/** Server side: HELLO → WELCOME, AUTH → admit → READY. Frames after READY are not its business. */
export class ServerHandshake {
  #step: ServerStep = 'hello';
  #clientNonce = '';
  #peer: PeerHello = { agentId: '', name: '', inboxes: [], eagerMaxBytes: 0, hash: BASELINE_HASH };

  constructor(private readonly input: ServerHandshakeInput) {}

  get step(): ServerStep {
    return this.#step;
  }

  /** The client's id and name once HELLO arrived. */
  get peer(): PeerHello {
    return this.#peer;
  }

  on(ev: HandshakeEvent): HandshakeAction[] {
    if (this.#step === 'ready' || this.#step === 'closed') return [];
    if (ev.kind === 'closed') {
      this.#step = 'closed';
      return [];
    }
    if (ev.kind === 'timeout') {
      this.#step = 'closed';
      return [{ kind: 'close', how: 'fail', error: new TdxError('TIMEOUT', 'handshake not finished in time') }];
    }
    const f = ev.frame;
    if (f.type === 'error') {
      this.#step = 'closed';
      return [{ kind: 'peerError', frame: f }, { kind: 'close', how: 'end' }];
    }
    if (this.#step === 'hello' && f.type === 'hello') {
      const { key, self, serverNonce } = this.input;
      this.#clientNonce = f.nonce;
      const accepted = this.input.hashes ?? HASH_ALGS;
      const hash = pickHash(f.hashes, accepted);
      if (hash === null) {
        this.#step = 'closed';
        const offered = (f.hashes ?? []).join(', ') || 'none';
        return [{
          kind: 'close', how: 'fail',
          error: new TdxError('UNSUPPORTED_PROTOCOL', `no file hash in common: ${f.name} offers ${offered}, ${self.name} accepts ${accepted.map(hashLabel).join(', ')} (security.hashes)`),
        }];
      }
      this.#peer = { agentId: f.agentId, name: f.name, inboxes: [], eagerMaxBytes: 0, hash };
      this.#step = 'auth';
      const proof = makeProof({ key, role: 'server', clientNonce: f.nonce, serverNonce, agentId: self.id });
      return [{
        kind: 'send',
        frame: {
          type: 'welcome', protocol: 1, agentId: self.id, name: self.name, software: self.software, nonce: serverNonce, proof,
          inboxes: [...this.input.inboxes], encrypted: this.input.encrypted, eagerMaxBytes: this.input.eagerMaxBytes,
          // Only to a client that announced a list: one before v1.1 gets exactly the WELCOME it knows.
          ...(f.hashes !== undefined ? { hash } : {}),
        },
      }];
    }
    if (this.#step === 'auth' && f.type === 'auth') {
      const ok = verifyProof({ key: this.input.key, role: 'client', clientNonce: this.#clientNonce, serverNonce: this.input.serverNonce, agentId: this.#peer.agentId, proof: f.proof });
      if (!ok) {
        this.#step = 'closed';
        return [{ kind: 'authFailed', peer: this.#peer }, { kind: 'close', how: 'fail', error: new TdxError('AUTH_FAILED', 'authentication failed: this agent uses another installation key') }];
      }
      this.#step = 'admitting';
      return [{ kind: 'admit', peer: this.#peer }];
    }
    const expected = this.#step === 'hello' ? 'HELLO' : this.#step === 'auth' ? 'AUTH' : 'nothing until READY';
    this.#step = 'closed';
    return [{ kind: 'close', how: 'fail', error: new TdxError('OUT_OF_ORDER', `unexpected ${f.type.toUpperCase()} frame: expected ${expected}`) }];
  }

  /** The admission answer to an `admit` action: null = admitted, else why it was refused. */
  admitted(refused: string | null): HandshakeAction[] {
    if (this.#step !== 'admitting') throw new TdxError('INTERNAL', `ServerHandshake.admitted() in step ${this.#step}`);
    if (refused !== null) {
      this.#step = 'closed';
      return [{ kind: 'close', how: 'fail', error: new TdxError('TOO_MANY_CONNECTIONS', `${this.input.self.name} refused the connection: ${refused}`) }];
    }
    this.#step = 'ready';
    return [{ kind: 'send', frame: { type: 'ready' } }];
  }
}
