import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import fc from 'fast-check';
import {
  Base64Decoder,
  Base64DecoderCore,
  Base64MimeEncoder,
  LegacyAnswerDecoder,
  LegacyHeaderDecoder,
  LegacyProtocolError,
  base64MimeLength,
  encodeLegacyHeader,
  legacyAnswer,
  parseLegacyAnswer,
} from '../../src/protocol/legacy.js';
import { python } from './helpers.js';

async function through(t: NodeJS.ReadWriteStream & import('node:stream').Transform, chunks: Buffer[]): Promise<Buffer> {
  const out: Buffer[] = [];
  await pipeline(Readable.from(chunks), t, async (src: AsyncIterable<Buffer>) => {
    for await (const c of src) out.push(c);
  });
  return Buffer.concat(out);
}

function splitAt(buf: Buffer, cuts: number[]): Buffer[] {
  const points = [...new Set(cuts.map((c) => c % (buf.length + 1)))].sort((a, b) => a - b);
  const parts: Buffer[] = [];
  let prev = 0;
  for (const p of points) {
    parts.push(buf.subarray(prev, p));
    prev = p;
  }
  parts.push(buf.subarray(prev));
  return parts;
}

function decodeAll(chunks: Buffer[]): Buffer {
  const d = new Base64DecoderCore();
  const out = chunks.map((c) => d.push(c));
  d.end();
  return Buffer.concat(out);
}

function mustReject(input: string, pattern: RegExp): void {
  assert.throws(
    () => decodeAll([Buffer.from(input, 'latin1')]),
    (err: unknown) => err instanceof LegacyProtocolError && err.code === 'LEGACY_BAD_BASE64' && pattern.test(err.message),
    `expected ${JSON.stringify(input)} to be rejected with ${pattern}`,
  );
}

