import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { loadConfig } from '../../src/config/index.js';
import { KEY, baseConfig, rejectsConfig, tempDir, writeConfig } from './_helpers.js';

/** Loads `cfg` from a temp file; returns the promise and the file path. */
async function load(cfg: unknown): Promise<{ p: ReturnType<typeof loadConfig>; file: string; dir: string }> {
  const dir = await tempDir();
  const file = await writeConfig(dir, cfg);
  return { p: loadConfig(file, { env: { TDXFER_DATA_DIR: dir }, hostname: 'test-host' }), file, dir };
}

describe('schema errors name the field, the value and what is allowed', () => {
  test('the base config is valid', async () => {
    const { p } = await load(baseConfig());
    const cfg = await p;
    assert.equal(cfg.name, 'render-1');
  });

  test('listen.port: wrong type', async () => {
    const cfg = baseConfig();
    cfg.listen = { port: 'abc' };
    const { p, file } = await load(cfg);
    const err = await rejectsConfig(p, 'listen.port', ['`listen.port` must be an integer from 0 to 65535', 'got "abc" (string)']);
    assert.ok(err.message.startsWith(`Config error in ${file}: `), err.message);
  });

  test('peer port out of range and not an integer', async () => {
    const cfg = baseConfig();
    cfg.peers[0].port = 70000;
    await rejectsConfig((await load(cfg)).p, 'peers[0].port', ['must be an integer from 1 to 65535', 'got 70000 (number)']);
    cfg.peers[0].port = 0;
    await rejectsConfig((await load(cfg)).p, 'peers[0].port', ['from 1 to 65535', 'got 0 (number)']);
    cfg.peers[0].port = 7770.5;
    await rejectsConfig((await load(cfg)).p, 'peers[0].port', ['got 7770.5 (number)']);
  });

  test('listen.port 0 (any free port) is allowed', async () => {
    const cfg = baseConfig();
    cfg.listen = { host: '127.0.0.1', port: 0 };
    assert.equal((await (await load(cfg)).p).listen.port, 0);
  });

  test('enum: inbox onCollision lists the allowed values', async () => {
    const cfg = baseConfig();
    cfg.inboxes[0].onCollision = 'replace';
    await rejectsConfig((await load(cfg)).p, 'inboxes[0].onCollision', ['must be one of "overwrite", "rename", "skip"', 'got "replace" (string)']);
  });

  test('enum: outbox after', async () => {
    const cfg = baseConfig();
    cfg.outboxes[0].after = 'move';
    await rejectsConfig((await load(cfg)).p, 'outboxes[0].after', ['one of "archive", "delete", "keep"', '"move"']);
  });

  test('settleMs range 0..600000', async () => {
    const cfg = baseConfig();
    cfg.outboxes[0].settleMs = 600_001;
    await rejectsConfig((await load(cfg)).p, 'outboxes[0].settleMs', ['from 0 to 600000', 'got 600001 (number)']);
    cfg.outboxes[0].settleMs = -1;
    await rejectsConfig((await load(cfg)).p, 'outboxes[0].settleMs', ['got -1 (number)']);
    cfg.outboxes[0].settleMs = 0;
    assert.equal((await (await load(cfg)).p).outboxes[0]!.settleMs, 0);
  });

  test('transfer.chunkBytes stays within the DATA frame limit of the protocol; limits.eagerMaxBytes within 0..16 MiB', async () => {
    const cfg = baseConfig() as Record<string, unknown>;
    cfg.transfer = { chunkBytes: 2 * 1024 * 1024 };
    await rejectsConfig((await load(cfg)).p, 'transfer.chunkBytes', ['from 4096 to 1048576', 'got 2097152 (number)']);
    cfg.transfer = {};
    cfg.limits = { eagerMaxBytes: 16 * 1024 * 1024 + 1 };
    await rejectsConfig((await load(cfg)).p, 'limits.eagerMaxBytes', ['from 0 to 16777216']);
    cfg.limits = { eagerMaxBytes: 0 };
    assert.equal((await (await load(cfg)).p).limits.eagerMaxBytes, 0);
  });

  test('the sending memory (transfer.readBufferBytes, .eagerBufferBytes, .fanoutLagBytes): ranges, and the lag within half of the read buffers', async () => {
    const cfg = baseConfig() as Record<string, unknown>;
    cfg.transfer = { readBufferBytes: 8 * 1024 };
    await rejectsConfig((await load(cfg)).p, 'transfer.readBufferBytes', ['from 16384 to 1073741824', 'got 8192 (number)']);
    cfg.transfer = { eagerBufferBytes: -1 };
    await rejectsConfig((await load(cfg)).p, 'transfer.eagerBufferBytes', ['from 0 to 1073741824']);
    cfg.transfer = { readBufferBytes: 2 * 1024 * 1024 }; // chunkBytes 1 MiB: 4 chunks at least
    await rejectsConfig((await load(cfg)).p, 'transfer.readBufferBytes', ['less than 4 × `transfer.chunkBytes` (4194304)']);
    cfg.transfer = { readBufferBytes: 8 * 1024 * 1024, fanoutLagBytes: 5 * 1024 * 1024 };
    await rejectsConfig((await load(cfg)).p, 'transfer.fanoutLagBytes', ['half of `transfer.readBufferBytes` (4194304)']);
    cfg.transfer = { fanoutLagBytes: 1024 * 1024 };
    await rejectsConfig((await load(cfg)).p, 'transfer.fanoutLagBytes', ['from 2 × `transfer.chunkBytes` (2097152)']);
    // Left out, the lag follows smaller read buffers (half of them): no error for a field not written.
    cfg.transfer = { readBufferBytes: 8 * 1024 * 1024, eagerBufferBytes: 0 };
    const ok = await (await load(cfg)).p;
    assert.deepEqual([ok.transfer.readBufferBytes, ok.transfer.eagerBufferBytes, ok.transfer.fanoutLagBytes], [8 * 1024 * 1024, 0, 16 * 1024 * 1024]);
    cfg.transfer = { chunkBytes: 65536, readBufferBytes: 1024 * 1024, fanoutLagBytes: 512 * 1024 };
    assert.equal((await (await load(cfg)).p).transfer.fanoutLagBytes, 512 * 1024);
  });

  test('required field missing', async () => {
    const cfg = baseConfig();
    delete cfg.inboxes[0].path;
    await rejectsConfig((await load(cfg)).p, 'inboxes[0].path', ['`inboxes[0].path` is missing', 'must be a path']);
  });

  test('route peer must be a name or "*"', async () => {
    const cfg = baseConfig();
    cfg.outboxes[0].to.push({ peer: 'bad name', inbox: 'x' });
    await rejectsConfig((await load(cfg)).p, 'outboxes[0].to[1].peer', ['must be a peer name', '"*"', 'got "bad name" (string)']);
  });

  test('empty outbox `to` list', async () => {
    const cfg = baseConfig();
    cfg.outboxes[0].to = [];
    await rejectsConfig((await load(cfg)).p, 'outboxes[0].to', ['must be a non-empty list of destinations', 'got [] (array)']);
  });

  test('a whole section of the wrong type', async () => {
    const cfg = baseConfig();
    cfg.inboxes = { name: 'x' };
    await rejectsConfig((await load(cfg)).p, 'inboxes', ['must be a list of inboxes', '(object)']);
  });

  test('the top level must be an object', async () => {
    await rejectsConfig((await load([1, 2])).p, '(top level)', ['must be an object', '(array)']);
  });

  test('several problems are all reported, the first one sets `field`', async () => {
    const cfg = baseConfig();
    cfg.listen = { port: 'abc' };
    cfg.log = { level: 'verbose' };
    const err = await rejectsConfig((await load(cfg)).p, 'listen.port', ['Config errors in', '(2)', '`log.level` must be one of "error", "warn", "info", "debug"']);
    assert.match(err.message, /\n {2}- `listen\.port`/);
  });
});

