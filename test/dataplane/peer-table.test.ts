import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { PeerTable, type Peer } from '../../daemon/dataplane/peer-table.js';
import { parseCidr } from '../../daemon/net/ipv4.js';

function peer(subnet: string, ip: number, port = 8285): Peer {
  return { subnet: parseCidr(subnet), endpoint: { address: `198.18.${(ip >> 8) & 255}.${ip & 255}`, ip: (0xc6120000 + ip) >>> 0, port } };
}

test('lookup finds the subnet holding a destination, and nothing else', () => {
  const table = new PeerTable(24, [peer('10.244.2.0/24', 2), peer('10.244.3.0/24', 3)]);
  assert.equal(table.lookup(0x0af40205)?.subnet.network, 0x0af40200);
  assert.equal(table.lookup(0x0af403ff)?.subnet.network, 0x0af40300);
  assert.equal(table.lookup(0x0af40405), undefined);
  assert.equal(table.size, 2);
});

test('fromEndpoint matches address and port', () => {
  const table = new PeerTable(24, [peer('10.244.2.0/24', 2)]);
  const ip = (0xc6120000 + 2) >>> 0;
  assert.equal(table.fromEndpoint(ip, 8285)?.subnet.network, 0x0af40200);
  assert.equal(table.fromEndpoint(ip, 8286), undefined);
  assert.equal(table.fromEndpoint(ip + 1, 8285), undefined);
});

test('a peer with another subnet length is refused', () => {
  assert.throws(() => new PeerTable(24, [peer('10.244.2.0/25', 2)]), /not a \/24/);
});

test('agrees with a naive linear scan on random tables and addresses', () => {
  fc.assert(
    fc.property(
      fc.integer({ min: 8, max: 30 }),
      fc.uniqueArray(fc.integer({ min: 0, max: 0xffffffff }), { maxLength: 40 }),
      fc.array(fc.integer({ min: 0, max: 0xffffffff }), { minLength: 1, maxLength: 40 }),
      (length, networks, probes) => {
        const mask = (0xffffffff << (32 - length)) >>> 0;
        const seen = new Set<number>();
        const peers: Peer[] = [];
        networks.forEach((n, i) => {
          const network = (n & mask) >>> 0;
          if (seen.has(network)) return;
          seen.add(network);
          peers.push({ subnet: { network, prefixLength: length }, endpoint: { address: 'x', ip: i, port: 1 } });
        });
        const table = new PeerTable(length, peers);
        // Probe both random addresses and addresses inside the table's subnets.
        const addresses = [...probes, ...peers.map((p, i) => (p.subnet.network | (probes[i % probes.length]! & ~mask)) >>> 0)];
        for (const address of addresses) {
          const naive = peers.find((p) => ((address & mask) >>> 0) === p.subnet.network);
          assert.equal(table.lookup(address), naive);
        }
      },
    ),
  );
});
