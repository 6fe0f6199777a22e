import { test } from 'node:test';
import assert from 'node:assert/strict';
import { buildAllowList, normalizeAddress } from '../../src/legacy/allow.js';
import { ConfigError } from '../../src/errors.js';

test('an empty allow-list allows every source', () => {
  const a = buildAllowList([]);
  for (const ip of ['127.0.0.1', '10.1.2.3', '::1', '::ffff:192.168.0.9']) assert.equal(a.allows(ip), true, ip);
});

test('addresses and CIDRs, IPv4 and IPv6; IPv4-mapped IPv6 sources are checked as IPv4', () => {
  const a = buildAllowList(['127.0.0.2', '10.0.0.0/8', 'fd00::/8', '::ffff:192.168.1.1']);
  const cases: Array<[string, boolean]> = [
    ['127.0.0.2', true],
    ['::ffff:127.0.0.2', true],
    ['::FFFF:10.200.1.1', true],
    ['127.0.0.1', false],
    ['::ffff:127.0.0.1', false],
    ['10.255.255.255', true],
    ['11.0.0.1', false],
    ['fd12::1', true],
    ['fe80::1%eth0', false],
    ['192.168.1.1', true],
    ['192.168.1.2', false],
    ['', false],
    ['not-an-ip', false],
  ];
  for (const [ip, want] of cases) assert.equal(a.allows(ip), want, ip);
});

test('a bad entry is a ConfigError naming the field', () => {
  for (const [bad, msg] of [
    ['host.local', /IP address or CIDR/],
    ['10.0.0.0/33', /prefix length must be 0-32/],
    ['fd00::/129', /prefix length must be 0-128/],
    ['10.0.0.0/x', /prefix length/],
    ['10.0.0.0/8/8', /IP address or CIDR/],
  ] as const) {
    assert.throws(
      () => buildAllowList(['127.0.0.1', bad]),
      (err: unknown) => err instanceof ConfigError && err.field === 'legacy.allow[1]' && msg.test(err.message),
      bad,
    );
  }
});

test('normalizeAddress unwraps IPv4-mapped IPv6 and drops zone ids', () => {
  assert.equal(normalizeAddress('::ffff:1.2.3.4'), '1.2.3.4');
  assert.equal(normalizeAddress('fe80::1%eth0'), 'fe80::1');
  assert.equal(normalizeAddress('::1'), '::1');
});
