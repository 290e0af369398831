// IPv6-only network configs (EnableIPv4: false): their rules, defaults,
// allocatable range and lease keys, and how they differ from dual stack.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { allocatableCount, allocatableRange, describeAllocatable, layoutChanges } from '../../daemon/lease/config.js';
import { ipv4SubnetOf, ipv6SubnetOf, misfitOf, parseNetworkConfig, subnetsOfLease, toNetConf } from '../../daemon/lease/index.js';
import { decodeLease, encodeAttrs, holderOf, ownerAddress } from '../../daemon/lease/lease.js';
import { formatCidr, parseCidr } from '../../daemon/net/ipv4.js';
import { formatCidr6, formatIPv6, parseCidr6 } from '../../daemon/net/ipv6.js';
import { assertConfigRejected } from './helpers.js';

const V6ONLY = { EnableIPv4: false, EnableIPv6: true, IPv6Network: 'fd00:10:244::/48' };
const config = parseNetworkConfig(V6ONLY);

describe('IPv6-only config', () => {
  it('has no IPv4 side, and IPv6SubnetMin..Max default from the second to the last /64', () => {
    assert.equal(config.ipv4, undefined);
    assert.equal(formatIPv6(config.ipv6!.subnetMin), 'fd00:10:244:1::');
    assert.equal(formatIPv6(config.ipv6!.subnetMax), 'fd00:10:244:ffff::');
    assert.equal(allocatableCount(config), 65535);
  });

  it('writes EnableIPv4: false and the IPv6 fields out in net-conf form, and reads that form back to the same config', () => {
    const netConf = toNetConf(config);
    assert.deepEqual(netConf, {
      EnableIPv4: false,
      EnableIPv6: true,
      IPv6Network: 'fd00:10:244::/48',
      IPv6SubnetLen: 64,
      IPv6SubnetMin: 'fd00:10:244:1::',
      IPv6SubnetMax: 'fd00:10:244:ffff::',
      Backend: { Type: 'udp', Port: 8285 },
    });
    assert.deepEqual(parseNetworkConfig(JSON.stringify(netConf)), config);
  });

  it('allocates from IPv6SubnetMin, capping the bitmap at 2^24 subnets however wide the range', () => {
    assert.deepEqual(allocatableRange(config), { family: 6, first: config.ipv6!.subnetMin, count: 65535, prefixLength: 64 });
    const wide = parseNetworkConfig({ ...V6ONLY, IPv6Network: 'fd00::/16' });
    assert.equal(allocatableCount(wide), 2 ** 48 - 1, 'exact past 2^32');
    assert.equal(allocatableRange(wide).count, 2 ** 24);
    const narrow = parseNetworkConfig({ ...V6ONLY, IPv6SubnetMin: 'fd00:10:244:ff00::', IPv6SubnetMax: 'fd00:10:244:ff03::' });
    assert.equal(allocatableCount(narrow), 4);
    assert.match(describeAllocatable(narrow), /^IPv6SubnetMin fd00:10:244:ff00:: to IPv6SubnetMax fd00:10:244:ff03:: in IPv6Network fd00:10:244::\/48$/);
  });

  it('compares IPv6SubnetMin and IPv6SubnetMax exactly, even where subnet indices pass 2^53', () => {
    const wide = { ...V6ONLY, IPv6Network: 'fd00::/8', IPv6SubnetLen: 120 };
    assertConfigRejected({ ...wide, IPv6SubnetMin: 'fd12:3456:789a:bcde:f012:3456:789a:bd00', IPv6SubnetMax: 'fd12:3456:789a:bcde:f012:3456:789a:bc00' }, 'IPv6SubnetMin', /is above IPv6SubnetMax/);
    assert.equal(allocatableCount(parseNetworkConfig({ ...wide, IPv6SubnetMin: 'fd12:3456:789a:bcde:f012:3456:789a:bc00', IPv6SubnetMax: 'fd12:3456:789a:bcde:f012:3456:789a:bd00' })), 2);
  });

  it('keys leases by their IPv6 subnets, with no IPv4 pair either way', () => {
    const subnet = parseCidr6('fd00:10:244:7::/64');
    assert.deepEqual(subnetsOfLease(config, subnet), { ipv6: subnet });
    assert.deepEqual(subnetsOfLease(config, parseCidr('10.244.7.0/24')), {});
    assert.equal(ipv4SubnetOf(config, subnet), undefined);
    assert.equal(ipv6SubnetOf(config, parseCidr('10.244.7.0/24')), undefined);
    const dual = parseNetworkConfig({ Network: '10.244.0.0/16', EnableIPv6: true, IPv6Network: 'fd00:10:244::/48' });
    assert.deepEqual(subnetsOfLease(dual, subnet), {}, 'a dual-stack network keys no lease by an IPv6 subnet');
    assert.equal(formatCidr6(subnetsOfLease(dual, parseCidr('10.244.7.0/24')).ipv6!), 'fd00:10:244:7::/64');
  });

  it('says why a subnet does not fit: the wrong family, length, network or range', () => {
    assert.equal(misfitOf(config, parseCidr6('fd00:10:244:7::/64'), false), undefined);
    assert.match(misfitOf(config, parseCidr('10.244.7.0/24'), false)!, /is an IPv4 lease, but the network config is IPv6-only/);
    assert.match(misfitOf(config, parseCidr6('fd00:10:244:7::/80'), true)!, /is a \/80, but the network config gives each node a \/64 \(IPv6SubnetLen\)/);
    assert.match(misfitOf(config, parseCidr6('fd00:10:245::/64'), true)!, /lies outside the IPv6Network fd00:10:244::\/48/);
    assert.match(misfitOf(config, parseCidr6('fd00:10:244::/64'), false)!, /lies outside IPv6SubnetMin..IPv6SubnetMax/);
    assert.equal(misfitOf(config, parseCidr6('fd00:10:244::/64'), true), undefined, 'a reservation may sit outside the range');
    const dual = parseNetworkConfig({ Network: '10.244.0.0/16', EnableIPv6: true, IPv6Network: 'fd00:10:244::/48' });
    assert.match(misfitOf(dual, parseCidr6('fd00:10:244:7::/64'), true)!, /but the network config has IPv4/);
  });

  it('counts turning IPv4 on or off as a layout change, since it changes what leases are keyed by', () => {
    const dual = parseNetworkConfig({ Network: '10.244.0.0/16', EnableIPv6: true, IPv6Network: 'fd00:10:244::/48' });
    assert.deepEqual(layoutChanges(dual, config), ['EnableIPv4']);
    assert.deepEqual(layoutChanges(config, dual), ['EnableIPv4']);
    assert.deepEqual(layoutChanges(config, parseNetworkConfig({ ...V6ONLY, IPv6SubnetLen: 60 })), ['IPv6SubnetLen']);
  });
});

