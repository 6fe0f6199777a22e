/** Pure helpers of the mDNS adapter (no socket is opened here: the host namespace stays quiet). */
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import type os from 'node:os';
import { instanceNameFor, hostNameFor, resolveInterfaces, MdnsDiscovery } from '../../src/discovery/mdns.js';
import { ownAddresses } from '../../src/discovery/mdns-names.js';
import { TdxError } from '../../src/errors.js';
import { memoryLogger } from '../../src/log.js';

type Nets = ReturnType<typeof os.networkInterfaces>;
const nic = (address: string, family: 'IPv4' | 'IPv6' = 'IPv4', internal = false): os.NetworkInterfaceInfo =>
  ({ address, family, internal, netmask: '255.255.255.0', mac: '02:00:00:00:00:01', cidr: null, ...(family === 'IPv6' ? { scopeid: 0 } : {}) }) as os.NetworkInterfaceInfo;
const nets: Nets = {
  lo: [nic('127.0.0.1', 'IPv4', true)],
  eth0: [nic('fe80::1', 'IPv6'), nic('192.168.1.10')],
  eth1: [nic('10.0.0.5'), nic('10.0.0.6')],
  wg0: [nic('fd00::5', 'IPv6')],
};

describe('instanceNameFor / hostNameFor', () => {
  test('name plus short id; distinct for two agents with one name', () => {
    assert.equal(instanceNameFor('playback-1', 'a1b2c3d4e5'), 'playback-1 (a1b2c3)');
    assert.notEqual(instanceNameFor('x', 'aaaaaa1'), instanceNameFor('x', 'bbbbbb1'));
  });
  test('dots and control characters removed; long names cut to a 63-byte label at a character boundary', () => {
    assert.equal(instanceNameFor('stage.left\n', 'abcdef'), 'stage-left (abcdef)');
    const long = instanceNameFor('é'.repeat(60), 'abcdef');
    assert.ok(Buffer.byteLength(long) <= 63, `${Buffer.byteLength(long)} bytes`);
    assert.match(long, /^é+ \(abcdef\)$/);
    assert.equal(instanceNameFor('...', 'abcdef'), '--- (abcdef)');
    assert.equal(instanceNameFor('  ', 'abcdef'), 'tdxfer (abcdef)');
  });
  test('host names are valid DNS labels under .local', () => {
    assert.equal(hostNameFor('Playback 1', 'A1B2C3D4'), 'playback-1-a1b2c3.local');
    assert.equal(hostNameFor('Écran_Gauche!', 'abcdef'), 'ecran-gauche-abcdef.local');
    assert.equal(hostNameFor('日本', 'abcdef'), 'tdxfer-abcdef.local');
    const h = hostNameFor('x'.repeat(100), 'abcdef');
    assert.ok(h.split('.')[0]!.length <= 63);
  });
});

describe('resolveInterfaces', () => {
  test('names -> their first IPv4; IPv4 literals kept; duplicates merged', () => {
    assert.deepEqual(resolveInterfaces(['eth0', 'eth1', '10.0.0.6', '192.168.1.10'], nets), [
      { label: 'eth0 (192.168.1.10)', address: '192.168.1.10' },
      { label: 'eth1 (10.0.0.5)', address: '10.0.0.5' },
      { label: '10.0.0.6', address: '10.0.0.6' },
    ]);
  });
  test('unknown name -> TdxError listing the existing interfaces', () => {
    assert.throws(
      () => resolveInterfaces(['eth9'], nets),
      (e: unknown) =>
        e instanceof TdxError &&
        e.code === 'DISCOVERY_INTERFACE' &&
        e.message.includes('"eth9"') &&
        e.message.includes('eth0 (192.168.1.10)') &&
        e.message.includes('wg0 (no IPv4)') &&
        e.message.includes('discovery.interfaces'),
    );
  });
  test('an address no NIC has, and a NIC without IPv4, are errors too', () => {
    assert.throws(() => resolveInterfaces(['10.9.9.9'], nets), /no network interface has the address 10\.9\.9\.9/);
    assert.throws(() => resolveInterfaces(['wg0'], nets), /"wg0" has no IPv4 address/);
  });
});

describe('ownAddresses', () => {
  test('a NIC lane publishes its own address; the default lane every non-internal IPv4 (no loopback, no IPv6)', () => {
    assert.deepEqual(ownAddresses('10.0.0.6', nets), ['10.0.0.6']);
    assert.deepEqual(ownAddresses(null, nets), ['192.168.1.10', '10.0.0.5', '10.0.0.6']);
    assert.deepEqual(ownAddresses(null, { lo: nets.lo! }), []);
  });
});

describe('MdnsDiscovery configuration errors', () => {
  test('start() rejects before opening any socket when an interface is unknown', async () => {
    const log = memoryLogger();
    const d = new MdnsDiscovery({ id: 'abcdef123456', name: 'x', port: 7000, txt: { id: 'abcdef123456' }, interfaces: ['no-such-nic0'], log });
    await assert.rejects(d.start(), (e: unknown) => e instanceof TdxError && e.code === 'DISCOVERY_INTERFACE' && /no-such-nic0/.test(e.message));
    await d.stop();
    assert.equal(d.instanceName, 'x (abcdef)');
    assert.equal(d.hostName, 'x-abcdef.local');
  });
});
