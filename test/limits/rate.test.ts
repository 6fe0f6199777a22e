import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { formatRate, parseRate } from '../../src/limits/rate.js';

describe('parseRate', () => {
  it('reads the forms people write', () => {
    assert.equal(parseRate('20MB/s'), 20_000_000);
    assert.equal(parseRate('160Mbit/s'), 20_000_000);
    assert.equal(parseRate('1Gbit/s'), 125_000_000);
    assert.equal(parseRate('500KiB/s'), 512_000);
    assert.equal(parseRate('2.5 MB/s'), 2_500_000);
    assert.equal(parseRate('20MBps'), 20_000_000);
    assert.equal(parseRate('2500000'), 2_500_000);
    assert.equal(parseRate('100kB'), 100_000);
  });

  it('0 and off mean unlimited', () => {
    for (const s of ['0', 'off', 'OFF', 'unlimited', ' 0 ']) assert.equal(parseRate(s), 0);
  });

  it('refuses what it cannot read, saying how to write it', () => {
    assert.throws(() => parseRate('fast'), (e: Error & { code?: string }) => e.code === 'BAD_RATE' && /20MB\/s/.test(e.message));
    assert.throws(() => parseRate('20Mb/s'), /ambiguous.*20Mbit\/s.*20MB\/s/);
    assert.throws(() => parseRate('20M/s'), /no unit/);
    assert.throws(() => parseRate('-5MB/s'), /cannot read/);
    assert.throws(() => parseRate('0.1B/s'), /rounds to 0/);
  });
});

describe('formatRate', () => {
  it('shows bytes and bits', () => {
    assert.equal(formatRate(0), 'unlimited');
    assert.equal(formatRate(20_000_000), '20.0 MB/s (160 Mbit/s)');
  });
});