describe('IPv6-only config validation: one rule each', () => {
  it('refuses both families off, with or without an IPv6Network', () => {
    assertConfigRejected({ EnableIPv4: false }, 'EnableIPv4', /EnableIPv4 and EnableIPv6 are both false, which leaves no pod network: set EnableIPv6: true/);
    assertConfigRejected({ EnableIPv4: false, IPv6Network: 'fd00::/48' }, 'EnableIPv4', /both false/);
  });
  for (const field of ['Network', 'SubnetLen', 'SubnetMin', 'SubnetMax']) {
    it(`refuses ${field} with EnableIPv4: false`, () => assertConfigRejected({ ...V6ONLY, [field]: field === 'SubnetLen' ? 24 : '10.0.0.0' }, field, /is given but EnableIPv4 is false \(an IPv6-only network\)/));
  }
  it('wants at least four subnets, as for Network', () => assertConfigRejected({ ...V6ONLY, IPv6SubnetLen: 49 }, 'IPv6SubnetLen', /at least the IPv6Network prefix \+ 2 \(\/50\)/));
  it('needs no room for IPv4 pairs: a /64 network of /66 subnets is fine', () => assert.equal(allocatableCount(parseNetworkConfig({ ...V6ONLY, IPv6Network: 'fd00::/64', IPv6SubnetLen: 66 })), 3));
});

describe('lease records without a PublicIP', () => {
  const attrs = { publicIPv6: '2001:db8::7', nodeName: 'n7', backendType: 'udp', backendData: { Port: 8285 } };

  it('are stored without PublicIP, read back with the IPv6 subnet as key, and belong to their PublicIPv6', () => {
    const text = encodeAttrs(attrs);
    assert.equal(text, '{"PublicIPv6":"2001:db8::7","NodeName":"n7","BackendType":"udp","BackendData":{"Port":8285}}');
    const decoded = decodeLease('fd00:10:244:7::/64', text, '1000');
    assert.ok(decoded.ok);
    assert.equal(decoded.lease.publicIP, undefined);
    assert.equal(formatCidr6(decoded.lease.cidr as never), 'fd00:10:244:7::/64');
    assert.equal(ownerAddress(decoded.lease), '2001:db8::7');
    assert.equal(holderOf(decoded.lease), 'n7 (2001:db8::7)');
  });

  it('read PublicIP null as absent, as the scripts do', () => {
    const decoded = decodeLease('fd00:10:244:7::/64', '{"PublicIP":null,"PublicIPv6":"2001:db8::7","NodeName":"n7","BackendType":"udp","BackendData":{}}', '1000');
    assert.ok(decoded.ok);
    assert.equal(ownerAddress(decoded.lease), '2001:db8::7');
  });

  it('still need one underlay address, and a key in canonical form', () => {
    const none = decodeLease('fd00:10:244:7::/64', '{"NodeName":"n7","BackendType":"udp","BackendData":{}}', '1000');
    assert.ok(!none.ok);
    assert.match(none.reason, /PublicIP undefined is not an IPv4 address/);
    const longhand = decodeLease('fd00:10:244:7:0:0:0:0/64', encodeAttrs(attrs), '1000');
    assert.ok(!longhand.ok);
    assert.match(longhand.reason, /not in canonical form/);
    const both = decodeLease('10.244.7.0/24', encodeAttrs({ ...attrs, publicIP: '198.18.0.7' }), '1000');
    assert.ok(both.ok);
    assert.equal(ownerAddress(both.lease), '198.18.0.7', 'PublicIP decides when both are set');
    assert.equal(formatCidr(both.lease.cidr as never), '10.244.7.0/24');
  });
});
