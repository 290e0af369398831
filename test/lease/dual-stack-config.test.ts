// Dual stack in the network config: the IPv6 fields and their rules, the
// pairing of the k-th IPv4 subnet with the k-th IPv6 subnet, the allocatable
// range narrowed by both, the layout guard, and PublicIPv6 in a lease record.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { allocatableCount, allocatableRange, layoutChanges } from '../../daemon/lease/config.js';
import { ipv4SubnetOf, ipv6SubnetOf, misfitOf, parseNetworkConfig, toNetConf, type NetworkConfig } from '../../daemon/lease/index.js';
import { decodeLease, encodeAttrs } from '../../daemon/lease/lease.js';
import { formatCidr, formatIPv4, parseCidr, parseIPv4 } from '../../daemon/net/ipv4.js';
import { formatCidr6, formatIPv6, parseCidr6 } from '../../daemon/net/ipv6.js';
import { assertConfigRejected } from './helpers.js';

const IPV4 = { Network: '10.244.0.0/16' };
const DUAL = { ...IPV4, EnableIPv6: true, IPv6Network: 'fd00:10:244::/56' };

function pairOf(config: NetworkConfig, subnet: string): string | undefined {
  const pair = ipv6SubnetOf(config, parseCidr(subnet));
  return pair === undefined ? undefined : formatCidr6(pair);
}

describe('dual-stack config: defaults', () => {
  it('fills in IPv6SubnetLen 64 and IPv6SubnetMin..Max from the second to the last subnet', () => {
    const config = parseNetworkConfig({ ...IPV4, EnableIPv6: true, IPv6Network: 'fd00:10:244::/48' });
    const ipv6 = config.ipv6!;
    assert.equal(formatCidr6(ipv6.network), 'fd00:10:244::/48');
    assert.equal(ipv6.subnetLen, 64);
    assert.equal(formatIPv6(ipv6.subnetMin), 'fd00:10:244:1::');
    assert.equal(formatIPv6(ipv6.subnetMax), 'fd00:10:244:ffff::');
    assert.equal(allocatableCount(config), 255, 'the IPv6 range is wider, so the IPv4 one decides');
  });

  it('leaves ipv6 out without EnableIPv6, and with EnableIPv6: false', () => {
    assert.equal(parseNetworkConfig(IPV4).ipv6, undefined);
    assert.equal(parseNetworkConfig({ ...IPV4, EnableIPv4: true, EnableIPv6: false }).ipv6, undefined);
  });

  it('writes an IPv4-only config out exactly as before dual stack', () => {
    const text = '{"Network":"10.244.0.0/16","SubnetLen":24,"SubnetMin":"10.244.1.0","SubnetMax":"10.244.255.0","Backend":{"Type":"udp","Port":8285}}';
    assert.equal(JSON.stringify(toNetConf(parseNetworkConfig(IPV4))), text);
    assert.equal(JSON.stringify(toNetConf(parseNetworkConfig({ ...IPV4, EnableIPv6: false }))), text);
  });

  it('writes every IPv6 field out with its default, and reads its own output back unchanged', () => {
    const conf = toNetConf(parseNetworkConfig(DUAL));
    assert.deepEqual(conf, {
      Network: '10.244.0.0/16',
      SubnetLen: 24,
      SubnetMin: '10.244.1.0',
      SubnetMax: '10.244.255.0',
      EnableIPv6: true,
      IPv6Network: 'fd00:10:244::/56',
      IPv6SubnetLen: 64,
      IPv6SubnetMin: 'fd00:10:244:1::',
      IPv6SubnetMax: 'fd00:10:244:ff::',
      Backend: { Type: 'udp', Port: 8285 },
    });
    assert.deepEqual(toNetConf(parseNetworkConfig(conf)), conf);
  });

  it('computes the last subnet of a network with more than 2^53 subnets', () => {
    const config = parseNetworkConfig({ ...IPV4, EnableIPv6: true, IPv6Network: 'fd00::/8' });
    assert.equal(formatIPv6(config.ipv6!.subnetMax), 'fdff:ffff:ffff:ffff::');
    assert.equal(allocatableCount(config), 255);
    assert.equal(pairOf(config, '10.244.255.0/24'), 'fd00:0:0:ff::/64');
  });
});