describe('unknown fields', () => {
  test('a typo gets a did-you-mean hint and the list of allowed fields', async () => {
    const cfg = baseConfig();
    cfg.outboxes[0].settleMS = 500;
    await rejectsConfig((await load(cfg)).p, 'outboxes[0].settleMS', [
      '`outboxes[0].settleMS` is not a known field; did you mean `settleMs`?',
      'Fields allowed in `outboxes[0]`: path, to, include, exclude, after, settleMs, followSymlinks, networkDrive.',
    ]);
  });

  test('top-level typo', async () => {
    const cfg = baseConfig();
    cfg.peer = [];
    await rejectsConfig((await load(cfg)).p, 'peer', ['did you mean `peers`?', 'at the top level']);
  });

  test('no hint when nothing is close', async () => {
    const cfg = baseConfig();
    cfg.security.wibble = true;
    const err = await rejectsConfig((await load(cfg)).p, 'security.wibble', ['is not a known field.', 'key, keyFile, encrypt']);
    assert.ok(!err.message.includes('did you mean'));
  });

  test('"$comment" is allowed everywhere', async () => {
    const cfg = baseConfig();
    cfg.$comment = ['notes'];
    cfg.inboxes[0].$comment = 'the renders inbox';
    await (await load(cfg)).p;
  });
});

