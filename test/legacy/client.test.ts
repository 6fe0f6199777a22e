import { test, describe, beforeEach, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { sendLegacyFile, legacyTargetName } from '../../src/legacy/client.js';
import { TdxError } from '../../src/errors.js';
import { memoryLogger } from '../../src/log.js';
import { startPyReceiver, type PyReceiver } from './helpers.js';

let tmp: string;
beforeEach(async () => {
  tmp = await fs.promises.mkdtemp(path.join(os.tmpdir(), 'tdxfer-legacy-client-'));
});
afterEach(async () => {
  await fs.promises.rm(tmp, { recursive: true, force: true });
});

function isCode(code: string, msg?: RegExp) {
  return (err: unknown): boolean => {
    assert.ok(err instanceof TdxError, `expected a TdxError, got ${String(err)}`);
    assert.equal(err.code, code, err.message);
    if (msg) assert.match(err.message, msg);
    return true;
  };
}

/** A TCP server on 127.0.0.1 that runs `onConn` for each connection; for peers that misbehave on purpose. */
async function rawServer(onConn: (s: net.Socket) => void): Promise<{ port: number; close(): Promise<void> }> {
  const sockets = new Set<net.Socket>();
  const srv = net.createServer((s) => {
    sockets.add(s);
    s.on('error', () => {});
    s.on('close', () => sockets.delete(s));
    onConn(s);
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  return {
    port: (srv.address() as net.AddressInfo).port,
    close: () =>
      new Promise<void>((r) => {
        for (const s of sockets) s.destroy();
        srv.close(() => r());
      }),
  };
}

describe('legacyTargetName', () => {
  test('sends the base name by default, the relative path when not flattened', () => {
    assert.equal(legacyTargetName('shows/2024/clip.mov'), 'clip.mov');
    assert.equal(legacyTargetName('shows/2024/clip.mov', true), 'clip.mov');
    assert.equal(legacyTargetName('clip.mov', true), 'clip.mov');
    assert.equal(legacyTargetName('shows/2024/clip.mov', false), 'shows/2024/clip.mov');
  });
});

describe('sendLegacyFile to the Python TOX receiver', () => {
  let rx: PyReceiver;
  let target: string;
  beforeEach(async () => {
    target = path.join(tmp, 'target');
    await fs.promises.mkdir(target);
    rx = await startPyReceiver(target);
  });
  afterEach(async () => {
    await rx.stop();
  });

  test('delivers 20 files byte-identical, one connection each', async () => {
    const sizes = [0, 1, 2, 3, 56, 57, 58, 76, 77, 1000, 4096, 65535, 65536, 100_000, 262_144, 262_145, 1_000_000, 3_000_000, 123_457, 5];
    const src = path.join(tmp, 'src');
    await fs.promises.mkdir(src);
    const files = sizes.map((n, i) => ({ name: `f${String(i).padStart(2, '0')} é ${n}.bin`, data: randomBytes(n) }));
    for (const f of files) await fs.promises.writeFile(path.join(src, f.name), f.data);
    const log = memoryLogger();
    for (const f of files) {
      let last: [number, number] = [-1, -1];
      await sendLegacyFile({
        host: '127.0.0.1',
        port: rx.port,
        file: path.join(src, f.name),
        targetName: f.name,
        log,
        timeoutMs: 10_000,
        onProgress: (done, total) => (last = [done, total]),
      });
      if (f.data.length > 0) assert.deepEqual(last, [f.data.length, f.data.length], f.name);
    }
    const lines = await rx.waitLines(files.length);
    assert.deepEqual(
      lines,
      files.map((f) => `RECEIVED ${f.name} ${f.data.length}`),
    );
    for (const f of files) {
      const got = await fs.promises.readFile(path.join(target, f.name));
      assert.ok(got.equals(f.data), `${f.name} differs`);
    }
  });

  test('a name with a missing folder makes the TOX drop the connection: LEGACY_NO_ANSWER with the hint', async () => {
    const file = path.join(tmp, 'x.bin');
    await fs.promises.writeFile(file, randomBytes(5000));
    await assert.rejects(
      sendLegacyFile({ host: '127.0.0.1', port: rx.port, file, targetName: legacyTargetName('no/such/folder/x.bin', false), timeoutMs: 10_000 }),
      isCode('LEGACY_NO_ANSWER', /drops the connection when a folder in the file name does not exist.*base names by default/),
    );
    const [line] = await rx.waitLines(1);
    assert.match(line!, /^DROPPED no\/such\/folder\/x\.bin /);
    assert.deepEqual(await fs.promises.readdir(target), []);
  });
});

describe('sendLegacyFile failures', () => {
  test('nothing listening: CONNECT_FAILED', async () => {
    const srv = await rawServer(() => {});
    const port = srv.port;
    await srv.close();
    const file = path.join(tmp, 'a');
    await fs.promises.writeFile(file, 'abc');
    await assert.rejects(sendLegacyFile({ host: '127.0.0.1', port, file, targetName: 'a' }), isCode('CONNECT_FAILED', /127\.0\.0\.1:\d+/));
  });

  test('a receiver that reads but never answers: TIMEOUT', async () => {
    const srv = await rawServer((s) => s.resume());
    try {
      const file = path.join(tmp, 'a');
      await fs.promises.writeFile(file, randomBytes(10_000));
      // The receiver never answers: rejecting at all proves the timeout fired.
      await assert.rejects(sendLegacyFile({ host: '127.0.0.1', port: srv.port, file, targetName: 'a', timeoutMs: 300 }), isCode('TIMEOUT', /waiting for the answer/));
    } finally {
      await srv.close();
    }
  });

  test('a receiver that closes at once without answering: LEGACY_NO_ANSWER', async () => {
    const srv = await rawServer((s) => s.destroy());
    try {
      const file = path.join(tmp, 'a');
      await fs.promises.writeFile(file, randomBytes(2_000_000));
      await assert.rejects(sendLegacyFile({ host: '127.0.0.1', port: srv.port, file, targetName: 'a', timeoutMs: 60_000 }), isCode('LEGACY_NO_ANSWER'));
    } finally {
      await srv.close();
    }
  });

  test('an answer that is not TOX framing: LEGACY_BAD_ANSWER', async () => {
    const srv = await rawServer((s) => {
      s.resume();
      s.end('HTTP/1.1 400 Bad Request\r\n\r\n');
    });
    try {
      const file = path.join(tmp, 'a');
      await fs.promises.writeFile(file, 'abc');
      await assert.rejects(sendLegacyFile({ host: '127.0.0.1', port: srv.port, file, targetName: 'a', timeoutMs: 60_000 }), isCode('LEGACY_BAD_ANSWER'));
    } finally {
      await srv.close();
    }
  });

  test('cancelled through the signal: ABORTED', async () => {
    const srv = await rawServer((s) => s.resume());
    try {
      const file = path.join(tmp, 'a');
      await fs.promises.writeFile(file, 'abc');
      const ac = new AbortController();
      setTimeout(() => ac.abort(), 100);
      await assert.rejects(sendLegacyFile({ host: '127.0.0.1', port: srv.port, file, targetName: 'a', signal: ac.signal }), isCode('ABORTED'));
    } finally {
      await srv.close();
    }
  });

  test('a file that shrinks while being sent: SOURCE_CHANGED, and the receiver sees the connection cut short', async () => {
    let peer!: net.Socket;
    let got = 0;
    let peerClosed!: Promise<void>;
    let midFile!: () => void;
    const sendingStarted = new Promise<void>((r) => (midFile = r));
    const srv = await rawServer((s) => {
      peer = s;
      s.on('data', (d: Buffer) => (got += d.length));
      // Stall the sender once its first bytes are here: TCP flow control stops its pipeline mid-file.
      s.once('data', () => {
        s.pause();
        midFile();
      });
      peerClosed = new Promise((r) => s.once('close', () => r()));
    });
    try {
      const file = path.join(tmp, 'shrinks');
      await fs.promises.writeFile(file, randomBytes(8_000_000));
      // Handled from the start: it may fail before the assertion below is reached.
      const sending = sendLegacyFile({ host: '127.0.0.1', port: srv.port, file, targetName: 'shrinks', timeoutMs: 60_000 }).then(
        () => assert.fail('expected SOURCE_CHANGED'),
        (err: unknown) => err,
      );
      await sendingStarted;
      await fs.promises.truncate(file, 100_000);
      peer.resume();
      assert.ok(isCode('SOURCE_CHANGED', /shrank from 8000000 to \d+ bytes/)(await sending));
      await peerClosed;
      assert.ok(got < 8_000_000 * 1.35, 'the receiver must not get the full announced payload');
    } finally {
      await srv.close();
    }
  });

  test('a missing source file: SOURCE_UNREADABLE, no connection made', async () => {
    let connections = 0;
    const srv = await rawServer(() => connections++);
    try {
      await assert.rejects(
        sendLegacyFile({ host: '127.0.0.1', port: srv.port, file: path.join(tmp, 'missing'), targetName: 'missing' }),
        isCode('SOURCE_UNREADABLE', /missing/),
      );
      assert.equal(connections, 0);
    } finally {
      await srv.close();
    }
  });
});