describe('legacy header', () => {
  test('is byte-identical to Python json.dumps with the original key order', () => {
    const h = encodeLegacyHeader({ file_name: 'clip 01.mov', 'content-length': 1234 });
    const json = '{"byteorder": "little", "content-type": "file", "content-encoding": "base64", "file_name": "clip 01.mov", "content-length": 1234}';
    assert.equal(h.readUInt16BE(0), Buffer.byteLength(json));
    assert.equal(h.subarray(2).toString('latin1'), json);
    assert.equal(h.length, 2 + json.length);
  });

  test('escapes names like Python ensure_ascii (checked against python3)', () => {
    const names = ['é.png', 'a"b\\c', 'tab\there', 'nl\nx', '\u0001\u001f\u007f', '日本語.txt', '😀.jpg', '/etc/x', 'C:\\x'];
    const expected = python(
      'import json,sys\nfor n in json.load(sys.stdin):\n  sys.stdout.write(json.dumps({"byteorder": "little", "content-type": "file", "content-encoding": "base64", "file_name": n, "content-length": 7})+"\\n")',
      Buffer.from(JSON.stringify(names)),
    )
      .toString('utf8')
      .split('\n');
    names.forEach((n, i) => {
      assert.equal(encodeLegacyHeader({ file_name: n, 'content-length': 7 }).subarray(2).toString('latin1'), expected[i], n);
    });
  });

  test('decodes at every split offset, returning the payload bytes that follow', () => {
    const bytes = Buffer.concat([encodeLegacyHeader({ file_name: 'x.bin', 'content-length': 9 }), Buffer.from('QUJD\nREVG')]);
    for (let cut = 0; cut <= bytes.length; cut++) {
      const d = new LegacyHeaderDecoder({ maxContentLength: 100 });
      const first = d.push(bytes.subarray(0, cut));
      const second = first ?? d.push(bytes.subarray(cut));
      assert.ok(second, `cut ${cut}`);
      assert.equal(second.header.file_name, 'x.bin');
      assert.equal(second.header['content-length'], 9);
      const payload = first ? Buffer.concat([first.rest, bytes.subarray(cut)]) : second.rest;
      assert.equal(payload.toString(), 'QUJD\nREVG', `cut ${cut}`);
    }
  });

  test('accepts the header written by Python itself', () => {
    const raw = python(
      'import json,struct,sys\nb=json.dumps({"byteorder": sys.byteorder, "content-type": "file", "content-encoding": "base64", "file_name": "über.txt", "content-length": 42}).encode()\nsys.stdout.buffer.write(struct.pack(">H",len(b))+b)',
    );
    const r = new LegacyHeaderDecoder({ maxContentLength: 1000 }).push(raw);
    assert.deepEqual(r?.header, { byteorder: 'little', 'content-type': 'file', 'content-encoding': 'base64', file_name: 'über.txt', 'content-length': 42 });
  });

  const bad: Array<[string, Buffer, RegExp]> = [
    ['zero length', Buffer.from([0, 0]), /length 0/],
    ['over the header limit', Buffer.from([0x50, 0x00]), /over the limit/],
    ['not JSON', Buffer.concat([Buffer.from([0, 3]), Buffer.from('{x}')]), /not valid UTF-8 JSON/],
    ['invalid UTF-8', Buffer.concat([Buffer.from([0, 3]), Buffer.from([0x22, 0xff, 0x22])]), /not valid UTF-8 JSON/],
    ['an array', frame('[1]'), /JSON object/],
    ['wrong content-type', frame('{"content-type": "text/json", "content-encoding": "base64", "file_name": "a", "content-length": 4}'), /content-type/],
    ['wrong encoding', frame('{"content-type": "file", "content-encoding": "utf-8", "file_name": "a", "content-length": 4}'), /content-encoding/],
    ['no file_name', frame('{"content-type": "file", "content-encoding": "base64", "content-length": 4}'), /file_name/],
    ['empty file_name', frame('{"content-type": "file", "content-encoding": "base64", "file_name": "", "content-length": 4}'), /file_name/],
    ['numeric file_name', frame('{"content-type": "file", "content-encoding": "base64", "file_name": 5, "content-length": 4}'), /file_name/],
    ['negative length', frame('{"content-type": "file", "content-encoding": "base64", "file_name": "a", "content-length": -1}'), /non-negative integer/],
    ['fractional length', frame('{"content-type": "file", "content-encoding": "base64", "file_name": "a", "content-length": 1.5}'), /non-negative integer/],
    ['string length', frame('{"content-type": "file", "content-encoding": "base64", "file_name": "a", "content-length": "4"}'), /non-negative integer/],
    ['length over the limit', frame('{"content-type": "file", "content-encoding": "base64", "file_name": "a", "content-length": 1001}'), /over the limit of 1000/],
  ];
  function frame(json: string): Buffer {
    const b = Buffer.from(json);
    const h = Buffer.alloc(2);
    h.writeUInt16BE(b.length);
    return Buffer.concat([h, b]);
  }
  for (const [what, bytes, pattern] of bad) {
    test(`rejects a header with ${what}`, () => {
      assert.throws(
        () => new LegacyHeaderDecoder({ maxContentLength: 1000, maxHeaderBytes: 16384 }).push(bytes),
        (err: unknown) => err instanceof LegacyProtocolError && pattern.test(err.message),
      );
    });
  }

  test('random bytes end in "need more", a header or a LegacyProtocolError, never anything else', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), (arr) => {
        try {
          new LegacyHeaderDecoder({ maxContentLength: 1 << 20 }).push(Buffer.from(arr));
        } catch (err) {
          return err instanceof LegacyProtocolError;
        }
        return true;
      }),
      { numRuns: 2000 },
    );
  });
});

describe('legacy answer', () => {
  test('true answer is byte-identical to the original receiver', () => {
    const a = legacyAnswer(true);
    const head = '{"byteorder": "little", "content-type": "text/json", "content-encoding": "utf-8", "content-length": 17}';
    assert.equal(a.readUInt16BE(0), head.length);
    assert.equal(a.subarray(2).toString('latin1'), head + '{"success": true}');
  });

  test('false answer carries the error text and round-trips at every split', () => {
    const a = legacyAnswer(false, 'name "../x" refused: traversal');
    for (let cut = 0; cut <= a.length; cut++) {
      const d = new LegacyAnswerDecoder();
      const r = d.push(a.subarray(0, cut)) ?? d.push(a.subarray(cut));
      assert.deepEqual(r, { success: false, error: 'name "../x" refused: traversal' }, `cut ${cut}`);
    }
    assert.equal(parseLegacyAnswer(a.subarray(0, a.length - 1)), null);
  });

  test('rejects an answer that is not text/json', () => {
    const b = Buffer.from('{"content-type": "file", "content-encoding": "base64", "content-length": 2}');
    const h = Buffer.alloc(2);
    h.writeUInt16BE(b.length);
    assert.throws(() => parseLegacyAnswer(Buffer.concat([h, b, Buffer.from('{}')])), /text\/json/);
  });
});