describe('dual-stack config validation: one rule each', () => {
  it('wants EnableIPv4 to be a boolean', () => assertConfigRejected({ ...IPV4, EnableIPv4: 'yes' }, 'EnableIPv4', /true or false.*"yes"/));
  it('wants EnableIPv6 to be a boolean', () => assertConfigRejected({ ...IPV4, EnableIPv6: 'true' }, 'EnableIPv6', /true or false/));
  it('requires IPv6Network with EnableIPv6', () => assertConfigRejected({ ...IPV4, EnableIPv6: true }, 'IPv6Network', /required with EnableIPv6: true/));
  it('requires IPv6Network to be a string', () => assertConfigRejected({ ...IPV4, EnableIPv6: true, IPv6Network: 48 }, 'IPv6Network', /CIDR string/));
  for (const [network, what] of [
    ['fe80::/64', /fe80::\/10, the link-local addresses/],
    ['ff05::/48', /ff00::\/8, the multicast addresses/],
    ['::ffff:0:0/96', /::\/8, which holds the unspecified, loopback and IPv4-mapped addresses/],
    ['::/0', /::\/8/],
  ] as const) {
    it(`refuses an IPv6Network that overlaps addresses no pod may have: ${network}`, () => assertConfigRejected({ ...DUAL, IPv6Network: network, IPv6SubnetLen: 120 }, 'IPv6Network', what));
  }
  it('accepts unique local and global IPv6 networks', () => {
    for (const network of ['fd00:10:244::/56', '2001:db8:1::/48', 'fc00::/56']) assert.ok(parseNetworkConfig({ ...DUAL, IPv6Network: network }).ipv6);
  });
  it('requires IPv6Network to be an IPv6 CIDR', () => assertConfigRejected({ ...IPV4, EnableIPv6: true, IPv6Network: '10.0.0.0/8' }, 'IPv6Network', /not an IPv6 CIDR block/));
  it('rejects an IPv6Network with host bits set', () => assertConfigRejected({ ...IPV4, EnableIPv6: true, IPv6Network: 'fd00:10:244::1/48' }, 'IPv6Network', /host bits/));
  for (const [field, value] of [
    ['IPv6Network', 'fd00::/48'],
    ['IPv6SubnetLen', 64],
    ['IPv6SubnetMin', 'fd00:0:0:1::'],
    ['IPv6SubnetMax', 'fd00:0:0:ff::'],
  ] as const) {
    it(`rejects ${field} without EnableIPv6: true, which flannel would ignore`, () => {
      assertConfigRejected({ ...IPV4, [field]: value }, field, /EnableIPv6 is not true: set EnableIPv6: true/);
      assertConfigRejected({ ...IPV4, EnableIPv6: false, [field]: value }, field, /set EnableIPv6: true/);
    });
  }
  it('wants IPv6SubnetLen to be an integer', () => assertConfigRejected({ ...DUAL, IPv6SubnetLen: 64.5 }, 'IPv6SubnetLen', /integer/));
  it('leaves room for the tunnel address and pods: IPv6SubnetLen at most 126', () => assertConfigRejected({ ...DUAL, IPv6SubnetLen: 127 }, 'IPv6SubnetLen', /at most 126/));
  it('accepts IPv6SubnetLen 126', () => assert.equal(parseNetworkConfig({ ...DUAL, IPv6Network: 'fd00::/64', IPv6SubnetLen: 126 }).ipv6!.subnetLen, 126));
  it('rejects an IPv6SubnetLen shorter than the IPv6Network prefix', () => assertConfigRejected({ ...DUAL, IPv6Network: 'fd00::/80' }, 'IPv6SubnetLen', /64 \(the default\) is shorter than the IPv6Network prefix \/80/));
  it('requires as many IPv6 subnets as IPv4 ones, and says how to get them', () => {
    assertConfigRejected({ ...DUAL, IPv6Network: 'fd00:10:244::/60' }, 'IPv6SubnetLen', /2\^4 subnets, fewer than the 2\^8 \/24 subnets of Network 10\.244\.0\.0\/16.*same index.*\/56 or larger.*IPv6SubnetLen of 68/);
    assertConfigRejected({ Network: '10.244.0.0/16', SubnetLen: 26, EnableIPv6: true, IPv6Network: 'fd00:10:244::/56' }, 'IPv6SubnetLen', /2\^8 subnets, fewer than the 2\^10 \/26/);
    assert.ok(parseNetworkConfig({ Network: '10.244.0.0/16', SubnetLen: 26, EnableIPv6: true, IPv6Network: 'fd00:10:244::/54' }).ipv6);
  });
  it('rejects an IPv6SubnetMin that is not a string', () => assertConfigRejected({ ...DUAL, IPv6SubnetMin: 5 }, 'IPv6SubnetMin', /IPv6 address string/));
  it('rejects an IPv6SubnetMin that is not an address', () => assertConfigRejected({ ...DUAL, IPv6SubnetMin: 'fd00:10:244:g::' }, 'IPv6SubnetMin', /not an IPv6 address/));
  it('rejects an IPv6SubnetMin outside IPv6Network', () => assertConfigRejected({ ...DUAL, IPv6SubnetMin: 'fd00:10:245:1::' }, 'IPv6SubnetMin', /not in the range of the IPv6Network fd00:10:244::\/56/));
  it('rejects a misaligned IPv6SubnetMin', () => assertConfigRejected({ ...DUAL, IPv6SubnetMin: 'fd00:10:244:1::1' }, 'IPv6SubnetMin', /IPv6SubnetLen boundary \(\/64\).*starts at fd00:10:244:1::/));
  it('rejects an IPv6SubnetMax outside IPv6Network', () => assertConfigRejected({ ...DUAL, IPv6SubnetMax: 'fd00:10:244:100::' }, 'IPv6SubnetMax', /not in the range/));
  it('rejects a misaligned IPv6SubnetMax', () => assertConfigRejected({ ...DUAL, IPv6SubnetMax: 'fd00:10:244:9:8000::' }, 'IPv6SubnetMax', /IPv6SubnetLen boundary/));
  it('rejects IPv6SubnetMin above IPv6SubnetMax', () => assertConfigRejected({ ...DUAL, IPv6SubnetMin: 'fd00:10:244:9::', IPv6SubnetMax: 'fd00:10:244:8::' }, 'IPv6SubnetMin', /above IPv6SubnetMax/));
  it('rejects IPv6SubnetMin..Max that pair with none of SubnetMin..SubnetMax', () =>
    assertConfigRejected({ ...DUAL, SubnetMin: '10.244.10.0', SubnetMax: '10.244.20.0', IPv6SubnetMin: 'fd00:10:244:30::', IPv6SubnetMax: 'fd00:10:244:40::' }, 'IPv6SubnetMin', /pair with none of the subnets in SubnetMin\.\.SubnetMax/));
});