describe('cross-field rules', () => {
  test('inbox names are unique ignoring case', async () => {
    const cfg = baseConfig();
    cfg.inboxes.push({ name: 'Renders', path: 'in2' });
    await rejectsConfig((await load(cfg)).p, 'inboxes[1].name', ['"Renders"', 'already used by `inboxes[0].name`']);
  });

  test('route to an unknown peer', async () => {
    const cfg = baseConfig();
    cfg.outboxes[0].to[0].peer = 'playback-2';
    await rejectsConfig((await load(cfg)).p, 'outboxes[0].to[0].peer', [
      'unknown peer "playback-2": add it to "peers" or enable discovery',
      'did you mean "playback-1"?',
    ]);
  });

  test('with discovery on, any name and "*" are allowed', async () => {
    const cfg = baseConfig();
    cfg.discovery = { enabled: true };
    cfg.outboxes[0].to = [{ peer: 'somewhere', inbox: 'renders' }, { peer: '*', inbox: 'renders' }];
    const loaded = await (await load(cfg)).p;
    assert.deepEqual(loaded.outboxes[0]!.to.map((r) => r.peer), ['somewhere', '*']);
  });

  test('"*" needs discovery', async () => {
    const cfg = baseConfig();
    cfg.outboxes[0].to = [{ peer: '*', inbox: 'renders' }];
    await rejectsConfig((await load(cfg)).p, 'outboxes[0].to[0].peer', ['is "*"', 'discovery is off', '"enabled": true']);
  });

  test('a route to a tdxfer peer needs an inbox; a legacy peer does not', async () => {
    const cfg = baseConfig();
    delete cfg.outboxes[0].to[0].inbox;
    await rejectsConfig((await load(cfg)).p, 'outboxes[0].to[0].inbox', ['is missing', '"playback-1" is a tdxfer agent']);
    cfg.peers.push({ name: 'oldbox', host: '127.0.0.1', port: 7000, protocol: 'legacy' });
    cfg.outboxes[0].to = [{ peer: 'oldbox' }];
    const loaded = await (await load(cfg)).p;
    assert.deepEqual(loaded.outboxes[0]!.to, [{ peer: 'oldbox', flatten: true }]);
  });

  test('a route to this agent itself must name one of its inboxes', async () => {
    const cfg = baseConfig();
    cfg.outboxes[0].to = [{ peer: 'render-1', inbox: 'renderz' }];
    await rejectsConfig((await load(cfg)).p, 'outboxes[0].to[0].inbox', ['"renderz"', 'has no such inbox', 'did you mean "renders"?']);
    cfg.outboxes[0].to = [{ peer: 'render-1', inbox: 'renders' }];
    assert.equal((await (await load(cfg)).p).outboxes[0]!.to[0]!.flatten, false);
  });

  test('legacy.listen needs legacy.inbox naming an inbox here', async () => {
    const cfg = baseConfig();
    cfg.legacy = { listen: { host: '127.0.0.1', port: 0 } };
    await rejectsConfig((await load(cfg)).p, 'legacy.inbox', ['is missing', '"renders"']);
    cfg.legacy.inbox = 'rendrs';
    await rejectsConfig((await load(cfg)).p, 'legacy.inbox', ['"rendrs"', 'not an inbox of this agent', 'did you mean "renders"?']);
    cfg.legacy.inbox = 'renders';
    assert.equal((await (await load(cfg)).p).legacy.inbox, 'renders');
  });

  test('legacy.allow entries are IPs or CIDRs', async () => {
    const cfg = baseConfig();
    cfg.legacy = { allow: ['10.0.0.0/24', '192.168.1.7', 'fe80::/10', '10.0.0.0/33'] };
    await rejectsConfig((await load(cfg)).p, 'legacy.allow[3]', ['"10.0.0.0/33"', 'not an IP address or CIDR']);
    cfg.legacy.allow = ['studio-net'];
    await rejectsConfig((await load(cfg)).p, 'legacy.allow[0]', ['"studio-net"']);
  });

  test('a status API reachable from the network needs a token', async () => {
    const cfg = baseConfig();
    cfg.status = { host: '0.0.0.0' };
    await rejectsConfig((await load(cfg)).p, 'status.token', ['is missing', '"0.0.0.0"', 'openssl rand -hex 16']);
    cfg.status.token = 'x'.repeat(16);
    await (await load(cfg)).p;
    cfg.status = { host: '::1' };
    await (await load(cfg)).p;
    cfg.status = { host: '10.0.0.1', enabled: false };
    await (await load(cfg)).p;
  });

  test('status.token must be at least 16 characters', async () => {
    const cfg = baseConfig();
    cfg.status = { token: 'short' };
    await rejectsConfig((await load(cfg)).p, 'status.token', ['at least 16 characters', '"short" (string)']);
  });

  test('an outbox inside an inbox (or the reverse) is a loop', async () => {
    const cfg = baseConfig();
    cfg.outboxes[0].path = 'in/sub';
    await rejectsConfig((await load(cfg)).p, 'outboxes[0].path', ['overlaps inbox `inboxes[0].path`', 'loop']);
    // The config folder itself holds the inbox and (by default) its staging folder: both are reported.
    cfg.outboxes[0].path = '.';
    await rejectsConfig((await load(cfg)).p, 'outboxes[0].path', ['overlaps inbox', '`inboxes[0].staging` is', 'inside outbox `outboxes[0].path`']);
    cfg.outboxes[0].path = 'in-other';
    await (await load(cfg)).p;
  });

  test('staging inside the inbox would show partial files', async () => {
    const cfg = baseConfig();
    cfg.inboxes[0].staging = 'in/.staging';
    await rejectsConfig((await load(cfg)).p, 'inboxes[0].staging', ['inside inbox `inboxes[0].path`', 'partial files']);
  });

  test('retryMaxMs must not be below retryInitialMs', async () => {
    const cfg = baseConfig();
    cfg.transfer = { retryInitialMs: 5000, retryMaxMs: 1000 };
    await rejectsConfig((await load(cfg)).p, 'transfer.retryMaxMs', ['is 1000', '`transfer.retryInitialMs` (5000)']);
  });

  test('security.key must be base64 of exactly 32 bytes', async () => {
    const cfg = baseConfig();
    cfg.security = { key: Buffer.alloc(16).toString('base64') };
    await rejectsConfig((await load(cfg)).p, 'security.key', ['decodes to 16 bytes, not 32', 'tdxfer init', 'openssl rand -base64 32']);
    cfg.security = { key: 'not base64 at all!' };
    await rejectsConfig((await load(cfg)).p, 'security.key', ['is not base64 text']);
  });

  test('security.key and security.keyFile together', async () => {
    const cfg = baseConfig();
    cfg.security = { key: KEY, keyFile: 'tdxfer.key' };
    await rejectsConfig((await load(cfg)).p, 'security.keyFile', ['together with `security.key`', 'not both']);
  });
});
