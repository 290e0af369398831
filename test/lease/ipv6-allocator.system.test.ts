// The allocator of an IPv6-only cluster, driven through the registry against
// a real redis-server: the Lua scripts count IPv6 subnets in 16-bit groups
// (Lua numbers are doubles), so every shape of range is checked against
// nthSubnet6 and every subnet's text against formatIPv6; the owners index
// keys a node without an IPv4 underlay address by its PublicIPv6; IPv4 ranges
// are stored as before.

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Redis } from 'ioredis';
import { encodeAttrs } from '../../daemon/lease/lease.js';
import type { AllocatableRange } from '../../daemon/lease/config.js';
import type { LeaseRegistry } from '../../daemon/lease/registry.js';
import { formatCidr6, nthSubnet6, parseCidr6, type Cidr6 } from '../../daemon/net/ipv6.js';
import { startRedis, type RedisServer } from '../../lab/redis.js';
import { openRegistry, sleep, uniquePrefix } from './helpers.js';

let server: RedisServer;
let client: Redis;
const closers: (() => void)[] = [];

before(async () => {
  server = await startRedis();
  client = new Redis(server.url);
});
after(async () => {
  for (const close of closers) close();
  client?.disconnect();
  await server?.stop();
});

const TTL_MS = 60_000;

function registryFor(name: string): LeaseRegistry {
  const { registry, close } = openRegistry(server.url, uniquePrefix(name));
  closers.push(close);
  return registry;
}

/** `count` subnets of `prefixLength` in `network`, from its `firstIndex`-th on. */
function rangeIn(network: string, prefixLength: number, firstIndex: number, count: number): AllocatableRange {
  return { family: 6, first: nthSubnet6(parseCidr6(network), prefixLength, firstIndex).network, count, prefixLength };
}

/** A range of `count` subnets whose first is `subnet`. */
function rangeFrom(subnet: string, count: number): AllocatableRange {
  const { network, prefixLength } = parseCidr6(subnet);
  return { family: 6, first: network, count, prefixLength };
}

function subnetsIn(network: string, prefixLength: number, indices: readonly number[]): string[] {
  const cidr: Cidr6 = parseCidr6(network);
  return indices.map((index) => formatCidr6(nthSubnet6(cidr, prefixLength, index)));
}

function indicesFrom(first: number, count: number): number[] {
  return Array.from({ length: count }, (_, i) => first + i);
}

let nodes = 0;

/** A node with no IPv4 underlay address: its owner address is its PublicIPv6. */
function v6Node(nodeName = `node-${++nodes}`): { owner: string; attrs: string; nodeName: string } {
  const owner = `fd00:198:18::${(++nodes).toString(16)}`;
  return { owner, nodeName, attrs: encodeAttrs({ publicIPv6: owner, nodeName, backendType: 'udp', backendData: {} }) };
}

async function allocate(registry: LeaseRegistry, range: AllocatableRange, start = 0, ttlMs = TTL_MS): Promise<string> {
  const node = v6Node();
  const result = await registry.create(node.owner, node.attrs, ttlMs, undefined, range, start);
  assert.ok(result.status === 'ok', `allocating in ${JSON.stringify(range)}: ${JSON.stringify(result)}`);
  return result.subnet;
}

/** Allocates until the range is full; the subnets handed out, in order. */
async function allocateAll(registry: LeaseRegistry, range: AllocatableRange): Promise<string[]> {
  const subnets: string[] = [];
  for (let i = 0; i < range.count; i++) subnets.push(await allocate(registry, range));
  const node = v6Node();
  const full = await registry.create(node.owner, node.attrs, TTL_MS, undefined, range, 0);
  assert.equal(full.status, 'full');
  return subnets;
}

/** The first `count` bits of a bitmap as '0'/'1' text, bit 0 first. */
async function bits(key: string, count: number): Promise<string> {
  const bitmap = (await client.getBuffer(key)) ?? Buffer.alloc(0);
  return Array.from({ length: count }, (_, i) => ((bitmap[i >> 3] ?? 0) >> (7 - (i & 7))) & 1).join('');
}