describe('pairing: the k-th IPv4 subnet with the k-th IPv6 subnet', () => {
  const in56 = parseNetworkConfig(DUAL);
  const in48 = parseNetworkConfig({ ...DUAL, IPv6Network: 'fd00:10:244::/48' });

  it('pairs the first, a middle and the last subnet of a /16 -> /24 with a /56 -> /64', () => {
    assert.equal(pairOf(in56, '10.244.0.0/24'), 'fd00:10:244::/64');
    assert.equal(pairOf(in56, '10.244.7.0/24'), 'fd00:10:244:7::/64');
    assert.equal(pairOf(in56, '10.244.255.0/24'), 'fd00:10:244:ff::/64');
  });

  it('uses only the first 2^8 subnets of a /48 -> /64', () => {
    assert.equal(pairOf(in48, '10.244.1.0/24'), 'fd00:10:244:1::/64');
    assert.equal(pairOf(in48, '10.244.255.0/24'), 'fd00:10:244:ff::/64');
    assert.equal(ipv4SubnetOf(in48, parseCidr6('fd00:10:244:100::/64')), undefined, 'subnet 256 has no IPv4 pair');
  });

  it('maps back: ipv4SubnetOf inverts ipv6SubnetOf for every subnet', () => {
    for (const config of [in56, in48]) {
      for (let k = 0; k < 256; k++) {
        const subnet = parseCidr(`10.244.${k}.0/24`);
        assert.equal(formatCidr(ipv4SubnetOf(config, ipv6SubnetOf(config, subnet)!)!), formatCidr(subnet));
      }
    }
  });

  it('agrees with a naive BigInt reference, with index bits that straddle two words', () => {
    // 10.0.0.0/8 in /26s has 18 index bits; in fd00::/86 cut into /104s they are bits 86..103, across words 2 and 3.
    const config = parseNetworkConfig({ Network: '10.0.0.0/8', SubnetLen: 26, EnableIPv6: true, IPv6Network: 'fd00::/86', IPv6SubnetLen: 104 });
    const base = BigInt('0xfd00') << 112n;
    const reference = (k: number) => {
      const value = base | (BigInt(k) << 24n);
      const groups = Array.from({ length: 8 }, (_, g) => Number((value >> BigInt(112 - 16 * g)) & 0xffffn).toString(16));
      return formatCidr6(parseCidr6(`${groups.join(':')}/104`));
    };
    for (const k of [0, 1, 1023, 1024, 1025, 0x2aaaa, 0x3ffff]) {
      const subnet = { network: parseCidr('10.0.0.0/8').network + k * 64, prefixLength: 26 };
      assert.equal(formatCidr6(ipv6SubnetOf(config, subnet)!), reference(k), `subnet ${k}`);
      assert.equal(formatCidr(ipv4SubnetOf(config, ipv6SubnetOf(config, subnet)!)!), formatCidr(subnet));
    }
    assert.equal(reference(0x3ffff), 'fd00::3ff:ff00:0/104', 'the reference itself');
  });

  it('has no pair without IPv6, or for a subnet outside the layout', () => {
    assert.equal(ipv6SubnetOf(parseNetworkConfig(IPV4), parseCidr('10.244.7.0/24')), undefined);
    assert.equal(pairOf(in56, '10.245.7.0/24'), undefined);
    assert.equal(pairOf(in56, '10.244.7.0/25'), undefined);
    assert.equal(ipv4SubnetOf(in56, parseCidr6('fd00:10:245:7::/64')), undefined);
    assert.equal(ipv4SubnetOf(in56, parseCidr6('fd00:10:244:7::/80')), undefined);
    assert.equal(ipv4SubnetOf(parseNetworkConfig(IPV4), parseCidr6('fd00:10:244:7::/64')), undefined);
  });
});

