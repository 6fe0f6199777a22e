/**
 * The handshake state machines (src/transfer/handshake.ts) in memory: a client and a
 * server machine talk to each other without sockets, and every frame type that the
 * sequence does not allow is fed in at every step.
 */
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { ClientHandshake, ServerHandshake, type HandshakeAction } from '../../src/transfer/handshake.js';
import { FrameDecoder, FrameType, ProtocolError, PeerError, encodeFrame, makeNonce, makeProof, type Frame, type FrameTypeName } from '../../src/protocol/index.js';
import type { HashAlg } from '../../src/hash.js';
import { TdxError } from '../../src/errors.js';

const KEY = randomBytes(32);
const CLIENT = { id: 'client-1', name: 'render-01', software: 'tdxfer/test' };
const SERVER = { id: 'server-1', name: 'show-01', software: 'tdxfer/test' };

function client(key = KEY): ClientHandshake {
  return new ClientHandshake({ key, self: CLIENT, clientNonce: makeNonce(), where: '127.0.0.1:7000', handshakeTimeoutMs: 5000 });
}
function server(key = KEY): ServerHandshake {
  return new ServerHandshake({ key, self: SERVER, serverNonce: makeNonce(), inboxes: ['renders', 'audio'], encrypted: true, eagerMaxBytes: 65536 });
}

/** A frame of every type, valid enough for the machines (which look at type and a few fields). */
const SAMPLE: Record<FrameTypeName, Frame> = {
  hello: { type: 'hello', protocol: 1, agentId: 'x', name: 'x', software: '', nonce: makeNonce() },
  welcome: { type: 'welcome', protocol: 1, agentId: 'y', name: 'y', software: '', nonce: makeNonce(), proof: '0'.repeat(64), inboxes: [], encrypted: false },
  auth: { type: 'auth', proof: '0'.repeat(64) },
  ready: { type: 'ready' },
  offer: { type: 'offer', id: 1, inbox: 'renders', path: 'a.png', size: 3, mtimeMs: 1, resume: false },
  accept: { type: 'accept', id: 1, offset: 0, prefixSha256: null },
  data: { type: 'data', data: Buffer.from('abc') },
  end: { type: 'end', id: 1, sha256: '0'.repeat(64) },
  ack: { type: 'ack', id: 1, status: 'stored', path: 'a.png', sha256: '0'.repeat(64) },
  nack: { type: 'nack', id: 1, code: 'BUSY', message: 'busy', retryable: true },
  abort: { type: 'abort', id: 1 },
  ping: { type: 'ping' },
  pong: { type: 'pong' },
  error: { type: 'error', code: 'IO_ERROR', message: 'disk' },
} as unknown as Record<FrameTypeName, Frame>;
const TYPES = Object.keys(FrameType).map((k) => k.toLowerCase() as FrameTypeName);

const sent = (actions: HandshakeAction[]): Frame[] => actions.flatMap((a) => (a.kind === 'send' ? [a.frame] : []));
function only<K extends HandshakeAction['kind']>(actions: HandshakeAction[], kind: K): Extract<HandshakeAction, { kind: K }> {
  const a = actions.filter((x) => x.kind === kind);
  assert.equal(a.length, 1, `one ${kind} action in ${JSON.stringify(actions.map((x) => x.kind))}`);
  return a[0] as Extract<HandshakeAction, { kind: K }>;
}

/** Runs both machines against each other up to the client's AUTH; returns both and the server's last actions. */
function upToAuth(c: ClientHandshake, s: ServerHandshake): HandshakeAction[] {
  const [hello] = sent(c.start());
  const [welcome] = sent(s.on({ kind: 'frame', frame: hello! }));
  const [auth] = sent(c.on({ kind: 'frame', frame: welcome! }));
  assert.equal(auth?.type, 'auth');
  return s.on({ kind: 'frame', frame: auth! });
}