describe('IPv6 ranges in the allocation bitmap', () => {
  it('hands out every /64 of a /60 from index 1, then says full', async () => {
    const registry = registryFor('v6-60');
    const subnets = await allocateAll(registry, rangeIn('fd00:10:244::/60', 64, 1, 15));
    assert.deepEqual(subnets.sort(), subnetsIn('fd00:10:244::/60', 64, indicesFrom(1, 15)).sort());
    assert.ok(!subnets.includes('fd00:10:244::/64'), 'index 0 lies before the range');
  });

  it('hands out every /126 of a /120', async () => {
    const registry = registryFor('v6-126');
    const subnets = await allocateAll(registry, rangeIn('2001:db8::ff00/120', 126, 0, 64));
    assert.deepEqual(subnets.sort(), subnetsIn('2001:db8::ff00/120', 126, indicesFrom(0, 64)).sort());
  });

  it('hands out /116s whose index bits straddle two 16-bit groups', async () => {
    // Index bits 108..115: the low four sit in the last group, the rest in the one before.
    const registry = registryFor('v6-116');
    const subnets = await allocateAll(registry, rangeIn('fd00:10:244::/108', 116, 12, 64));
    const expected = subnetsIn('fd00:10:244::/108', 116, indicesFrom(12, 64));
    assert.deepEqual(subnets.sort(), [...expected].sort());
    assert.ok(expected.includes('fd00:10:244::f000/116') && expected.includes('fd00:10:244::4:b000/116'), 'the range crosses the group boundary');
  });

  it('counts from a first subnet deep inside a /16, carrying across groups', async () => {
    const registry = registryFor('v6-deep');
    const firstIndex = 0xfffe_ffff_fffc;
    const subnets = await allocateAll(registry, rangeIn('fd00::/16', 64, firstIndex, 8));
    const expected = subnetsIn('fd00::/16', 64, indicesFrom(firstIndex, 8));
    assert.deepEqual(subnets.sort(), [...expected].sort());
    assert.ok(expected.includes('fd00:ffff::/64'), 'a carry ran through two groups');
  });

  it('counts from a first subnet far more than 2^53 subnets into its network', async () => {
    // /120s of fd00::/8: the first is about 2^112 subnets in, and the carry runs through seven groups.
    const registry = registryFor('v6-far');
    const subnets = await allocateAll(registry, rangeFrom('fd00:ffff:ffff:ffff:ffff:ffff:ffff:fe00/120', 4));
    assert.deepEqual(subnets.sort(), [
      'fd00:ffff:ffff:ffff:ffff:ffff:ffff:fe00/120',
      'fd00:ffff:ffff:ffff:ffff:ffff:ffff:ff00/120',
      'fd01::/120',
      'fd01::100/120',
    ].sort());
  });

  it('takes the subnet at the start index when it is free', async () => {
    const registry = registryFor('v6-start');
    const range = rangeIn('fd00:10:244::/60', 64, 1, 15);
    // The bitmap is searched from the start index's byte, so the start is a multiple of 8.
    assert.equal(await allocate(registry, range, 8), 'fd00:10:244:9::/64');
    assert.equal(await allocate(registry, range, 8), 'fd00:10:244:a::/64');
    assert.equal(await allocate(registry, range, 0), 'fd00:10:244:1::/64');
  });

  it('clears the bit of a removed lease and of an expired one', async () => {
    const registry = registryFor('v6-clear');
    const range = rangeIn('fd00:10:244::/60', 64, 1, 15);
    const removed = v6Node();
    const first = await registry.create(removed.owner, removed.attrs, TTL_MS, undefined, range, 8);
    assert.ok(first.status === 'ok');
    assert.equal(first.subnet, 'fd00:10:244:9::/64');
    assert.deepEqual(await registry.remove(first.subnet, removed.owner, 'any', false), { status: 'ok' });
    assert.equal(await allocate(registry, range, 8, 50), 'fd00:10:244:9::/64', 'the removed lease left its bit clear');
    await sleep(100);
    assert.equal(await allocate(registry, range, 8), 'fd00:10:244:9::/64', 'the expired lease left its bit clear');
    assert.equal((await bits(registry.keys.allocated, 15)).split('').filter((bit) => bit === '1').length, 1);
  });

  it('rebuilds the bitmap when the range changes, keeping IPv6 leases marked', async () => {
    const registry = registryFor('v6-rebuild');
    const before = rangeIn('fd00:10:244::/60', 64, 1, 15);
    const held = [await allocate(registry, before), await allocate(registry, before), await allocate(registry, before)];
    assert.deepEqual(held, subnetsIn('fd00:10:244::/60', 64, [1, 2, 3]));
    const after = rangeIn('fd00:10:244::/60', 64, 0, 16);
    assert.equal(await allocate(registry, after), 'fd00:10:244::/64');
    assert.equal(await client.get(registry.keys.allocatable), 'fd00:10:244:: 16 64');
    assert.equal(await bits(registry.keys.allocated, 16), '1111000000000000');
    assert.equal(await allocate(registry, after), 'fd00:10:244:4::/64', 'the leases of the old range are marked in the new bitmap');
  });

  it('reads any RFC 4291 text of a stored subnet, and nothing else, when it rebuilds', async () => {
    // Bits 0..15 are fd00:10:244:1::/64 to fd00:10:244:10::/64; the allocation takes bit 4, fd00:10:244:5::/64.
    const registry = registryFor('v6-parse');
    const marked = [
      'FD00:10:244:1::/64', // upper case
      'fd00:0010:0244:0002:0000:0000:0000:0000/64', // leading zeros, no '::'
      'fd00:10:244:3:0::/64', // '::' for only part of the run of zeros
      'fd00:10:244:4:0:0::0/64', // '::' inside the run of zeros
    ];
    const ignored = [
      'fd00:10:244:6::/63', // another prefix length
      'fd00:10:244:7::1/64', // host bits set
      'fd00:10:244:8::0::/64', // two '::'
      'fd00:10:244:9:0:0:0:0:0/64', // nine groups
      'fd00:10:244:e::0:0:0:0/64', // eight groups and a '::'
      'fd00:10:244:0000a::/64', // a group of five digits
      'fd00:10:244:b:0:0:0:/64', // a trailing single ':'
      'fd00:10:244:c:g::/64', // not hex
      'fd00:10:244:d::', // no prefix length
      'fd00:10:244::/64', // before the range
      'fd00:10:244:11::/64', // just past it
      '10.0.0.0/24', // IPv4
    ];
    for (const subnet of [...marked, ...ignored]) await client.hset(registry.keys.leases, subnet, '{}');
    assert.equal(await allocate(registry, rangeIn('fd00:10:244::/56', 64, 1, 16)), 'fd00:10:244:5::/64');
    assert.equal(await bits(registry.keys.allocated, 24), '111110000000000000000000');
  });

  it('refuses a stored subnet with host bits set inside a group the prefix splits', async () => {
    const registry = registryFor('v6-parse-116');
    await client.hset(registry.keys.leases, 'fd00:10:244::c080/116', '{}');
    await client.hset(registry.keys.leases, 'fd00:10:244::d000/116', '{}');
    assert.equal(await allocate(registry, rangeIn('fd00:10:244::/108', 116, 12, 8)), 'fd00:10:244::c000/116');
    assert.equal(await bits(registry.keys.allocated, 8), '11000000');
  });

  it('writes every subnet exactly as formatIPv6 does', async () => {
    const registry = registryFor('v6-format');
    const shapes = [
      'fd00:10:244::/64', // the run at the end
      '2001:db8:0:1::/64', // a single zero group is 0, the run at the end is '::'
      '0:0:1::/64', // a run at the start, a longer one at the end
      '::1:0:0:1/128', // the run at the start is the longest
      '2001::1:0:0:1/128', // the run in the middle is the longest
      '2001:db8::1:0:0:1/128', // two equal runs: the leftmost
      '1:0:2:3:4:5:6:7/128', // a single zero group inside
      '0:2:3:4:5:6:7:8/128', // a single zero group first
      '1:2:3:4:5:6:7:0/128', // a single zero group last
      'fd00:a:bc:def:1234::abcd/128', // no leading zeros
      'fd00:ffff:abcd:ef::/64', // lower case
      '::/128', // nothing but zeros
    ];
    for (const shape of shapes) {
      assert.equal(formatCidr6(parseCidr6(shape)), shape, 'the expectation itself is canonical');
      assert.equal(await allocate(registry, rangeFrom(shape, 1)), shape);
      assert.equal(await bits(registry.keys.allocated, 1), '1', `${shape} read back into its bit`);
    }
  });
});