describe('allocatable range: the intersection of both ranges', () => {
  // IPv4 allows subnets 10..20, IPv6 subnets 15..25: only 15..20 have both halves in range.
  const config = parseNetworkConfig({
    ...DUAL,
    SubnetMin: '10.244.10.0',
    SubnetMax: '10.244.20.0',
    IPv6SubnetMin: 'fd00:10:244:f::',
    IPv6SubnetMax: 'fd00:10:244:19::',
  });

  it('counts and starts the bitmap at the intersection', () => {
    assert.equal(allocatableCount(config), 6);
    const range = allocatableRange(config);
    assert.equal(range.family, 4);
    assert.equal(formatIPv4(range.first), '10.244.15.0');
    assert.equal(range.count, 6);
    assert.equal(range.size, 256);
  });

  it('is the IPv4 range when the IPv6 one is wider, and the IPv6 one when it is narrower', () => {
    assert.equal(allocatableCount(parseNetworkConfig({ ...DUAL, IPv6SubnetMin: 'fd00:10:244:0::' })), 255);
    const narrow = parseNetworkConfig({ ...DUAL, IPv6SubnetMin: 'fd00:10:244:80::', IPv6SubnetMax: 'fd00:10:244:81::' });
    assert.equal(allocatableCount(narrow), 2);
    assert.deepEqual(allocatableRange(narrow), { family: 4, first: parseIPv4('10.244.128.0'), size: 256, count: 2, prefixLength: 24 });
  });

  it('makes a lease whose pair lies outside IPv6SubnetMin..Max a misfit, unless it is a reservation', () => {
    assert.equal(misfitOf(config, parseCidr('10.244.15.0/24'), false), undefined);
    assert.equal(misfitOf(config, parseCidr('10.244.20.0/24'), false), undefined);
    assert.equal(
      misfitOf(config, parseCidr('10.244.12.0/24'), false),
      'subnet 10.244.12.0/24 pairs with fd00:10:244:c::/64, which lies outside IPv6SubnetMin..IPv6SubnetMax (fd00:10:244:f:: to fd00:10:244:19::)',
    );
    assert.equal(misfitOf(config, parseCidr('10.244.12.0/24'), true), undefined);
    assert.match(misfitOf(config, parseCidr('10.244.22.0/24'), false)!, /outside SubnetMin\.\.SubnetMax/);
  });
});

