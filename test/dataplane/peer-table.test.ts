import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { PeerTable, type Peer } from '../../daemon/dataplane/peer-table.js';
import { parseCidr, type Cidr } from '../../daemon/net/ipv4.js';
import { asPeer } from './peer-entries.js';

/** A peer of a table that carries IPv4: its IPv4 subnet is its key. */
type Peer4 = Peer & { readonly subnet: Cidr };

function peer(subnet: string, ip: number, port = 8285): Peer4 {
  return { subnet: parseCidr(subnet), endpoint: { address: `198.18.${(ip >> 8) & 255}.${ip & 255}`, ip: (0xc6120000 + ip) >>> 0, port } };
}

test('lookup finds the subnet holding a destination, and nothing else', () => {
  const table = new PeerTable(24, [peer('10.244.2.0/24', 2), peer('10.244.3.0/24', 3)]);
  assert.deepEqual(asPeer(table.lookup(0x0af40205))?.subnet?.network, 0x0af40200);
  assert.deepEqual(asPeer(table.lookup(0x0af403ff))?.subnet?.network, 0x0af40300);
  assert.equal(table.lookup(0x0af40405), undefined);
  assert.equal(table.size, 2);
});

test('fromEndpoint matches address and port', () => {
  const table = new PeerTable(24, [peer('10.244.2.0/24', 2)]);
  const ip = (0xc6120000 + 2) >>> 0;
  assert.deepEqual(asPeer(table.fromEndpoint(ip, 8285))?.subnet?.network, 0x0af40200);
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
        const peers: Peer4[] = [];
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
          assert.deepEqual(asPeer(table.lookup(address)), naive);
        }
      },
    ),
  );
});

// IPv6: the second index, keyed by the paired IPv6 subnet.

const words = fc.oneof(fc.constantFrom(0, 1, 0x7fffffff, 0x80000000, 0xfd000000, 0xffffffff), fc.integer({ min: 0, max: 0xffffffff }));
const address6 = fc.tuple(words, words, words, words);

function toBigInt(address: readonly number[]): bigint {
  return address.reduce((n, word) => (n << 32n) | BigInt(word >>> 0), 0n);
}

function fromBigInt(n: bigint): [number, number, number, number] {
  return [Number((n >> 96n) & 0xffffffffn), Number((n >> 64n) & 0xffffffffn), Number((n >> 32n) & 0xffffffffn), Number(n & 0xffffffffn)];
}

/** The prefix mask as a 128-bit integer: deliberately apart from the words and Maps of the code under test. */
const mask128 = (length: number) => ((1n << 128n) - 1n) ^ ((1n << BigInt(128 - length)) - 1n);

function bytesOf(address: readonly number[]): Buffer {
  const buf = Buffer.alloc(16 + 5);
  address.forEach((word, i) => buf.writeUInt32BE(word >>> 0, 5 + 4 * i));
  return buf;
}

/** A dual-stack peer: IPv4 subnet number i, and the IPv6 subnet given. */
function peer6(i: number, network6: bigint | undefined, length6: number): Peer4 {
  return {
    subnet: { network: (0x0a000000 + i * 256) >>> 0, prefixLength: 24 },
    ...(network6 !== undefined ? { subnet6: { network: fromBigInt(network6), prefixLength: length6 } } : {}),
    endpoint: { address: 'x', ip: i, port: 8285 },
  };
}

test('lookup6 agrees with a naive 128-bit scan, for every subnet length from 1 to 126', () => {
  for (let length = 1; length <= 126; length++) {
    const mask = mask128(length);
    fc.assert(
      fc.property(fc.array(fc.option(address6), { maxLength: 24 }), fc.array(address6, { minLength: 1, maxLength: 16 }), (networks, probes) => {
        const seen = new Set<bigint>();
        const peers = networks.map((n, i) => {
          const network = n === null ? undefined : toBigInt(n) & mask;
          if (network === undefined || seen.has(network)) return peer6(i, undefined, length);
          seen.add(network);
          return peer6(i, network, length);
        });
        const table = new PeerTable(24, peers, length);
        const candidates = [...probes.map(toBigInt)];
        for (const [i, p] of peers.entries()) {
          if (p.subnet6 === undefined) continue;
          const host = toBigInt(probes[i % probes.length]!) & ~mask & ((1n << 128n) - 1n);
          const inside = toBigInt(p.subnet6.network) | host;
          candidates.push(inside, inside ^ (1n << BigInt(128 - length)), inside ^ (1n << 127n));
        }
        for (const probe of candidates) {
          const naive = peers.find((p) => p.subnet6 !== undefined && (probe & mask) === toBigInt(p.subnet6.network));
          assert.deepEqual(asPeer(table.lookup6(bytesOf(fromBigInt(probe)), 5)), naive, `/${length} ${probe.toString(16)}`);
        }
      }),
      { numRuns: 25 },
    );
  }
});