describe('an owner with only an IPv6 underlay address', () => {
  it('is known by its PublicIPv6: renewed, refused a second subnet, defended, removed', async () => {
    const registry = registryFor('v6-owner');
    const range = rangeIn('fd00:10:244::/60', 64, 1, 15);
    const node = v6Node('node-a');
    const other = v6Node('node-b');
    const created = await registry.create(node.owner, node.attrs, TTL_MS, undefined, range, 0);
    assert.ok(created.status === 'ok');
    const subnet = created.subnet;
    assert.equal(await client.hget(registry.keys.owners, node.owner), subnet);

    assert.equal((await registry.claim(subnet, node.owner, node.attrs, TTL_MS, 'lease')).status, 'ok');
    const renamed = encodeAttrs({ publicIPv6: node.owner, nodeName: 'node-a2', backendType: 'udp', backendData: {} });
    const updated = await registry.claim(subnet, node.owner, renamed, TTL_MS, 'lease');
    assert.ok(updated.status === 'ok');
    assert.equal(updated.change, 'updated');

    const again = await registry.create(node.owner, node.attrs, TTL_MS, undefined, range, 8);
    assert.deepEqual(again.status === 'ip-held' && [again.subnet, again.reservation], [subnet, false]);
    assert.deepEqual(await registry.claim(subnet, other.owner, other.attrs, TTL_MS, 'lease'), { status: 'taken', owner: node.owner });
    assert.deepEqual(await registry.remove(subnet, other.owner, 'any', false), { status: 'taken', owner: node.owner });

    assert.deepEqual(await registry.remove(subnet, node.owner, 'any', false), { status: 'ok' });
    assert.equal(await client.hget(registry.keys.owners, node.owner), null);
    assert.equal((await registry.create(node.owner, node.attrs, TTL_MS, undefined, range, 0)).status, 'ok');
  });

  it('has its reservation named by the operator', async () => {
    const registry = registryFor('v6-reserve');
    const range = rangeIn('fd00:10:244::/60', 64, 1, 15);
    const node = v6Node('node-a');
    const created = await registry.create(node.owner, node.attrs, TTL_MS, undefined, range, 0);
    assert.ok(created.status === 'ok');
    const subnet = created.subnet;
    const named = (nodeName: string): string => encodeAttrs({ publicIPv6: node.owner, nodeName, backendType: 'udp', backendData: {} });

    assert.deepEqual(await registry.reserve(subnet, node.owner, '', 'node-b'), { status: 'ok', change: 'converted', attrsJson: named('node-b') });
    assert.deepEqual(await registry.reserve(subnet, node.owner, '', 'node-c'), { status: 'ok', change: 'updated', attrsJson: named('node-c') });
    assert.equal(await client.hget(registry.keys.leases, subnet), named('node-c'));
    assert.equal(await client.zscore(registry.keys.expiry, subnet), null, 'a reservation has no expiry');
    const other = v6Node();
    assert.equal((await registry.reserve(subnet, other.owner, other.attrs, undefined)).status, 'taken');
  });
});

describe('IPv4 ranges', () => {
  it('are stored in the text they always had', async () => {
    const registry = registryFor('v4-range');
    // 10.60.0.16 is 171704336: the /28s of 10.60.0.0/24 from SubnetMin 10.60.0.16.
    const range: AllocatableRange = { family: 4, first: 171_704_336, size: 16, count: 15, prefixLength: 28 };
    const node = { owner: '198.18.0.1', attrs: encodeAttrs({ publicIP: '198.18.0.1', nodeName: 'a', backendType: 'udp', backendData: {} }) };
    const created = await registry.create(node.owner, node.attrs, TTL_MS, undefined, range, 8);
    assert.deepEqual(created.status === 'ok' && [created.subnet, created.cidr], ['10.60.0.144/28', { network: 171_704_464, prefixLength: 28 }]);
    assert.equal(await client.get(registry.keys.allocatable), '171704336 16 15 28');
  });
});