describe('layout changes with IPv6', () => {
  const ipv4 = parseNetworkConfig(IPV4);
  const dual = parseNetworkConfig(DUAL);

  it('does not count turning IPv6 on: no IPv4 subnet moves', () => assert.deepEqual(layoutChanges(ipv4, dual), []));
  it('counts turning IPv6 off: running nodes keep IPv6 subnets the layout no longer has', () => assert.deepEqual(layoutChanges(dual, ipv4), ['EnableIPv6']));
  it('counts a change of IPv6Network or IPv6SubnetLen while IPv6 is on', () => {
    assert.deepEqual(layoutChanges(dual, parseNetworkConfig({ ...DUAL, IPv6Network: 'fd00:10:245::/56' })), ['IPv6Network']);
    assert.deepEqual(layoutChanges(dual, parseNetworkConfig({ ...DUAL, IPv6Network: 'fd00:10:244::/48' })), ['IPv6Network'], 'same address, another length');
    assert.deepEqual(layoutChanges(dual, parseNetworkConfig({ ...DUAL, IPv6Network: 'fd00:10:244::/48', IPv6SubnetLen: 72 })), ['IPv6Network', 'IPv6SubnetLen']);
  });
  it('does not count IPv6SubnetMin/Max, which move no subnet', () =>
    assert.deepEqual(layoutChanges(dual, parseNetworkConfig({ ...DUAL, IPv6SubnetMin: 'fd00:10:244:5::', IPv6SubnetMax: 'fd00:10:244:50::' })), []));
  it('counts an IPv4 change alongside', () => assert.deepEqual(layoutChanges(dual, parseNetworkConfig({ ...DUAL, Network: '10.245.0.0/16' })), ['Network']));
});

describe('PublicIPv6 in the lease record', () => {
  const attrs = { publicIP: '198.18.0.1', nodeName: 'node-a', backendType: 'udp', backendData: { Port: 8285 } };

  it('stores an IPv4-only record as the same text as before dual stack', () => {
    assert.equal(encodeAttrs(attrs), '{"PublicIP":"198.18.0.1","NodeName":"node-a","BackendType":"udp","BackendData":{"Port":8285}}');
  });

  it('writes PublicIPv6 right after PublicIP, as flannel orders LeaseAttrs', () => {
    assert.equal(encodeAttrs({ ...attrs, publicIPv6: 'fd00:198:18::1' }), '{"PublicIP":"198.18.0.1","PublicIPv6":"fd00:198:18::1","NodeName":"node-a","BackendType":"udp","BackendData":{"Port":8285}}');
  });

  it('decodes it back, and leaves it out of a record that has none', () => {
    const withIPv6 = decodeLease('10.244.7.0/24', encodeAttrs({ ...attrs, publicIPv6: 'fd00:198:18::1' }), '1700000000000');
    assert.ok(withIPv6.ok);
    assert.equal(withIPv6.lease.publicIPv6, 'fd00:198:18::1');
    assert.equal(encodeAttrs(withIPv6.lease), encodeAttrs({ ...attrs, publicIPv6: 'fd00:198:18::1' }), 'a renewal writes the same text');
    const without = decodeLease('10.244.7.0/24', encodeAttrs(attrs), '1700000000000');
    assert.ok(without.ok);
    assert.equal('publicIPv6' in without.lease, false);
    const fromNull = decodeLease('10.244.7.0/24', '{"PublicIP":"198.18.0.1","PublicIPv6":null,"NodeName":"a","BackendType":"udp","BackendData":{}}', null);
    assert.ok(fromNull.ok, 'null is how flannel writes "none"');
    assert.equal(fromNull.lease.publicIPv6, undefined);
  });

  it('refuses a corrupt PublicIPv6 with a reason', () => {
    for (const [value, reason] of [
      ['"fd00::g"', /PublicIPv6 "fd00::g" is not an IPv6 address/],
      ['"198.18.0.1"', /PublicIPv6 "198\.18\.0\.1" is not an IPv6 address/],
      ['42', /PublicIPv6 42 is not a string/],
    ] as const) {
      const result = decodeLease('10.244.7.0/24', `{"PublicIP":"198.18.0.1","PublicIPv6":${value},"NodeName":"a","BackendType":"udp","BackendData":{}}`, null);
      assert.equal(result.ok, false);
      assert.match((result as { reason: string }).reason, reason);
    }
  });
});