describe('MIME base64', () => {
  const sizes = [0, 1, 2, 3, 56, 57, 58, 76, 1000, 100000];
  const inputs = sizes.map((n) => randomBytes(n));
  const expected = python(
    'import sys,base64,json\nd=sys.stdin.buffer.read()\nfor n in ' + JSON.stringify(sizes) + ':\n  chunk,d=d[:n],d[n:]\n  e=base64.encodebytes(chunk)\n  sys.stdout.buffer.write(b"%d\\n"%len(e)+e)',
    Buffer.concat(inputs),
  );
  const pyOut: Buffer[] = [];
  for (let off = 0, i = 0; i < sizes.length; i++) {
    const nl = expected.indexOf(0x0a, off);
    const len = Number(expected.subarray(off, nl).toString());
    pyOut.push(expected.subarray(nl + 1, nl + 1 + len));
    off = nl + 1 + len;
  }

  sizes.forEach((n, i) => {
    test(`encoder output equals Python base64.encodebytes for ${n} bytes, in any chunking`, async () => {
      const input = inputs[i]!;
      assert.deepEqual(await through(new Base64MimeEncoder(), [input]), pyOut[i]);
      assert.deepEqual(await through(new Base64MimeEncoder(), splitAt(input, [1, 7, 57, 58, 200, 4095])), pyOut[i]);
      assert.equal(base64MimeLength(n), pyOut[i]!.length);
      assert.deepEqual(await through(new Base64Decoder(), splitAt(pyOut[i]!, [3, 76, 77, 1000])), input);
    });
  });

  test('base64MimeLength is exact for every size up to 2000', async () => {
    for (let n = 0; n <= 2000; n++) {
      const e = await through(new Base64MimeEncoder(), [Buffer.alloc(n, n & 0xff)]);
      assert.equal(base64MimeLength(n), e.length, `n=${n}`);
    }
    assert.throws(() => base64MimeLength(-1), RangeError);
  });

  test('decoder round-trips arbitrary data, line lengths, CRLF and chunk splits', () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ maxLength: 600 }),
        fc.integer({ min: 0, max: 120 }),
        fc.boolean(),
        fc.array(fc.nat(), { maxLength: 12 }),
        (arr, lineLen, crlf, cuts) => {
          const data = Buffer.from(arr);
          const b64 = data.toString('base64');
          let text = b64;
          if (lineLen > 0) {
            const lines = b64.match(new RegExp(`.{1,${lineLen}}`, 'g')) ?? [];
            text = lines.map((l) => l + (crlf ? '\r\n' : '\n')).join('');
          }
          const decoded = decodeAll(splitAt(Buffer.from(text, 'latin1'), cuts));
          assert.deepEqual(decoded, data);
        },
      ),
      { numRuns: 1000 },
    );
  });

  test('decoder tolerates no line breaks at all and CRLF (Python-written)', () => {
    const data = randomBytes(500);
    assert.deepEqual(decodeAll([Buffer.from(data.toString('base64'))]), data);
    const crlf = python('import sys,base64\nsys.stdout.buffer.write(base64.encodebytes(sys.stdin.buffer.read()).replace(b"\\n", b"\\r\\n"))', data);
    assert.deepEqual(decodeAll(splitAt(crlf, [77, 78, 79])), data);
  });

  test('decoder rejects invalid characters and bad padding with a clear error', () => {
    mustReject('QUJD*EVG', /invalid character '\*' \(0x2a\) at byte 4/);
    mustReject('QUJD REVG', /invalid character ' ' \(0x20\)/);
    mustReject('QUJD\tREVG', /invalid character 0x09/);
    mustReject('QUJD-_', /invalid character '-'/);
    mustReject('QUJ\u00ff', /invalid character 0xff/);
    mustReject('QQ=', /ends inside a 4-character group/);
    mustReject('QUI', /ends inside a 4-character group/);
    mustReject('Q', /ends inside a 4-character group/);
    mustReject('Q===', /'=' padding at position 2/);
    mustReject('====', /'=' padding at position 1/);
    mustReject('QQ===', /too much '=' padding/);
    mustReject('QQ=Q', /after the '=' padding/);
    mustReject('QQ==QQ==', /after the '=' padding/);
    mustReject('QUI=\nQUJD\n', /after the '=' padding/);
  });

  test('decoder errors surface through the Transform', async () => {
    await assert.rejects(through(new Base64Decoder(), [Buffer.from('QUJD\n'), Buffer.from('RE!G\n')]), /invalid character '!' .* at byte 7/);
    await assert.rejects(through(new Base64Decoder(), [Buffer.from('QUJDRA')]), /ends inside a 4-character group/);
  });

  test('decoder enforces the decoded size limit', () => {
    const d = new Base64DecoderCore(10);
    assert.throws(() => d.push(Buffer.from(randomBytes(12).toString('base64'))), (e: unknown) => e instanceof LegacyProtocolError && e.code === 'LEGACY_TOO_LARGE');
  });
});