describe('client and server together', () => {
  test('HELLO, WELCOME, AUTH, admit, READY: both sides learn each other', () => {
    const c = client();
    const s = server();
    const [hello] = sent(c.start());
    assert.equal(hello?.type, 'hello');
    assert.equal(c.step, 'welcome');
    const [welcome] = sent(s.on({ kind: 'frame', frame: hello! }));
    assert.ok(welcome?.type === 'welcome');
    assert.deepEqual(welcome.inboxes, ['renders', 'audio']);
    assert.equal(welcome.eagerMaxBytes, 65536);
    assert.equal(welcome.encrypted, true);
    assert.equal(s.peer.name, 'render-01');
    const [auth] = sent(c.on({ kind: 'frame', frame: welcome }));
    const admit = only(s.on({ kind: 'frame', frame: auth! }), 'admit');
    assert.equal(admit.peer.agentId, 'client-1');
    assert.equal(s.step, 'admitting');
    const [ready] = sent(s.admitted(null));
    assert.equal(ready?.type, 'ready');
    assert.equal(s.step, 'ready');
    const settle = only(c.on({ kind: 'frame', frame: ready! }), 'settle');
    assert.equal(settle.error, undefined);
    assert.deepEqual(settle.peer, { agentId: 'server-1', name: 'show-01', inboxes: ['renders', 'audio'], eagerMaxBytes: 65536, hash: 'xxh3-128' });
    assert.deepEqual(hello.type === 'hello' && hello.hashes, ['xxh3-128', 'sha256'], 'HELLO announces both, XXH3-128 first');
    assert.equal(welcome.hash, 'xxh3-128', 'the server picks XXH3-128 when both speak it');
    assert.equal(s.peer.hash, 'xxh3-128');
    assert.equal(c.step, 'done');
    // Later frames are not the handshake's business.
    assert.deepEqual(c.on({ kind: 'frame', frame: SAMPLE.ack }), []);
    assert.deepEqual(s.on({ kind: 'frame', frame: SAMPLE.offer }), []);
  });

  test('a server with another key: the client refuses it (AUTH_FAILED) before sending AUTH', () => {
    const c = client();
    const s = server(randomBytes(32));
    const [hello] = sent(c.start());
    const [welcome] = sent(s.on({ kind: 'frame', frame: hello! }));
    const actions = c.on({ kind: 'frame', frame: welcome! });
    assert.deepEqual(actions.map((a) => a.kind), ['settle', 'close'], 'settles first, with the precise message');
    const settle = only(actions, 'settle');
    assert.equal(settle.error?.code, 'AUTH_FAILED');
    assert.match(settle.error.message, /does not hold this installation's key/);
    const close = only(actions, 'close');
    assert.ok(close.how === 'fail' && close.error.code === 'AUTH_FAILED');
    assert.equal(sent(actions).length, 0);
    assert.equal(c.step, 'failed');
  });

  test('a client with another key: the server reports authFailed and fails the connection', () => {
    const s = server();
    const c = new ClientHandshake({ key: randomBytes(32), self: CLIENT, clientNonce: makeNonce(), where: 'x', handshakeTimeoutMs: 1 });
    const [hello] = sent(c.start());
    sent(s.on({ kind: 'frame', frame: hello! }));
    const actions = s.on({ kind: 'frame', frame: SAMPLE.auth });
    assert.deepEqual(actions.map((a) => a.kind), ['authFailed', 'close']);
    const close = only(actions, 'close');
    assert.ok(close.how === 'fail' && close.error.code === 'AUTH_FAILED');
    assert.equal(s.step, 'closed');
    assert.deepEqual(s.on({ kind: 'frame', frame: SAMPLE.auth }), []);
  });

  test('admission refused: TOO_MANY_CONNECTIONS, no READY', () => {
    const s = server();
    only(upToAuth(client(), s), 'admit');
    const actions = s.admitted('limits.maxConnections (2) reached');
    assert.equal(sent(actions).length, 0);
    const close = only(actions, 'close');
    assert.ok(close.how === 'fail' && close.error.code === 'TOO_MANY_CONNECTIONS');
    assert.match(close.error.message, /show-01 refused the connection: limits\.maxConnections/);
    assert.throws(() => s.admitted(null), (e: TdxError) => e.code === 'INTERNAL');
  });
});

describe('client: illegal transitions', () => {
  for (const type of TYPES.filter((t) => t !== 'welcome' && t !== 'error')) {
    test(`${type.toUpperCase()} while waiting for WELCOME`, () => {
      const c = client();
      c.start();
      const actions = c.on({ kind: 'frame', frame: SAMPLE[type] });
      assert.deepEqual(actions.map((a) => a.kind), ['settle', 'close']);
      const err = only(actions, 'settle').error;
      assert.ok(err instanceof ProtocolError, 'a ProtocolError');
      assert.equal(err.wireCode, 'OUT_OF_ORDER');
      assert.match(err.message, new RegExp(`sent ${type.toUpperCase()} during the handshake \\(expected WELCOME\\)`));
      const close = only(actions, 'close');
      assert.ok(close.how === 'fail' && close.error.code === 'OUT_OF_ORDER');
      assert.deepEqual(c.on({ kind: 'frame', frame: SAMPLE.welcome }), [], 'settled once');
    });
  }
  for (const type of TYPES.filter((t) => t !== 'ready' && t !== 'error')) {
    test(`${type.toUpperCase()} while waiting for READY`, () => {
      const c = client();
      upToAuth(c, server());
      assert.equal(c.step, 'ready');
      const actions = c.on({ kind: 'frame', frame: SAMPLE[type] });
      const err = only(actions, 'settle').error;
      assert.ok(err instanceof ProtocolError && err.wireCode === 'OUT_OF_ORDER');
      assert.match(err.message, /expected READY/);
      assert.equal(c.step, 'failed');
    });
  }
  test('ERROR frames: AUTH_FAILED and TOO_MANY_CONNECTIONS get their fix; others become a PeerError; the connection is ended', () => {
    for (const [code, check] of [
      ['AUTH_FAILED', (e: TdxError) => e.code === 'AUTH_FAILED' && /security\.key must be identical/.test(e.message)],
      ['TOO_MANY_CONNECTIONS', (e: TdxError) => e.code === 'TOO_MANY_CONNECTIONS' && /maxConnectionsPerPeer/.test(e.message)],
      ['SHUTTING_DOWN', (e: TdxError) => e instanceof PeerError && e.code === 'SHUTTING_DOWN' && e.retryable],
      ['SOMETHING_NEW', (e: TdxError) => e instanceof PeerError && e.code === 'SOMETHING_NEW'],
    ] as const) {
      for (const atReady of [false, true]) {
        const c = client();
        if (atReady) upToAuth(c, server());
        else c.start();
        const actions = c.on({ kind: 'frame', frame: { type: 'error', code, message: 'm' } as Frame });
        assert.deepEqual(actions.map((a) => a.kind), ['settle', 'close'], code);
        assert.ok(check(only(actions, 'settle').error!), code);
        assert.equal(only(actions, 'close').how, 'end', code);
      }
    }
  });
  test('connection closed, timeout; start() twice and events before start() are bugs', () => {
    const c = client();
    assert.throws(() => c.on({ kind: 'closed' }), (e: TdxError) => e.code === 'INTERNAL');
    c.start();
    assert.throws(() => c.start(), (e: TdxError) => e.code === 'INTERNAL');
    const closed = c.on({ kind: 'closed' });
    assert.deepEqual(closed.map((a) => a.kind), ['settle']);
    assert.equal(only(closed, 'settle').error?.code, 'CONNECTION_LOST');
    assert.deepEqual(c.on({ kind: 'timeout' }), []);
    const t = client();
    t.start();
    const timeout = t.on({ kind: 'timeout' });
    assert.equal(only(timeout, 'settle').error?.code, 'HANDSHAKE_TIMEOUT');
    assert.match(only(timeout, 'settle').error!.message, /"protocol": "legacy"/);
    const close = only(timeout, 'close');
    assert.ok(close.how === 'fail' && close.error.code === 'TIMEOUT');
    assert.deepEqual(t.on({ kind: 'closed' }), [], 'the close that follows settles nothing');
  });
});

describe('server: illegal transitions', () => {
  for (const type of TYPES.filter((t) => t !== 'hello' && t !== 'error')) {
    test(`${type.toUpperCase()} while waiting for HELLO`, () => {
      const s = server();
      const actions = s.on({ kind: 'frame', frame: SAMPLE[type] });
      const close = only(actions, 'close');
      assert.ok(close.how === 'fail' && close.error.code === 'OUT_OF_ORDER');
      assert.match(close.error.message, new RegExp(`unexpected ${type.toUpperCase()} frame: expected HELLO`));
      assert.equal(sent(actions).length, 0);
      assert.equal(s.step, 'closed');
      assert.deepEqual(s.on({ kind: 'frame', frame: SAMPLE.hello }), []);
    });
  }
  for (const type of TYPES.filter((t) => t !== 'auth' && t !== 'error')) {
    test(`${type.toUpperCase()} while waiting for AUTH`, () => {
      const s = server();
      s.on({ kind: 'frame', frame: SAMPLE.hello });
      assert.equal(s.step, 'auth');
      const close = only(s.on({ kind: 'frame', frame: SAMPLE[type] }), 'close');
      assert.ok(close.how === 'fail' && close.error.code === 'OUT_OF_ORDER');
      assert.match(close.error.message, /expected AUTH/);
    });
  }
  test('a frame while admission is pending is out of order', () => {
    const s = server();
    only(upToAuth(client(), s), 'admit');
    const close = only(s.on({ kind: 'frame', frame: SAMPLE.offer }), 'close');
    assert.ok(close.how === 'fail' && close.error.code === 'OUT_OF_ORDER');
  });
  test('ERROR from the client: reported and ended, at HELLO and at AUTH', () => {
    for (const atAuth of [false, true]) {
      const s = server();
      if (atAuth) s.on({ kind: 'frame', frame: SAMPLE.hello });
      const actions = s.on({ kind: 'frame', frame: SAMPLE.error });
      assert.deepEqual(actions.map((a) => a.kind), ['peerError', 'close']);
      assert.equal(only(actions, 'close').how, 'end');
    }
  });
  test('timeout fails with TIMEOUT; a closed connection ends the machine quietly', () => {
    const s = server();
    const close = only(s.on({ kind: 'timeout' }), 'close');
    assert.ok(close.how === 'fail' && close.error.code === 'TIMEOUT');
    const q = server();
    assert.deepEqual(q.on({ kind: 'closed' }), []);
    assert.equal(q.step, 'closed');
    assert.throws(() => q.admitted(null), (e: TdxError) => e.code === 'INTERNAL');
  });
});

/** Frame bytes exactly as an agent writes them: header + the JSON text given. */
function wire(type: FrameTypeName, json: string): Frame {
  const payload = Buffer.from(json, 'utf8');
  const header = Buffer.from([0x54, 0x58, 1, FrameType[type.toUpperCase() as keyof typeof FrameType], 0, 0, 0, 0]);
  header.writeUInt32BE(payload.length, 4);
  const frames = new FrameDecoder().push(Buffer.concat([header, payload]));
  assert.equal(frames.length, 1);
  return frames[0]!;
}
/** What goes on the wire for `f` (the real encoder), decoded again by the real decoder. */
function roundTrip(f: Frame): { frame: Frame; json: string } {
  const bytes = encodeFrame(f);
  return { frame: new FrameDecoder().push(bytes)[0]!, json: bytes.subarray(8).toString('utf8') };
}

describe('file hash negotiation (protocol v1.1)', () => {
  test('a client of the previous version (HELLO without `hashes`): the server picks SHA-256 and sends the WELCOME it knows, without `hash`', () => {
    const s = server();
    const clientNonce = makeNonce();
    const hello = wire('hello', `{"protocol":1,"agentId":"old-client","name":"Old","software":"tdxfer/0.2.0","nonce":"${clientNonce}"}`);
    const { frame: welcome, json } = roundTrip(sent(s.on({ kind: 'frame', frame: hello }))[0]!);
    assert.ok(welcome.type === 'welcome');
    assert.doesNotMatch(json, /hash/, 'no field the old client does not know');
    assert.equal(s.peer.hash, 'sha256');
    const proof = makeProof({ key: KEY, role: 'client', clientNonce, serverNonce: welcome.nonce, agentId: 'old-client' });
    only(s.on({ kind: 'frame', frame: wire('auth', `{"proof":"${proof}"}`) }), 'admit');
    assert.equal(sent(s.admitted(null))[0]?.type, 'ready');
  });

  test('a server of the previous version (WELCOME without `hash`): the client settles on SHA-256', () => {
    const c = client();
    const { frame: hello, json } = roundTrip(sent(c.start())[0]!);
    assert.match(json, /"hashes":\["xxh3-128","sha256"\]/);
    assert.ok(hello.type === 'hello');
    const serverNonce = makeNonce();
    const proof = makeProof({ key: KEY, role: 'server', clientNonce: hello.nonce, serverNonce, agentId: 'old-server' });
    const welcome = wire('welcome', `{"protocol":1,"agentId":"old-server","name":"Old","software":"tdxfer/0.2.0","nonce":"${serverNonce}","proof":"${proof}","inboxes":["in"],"encrypted":true,"eagerMaxBytes":1048576}`);
    assert.equal(sent(c.on({ kind: 'frame', frame: welcome }))[0]?.type, 'auth');
    const settle = only(c.on({ kind: 'frame', frame: wire('ready', '{}') }), 'settle');
    assert.equal(settle.error, undefined);
    assert.equal(settle.peer?.hash, 'sha256');
  });

  const pair = (clientHashes?: HashAlg[], serverHashes?: HashAlg[]): { hello: Frame; welcome: Frame; settled: HashAlg | undefined; server: HashAlg } => {
    const c = new ClientHandshake({ key: KEY, self: CLIENT, clientNonce: makeNonce(), where: 'x', handshakeTimeoutMs: 5000, ...(clientHashes ? { hashes: clientHashes } : {}) });
    const s = new ServerHandshake({ key: KEY, self: SERVER, serverNonce: makeNonce(), inboxes: [], encrypted: true, eagerMaxBytes: 0, ...(serverHashes ? { hashes: serverHashes } : {}) });
    const hello = roundTrip(sent(c.start())[0]!).frame;
    const welcome = roundTrip(sent(s.on({ kind: 'frame', frame: hello }))[0]!).frame;
    const auth = sent(c.on({ kind: 'frame', frame: welcome }))[0]!;
    only(s.on({ kind: 'frame', frame: auth }), 'admit');
    const ready = sent(s.admitted(null))[0]!;
    return { hello, welcome, settled: only(c.on({ kind: 'frame', frame: ready }), 'settle').peer?.hash, server: s.peer.hash };
  };

  test('security.hashes ["sha256"] on either side: both settle on SHA-256', () => {
    const auditorServer = pair(undefined, ['sha256']);
    assert.ok(auditorServer.welcome.type === 'welcome' && auditorServer.welcome.hash === 'sha256');
    assert.equal(auditorServer.settled, 'sha256');
    assert.equal(auditorServer.server, 'sha256');
    const auditorClient = pair(['sha256'], undefined);
    assert.deepEqual(auditorClient.hello.type === 'hello' && auditorClient.hello.hashes, ['sha256']);
    assert.equal(auditorClient.settled, 'sha256');
    assert.equal(auditorClient.server, 'sha256');
  });

  test('the server picks by its own order among what the client offers; unknown names are skipped', () => {
    assert.equal(pair(['sha256', 'xxh3-128'], undefined).settled, 'xxh3-128');
    assert.equal(pair(undefined, ['sha256', 'xxh3-128']).settled, 'sha256');
    const s = server();
    const hello = wire('hello', `{"protocol":1,"agentId":"future","name":"F","software":"tdxfer/9","nonce":"${makeNonce()}","hashes":["blake3-256","xxh3-128","sha256"]}`);
    const welcome = sent(s.on({ kind: 'frame', frame: hello }))[0];
    assert.ok(welcome?.type === 'welcome' && welcome.hash === 'xxh3-128');
  });

  test('no hash in common: the server answers UNSUPPORTED_PROTOCOL naming both lists', () => {
    const s = server();
    const hello = wire('hello', `{"protocol":1,"agentId":"future","name":"F","software":"tdxfer/9","nonce":"${makeNonce()}","hashes":["blake3-256"]}`);
    const actions = s.on({ kind: 'frame', frame: hello });
    const close = only(actions, 'close');
    assert.ok(close.how === 'fail');
    assert.equal(close.error.code, 'UNSUPPORTED_PROTOCOL');
    assert.match(close.error.message, /no file hash in common: F offers blake3-256, show-01 accepts XXH3-128, SHA-256 \(security\.hashes\)/);
    assert.equal(sent(actions).length, 0);
  });

  test('a WELCOME choosing a hash the client did not offer fails the handshake (PROTOCOL_ERROR)', () => {
    for (const chosen of ['xxh3-128', 'md5']) {
      const c = new ClientHandshake({ key: KEY, self: CLIENT, clientNonce: makeNonce(), where: 'h:1', handshakeTimeoutMs: 5000, hashes: ['sha256'] });
      const hello = sent(c.start())[0]!;
      assert.ok(hello.type === 'hello');
      const serverNonce = makeNonce();
      const proof = makeProof({ key: KEY, role: 'server', clientNonce: hello.nonce, serverNonce, agentId: 'srv' });
      const welcome = wire('welcome', `{"protocol":1,"agentId":"srv","name":"Srv","software":"x","nonce":"${serverNonce}","proof":"${proof}","inboxes":[],"encrypted":true,"hash":"${chosen}"}`);
      const actions = c.on({ kind: 'frame', frame: welcome });
      assert.deepEqual(actions.map((a) => a.kind), ['settle', 'close']);
      assert.match(only(actions, 'settle').error?.message ?? '', new RegExp(`chose the file hash "${chosen}", which this agent did not offer \\(it offered sha256\\)`));
      const close = only(actions, 'close');
      assert.ok(close.how === 'fail' && close.error.code === 'PROTOCOL_ERROR');
      assert.equal(c.step, 'failed');
    }
  });
});