test('set and delete keep both indexes, on random operations checked against a model', () => {
  const length6 = 64;
  // The k-th IPv4 subnet pairs with the k-th IPv6 subnet, as the lease store pairs them.
  const paired = (k: number) => (0xfd000000n << 96n) | (BigInt(k) << 64n);
  const operation = fc.record({ k: fc.integer({ min: 0, max: 11 }), kind: fc.constantFrom('dual', 'ipv4-only', 'delete'), port: fc.integer({ min: 1, max: 3 }) });
  fc.assert(
    fc.property(fc.array(operation, { maxLength: 60 }), (operations) => {
      const table = new PeerTable(24, [], length6);
      const model = new Map<number, Peer>();
      for (const { k, kind, port } of operations) {
        const p = { ...peer6(k, kind === 'dual' ? paired(k) : undefined, length6), endpoint: { address: 'x', ip: k, port } };
        if (kind === 'delete') {
          assert.equal(table.delete(p.subnet), model.delete(k));
        } else {
          table.set(p);
          model.set(k, p);
        }
        assert.equal(table.size, model.size);
        for (let j = 0; j < 12; j++) {
          const expected = model.get(j);
          assert.deepEqual(asPeer(table.lookup((0x0a000000 + j * 256 + 7) >>> 0)), expected);
          const probe = bytesOf(fromBigInt(paired(j) | 0x1234n));
          assert.deepEqual(asPeer(table.lookup6(probe, 5)), expected?.subnet6 ? expected : undefined);
          if (expected) assert.deepEqual(asPeer(table.fromEndpoint(j, expected.endpoint.port)), expected);
        }
      }
    }),
    { numRuns: 500 },
  );
});

test('an IPv4-only table finds no IPv6 and refuses a peer with an IPv6 subnet; lengths must agree', () => {
  const dual = peer6(1, 0xfd00n << 112n, 64);
  const v4only = new PeerTable(24, [peer6(2, undefined, 64)]);
  assert.equal(v4only.subnetLength6, undefined);
  assert.equal(v4only.lookup6(bytesOf([0xfd000000, 0, 0, 1]), 5), undefined);
  assert.throws(() => v4only.set(dual), /IPv4 only/);
  assert.throws(() => new PeerTable(24, [dual], 80), /not a \/80/);
  for (const bad of [0, 127, 128, 64.5]) assert.throws(() => new PeerTable(24, [], bad), /IPv6 subnet length .* 1\.\.126/);
});

test('a peer replaced on its IPv4 subnet takes its IPv6 subnet along; an older claim to an IPv6 subnet does not remove the newer', () => {
  const table = new PeerTable(24, [], 64);
  const at = (k: bigint) => bytesOf(fromBigInt((0xfd000000n << 96n) | (k << 64n) | 9n));
  const first = peer6(1, (0xfd000000n << 96n) | (1n << 64n), 64);
  table.set(first);
  const moved = peer6(1, (0xfd000000n << 96n) | (2n << 64n), 64);
  table.set(moved);
  assert.equal(table.lookup6(at(1n), 5), undefined, 'the old IPv6 subnet left with the old peer');
  assert.deepEqual(asPeer(table.lookup6(at(2n), 5)), moved);
  // Another IPv4 subnet claims the same IPv6 subnet (an operator's mistake): the newer wins, and removing the older keeps it.
  const claimant = peer6(3, (0xfd000000n << 96n) | (2n << 64n), 64);
  table.set(claimant);
  assert.deepEqual(asPeer(table.lookup6(at(2n), 5)), claimant);
  table.delete(moved.subnet);
  assert.deepEqual(asPeer(table.lookup6(at(2n), 5)), claimant);
  table.delete(claimant.subnet);
  assert.equal(table.lookup6(at(2n), 5), undefined);
});
