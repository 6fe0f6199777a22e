/**
 * The namespace harness itself (test/helpers/netns.ts): isolation, cable pull, address
 * change, cleanup. Real TCP between two private namespaces; skipped when not root.
 */
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createInterface } from 'node:readline';
import { canUseNetns, createNetns, type Netns } from '../helpers/netns.js';

const can = canUseNetns();

const SERVER = `const s=require('net').createServer(c=>c.end('hi'));s.listen(0,'0.0.0.0',()=>console.log(s.address().port));`;
const CLIENT = `const [h,p]=process.argv.slice(1);const c=require('net').connect({host:h,port:+p});c.setTimeout(800,()=>{console.log('timeout');process.exit(2)});c.on('data',d=>{console.log(String(d));process.exit(0)});c.on('error',e=>{console.log(e.code);process.exit(1)});`;

function connect(net: Netns, from: number, host: string, port: number): string {
  return net.run(from, process.execPath, ['-e', CLIENT, host, String(port)], 5000).stdout.trim();
}

function namespaces(): string[] {
  return spawnSync('ip', ['netns', 'list'], { encoding: 'utf8' }).stdout.split('\n').map((l) => l.split(' ')[0]!);
}

describe('netns harness', { skip: can.ok ? false : can.reason, timeout: 30_000 }, () => {
  test('isolated hosts on a private bridge: cable pull, address change, full cleanup', async () => {
    const net = createNetns({ hosts: 2 });
    try {
      assert.equal(net.hosts.length, 2);
      for (const h of net.hosts) {
        assert.ok(namespaces().includes(h.ns));
        assert.match(h.ip, new RegExp(`^${net.subnet.replace(/\./g, '\\.')}\\.\\d+$`));
        const routes = spawnSync('ip', ['-n', h.ns, 'route', 'show'], { encoding: 'utf8' }).stdout;
        assert.match(routes, /224\.0\.0\.0\/4 dev tdx0/);
        assert.doesNotMatch(routes, /default/);
        const links = spawnSync('ip', ['-n', h.ns, '-o', 'link', 'show'], { encoding: 'utf8' }).stdout;
        assert.deepEqual(links.split('\n').filter(Boolean).map((l) => l.split(': ')[1]!.split('@')[0]), ['lo', 'tdx0']);
      }
      assert.notEqual(net.hosts[0]!.ip, net.hosts[1]!.ip);

      const server = net.exec(0, process.execPath, ['-e', SERVER], { stdio: ['ignore', 'pipe', 'inherit'] });
      const port = Number(await new Promise<string>((r) => createInterface({ input: server.stdout! }).once('line', r)));
      assert.ok(port > 0);
      assert.equal(connect(net, 1, net.hosts[0]!.ip, port), 'hi');

      net.setLink(0, false);
      assert.equal(connect(net, 1, net.hosts[0]!.ip, port), 'timeout');
      net.setLink(0, true);
      assert.equal(connect(net, 1, net.hosts[0]!.ip, port), 'hi');

      const old = net.hosts[0]!.ip;
      const moved = net.setAddress(0);
      assert.notEqual(moved, old);
      assert.equal(net.hosts[0]!.ip, moved);
      assert.equal(connect(net, 1, moved, port), 'hi');
      assert.notEqual(connect(net, 1, old, port), 'hi');
      assert.match(spawnSync('ip', ['-n', net.hosts[0]!.ns, 'route', 'show'], { encoding: 'utf8' }).stdout, /224\.0\.0\.0\/4 dev tdx0/);

      const exited = new Promise((r) => server.once('exit', r));
      await net.destroy();
      await exited;
      assert.ok(server.exitCode !== null || server.signalCode !== null, 'started process killed');
      const left = namespaces().filter((n) => n.startsWith(`${net.prefix}-`));
      assert.deepEqual(left, []);
    } finally {
      await net.destroy();
    }
  });

  test('two harnesses in one process get distinct prefixes and subnets', async () => {
    const n1 = createNetns({ hosts: 1 });
    const n2 = createNetns({ hosts: 1 });
    try {
      assert.notEqual(n1.prefix, n2.prefix);
      assert.notEqual(n1.subnet, n2.subnet);
    } finally {
      await n1.destroy();
      await n2.destroy();
    }
  });
});
