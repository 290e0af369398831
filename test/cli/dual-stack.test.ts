// The CLI's dual-stack pieces that need no Redis: subnet arguments that name
// an IPv6 subnet or a pair, and config diffs that turn IPv6 on or off.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { diffConfigs } from '../../cli/commands/config.js';
import { leaseKeyOfSpec, parseSubnetSpec } from '../../cli/commands/lease.js';
import { UsageError } from '../../cli/errors.js';
import { formatSubnet, parseNetworkConfig, toNetConf, type NetworkConfig } from '../../daemon/lease/index.js';
import { InvalidAddressError } from '../../daemon/net/ipv4.js';

const IPV4 = { Network: '10.244.0.0/16' };
const DUAL = { ...IPV4, EnableIPv6: true, IPv6Network: 'fd00:10:244::/48' };
const dual = parseNetworkConfig(DUAL);
const ipv4Only = parseNetworkConfig(IPV4);
const ipv6Only = parseNetworkConfig({ EnableIPv4: false, EnableIPv6: true, IPv6Network: 'fd00:10:244::/48' });

const resolve = (text: string, config: NetworkConfig = dual) => formatSubnet(leaseKeyOfSpec(parseSubnetSpec(text), config));

/** Asserts a UsageError on one line matching `rule`. */
function usage(run: () => unknown, rule: RegExp): void {
  assert.throws(run, (err: unknown) => {
    assert.ok(err instanceof UsageError, `expected UsageError, got ${String(err)}`);
    assert.doesNotMatch(err.message, /\n/);
    assert.match(err.message, rule);
    return true;
  });
}

describe('subnet arguments under an IPv6-only config', () => {
  it('takes an IPv6 subnet as the lease key, in canonical form', () => {
    assert.equal(resolve('fd00:10:244:7::/64', ipv6Only), 'fd00:10:244:7::/64');
    assert.equal(resolve('fd00:0010:0244:0007:0:0:0:0/64', ipv6Only), 'fd00:10:244:7::/64');
  });

  it('refuses an IPv4 subnet or a pair, naming the IPv6-only config', () => {
    usage(() => resolve('10.244.7.0/24', ipv6Only), /^subnet 10\.244\.7\.0\/24 is IPv4, but the network config is IPv6-only \(EnableIPv4: false\): name the IPv6 subnet$/);
    usage(() => resolve('10.244.7.0/24,fd00:10:244:7::/64', ipv6Only), /is IPv4, but the network config is IPv6-only/);
  });
});

describe('subnet arguments under a dual-stack config', () => {
  it('takes an IPv4 subnet as it is, with or without a config', () => {
    assert.equal(resolve('10.244.7.0/24'), '10.244.7.0/24');
    assert.equal(formatSubnet(leaseKeyOfSpec(parseSubnetSpec('10.244.7.0/24'), undefined)), '10.244.7.0/24');
  });

  it('maps an IPv6 subnet to its paired IPv4 subnet, in any spelling', () => {
    assert.equal(resolve('fd00:10:244:7::/64'), '10.244.7.0/24');
    assert.equal(resolve('fd00:0010:0244:0007:0:0:0:0/64'), '10.244.7.0/24');
    assert.equal(resolve('fd00:10:244:ff::/64'), '10.244.255.0/24');
  });

  it('takes a pair whose halves are paired, in either order', () => {
    assert.equal(resolve('10.244.7.0/24,fd00:10:244:7::/64'), '10.244.7.0/24');
    assert.equal(resolve('fd00:10:244:7::/64, 10.244.7.0/24'), '10.244.7.0/24');
  });

  it('refuses a pair that is not one, naming the right pairs', () =>
    usage(() => resolve('10.244.7.0/24,fd00:10:244:8::/64'), /^10\.244\.7\.0\/24 and fd00:10:244:8::\/64 are not a pair in this network config: 10\.244\.7\.0\/24 pairs with fd00:10:244:7::\/64, and fd00:10:244:8::\/64 with 10\.244\.8\.0\/24$/));

  it('refuses a pair whose IPv4 half does not fit the Network', () => usage(() => resolve('10.245.7.0/24,fd00:10:244:7::/64'), /outside the Network 10\.244\.0\.0\/16/));

  it('refuses an IPv6 subnet without a pair', () => {
    usage(() => resolve('fd00:10:244:100::/64'), /pairs with no subnet of Network 10\.244\.0\.0\/16: the k-th \/64 of IPv6Network fd00:10:244::\/48 pairs with the k-th \/24/);
    usage(() => resolve('fd00:10:245:7::/64'), /pairs with no subnet/);
    usage(() => resolve('fd00:10:244:7::/80'), /pairs with no subnet/);
  });

  it('refuses an IPv6 subnet when the config has no IPv6, or there is no config', () => {
    usage(() => resolve('fd00:10:244:7::/64', ipv4Only), /is IPv6, but the network config has no IPv6Network \(EnableIPv6 is off\)/);
    usage(() => leaseKeyOfSpec(parseSubnetSpec('fd00:10:244:7::/64'), undefined), /is IPv6, and no valid network config is stored to pair it with an IPv4 subnet/);
  });

  it('names the aligned subnet for host bits, in both families', () => {
    usage(() => parseSubnetSpec('fd00:10:244:7::1/64'), /not aligned to a \/64 boundary; did you mean fd00:10:244:7::\/64\?/);
    usage(() => parseSubnetSpec('10.244.7.1/24,fd00:10:244:7::/64'), /did you mean 10\.244\.7\.0\/24\?/);
  });

  it('refuses two of one family, three parts, and text that is no subnet', () => {
    usage(() => parseSubnetSpec('10.244.7.0/24,10.244.8.0/24'), /names two IPv4 subnets/);
    usage(() => parseSubnetSpec('fd00:10:244:7::/64,fd00:10:244:8::/64'), /names two IPv6 subnets/);
    usage(() => parseSubnetSpec('10.244.7.0/24,fd00:10:244:7::/64,10.244.8.0/24'), /neither a subnet nor a pair/);
    assert.throws(() => parseSubnetSpec('fd00:10:244:7::'), InvalidAddressError);
  });
});

describe('config diffs that turn IPv6 on or off', () => {
  const conf = (doc: unknown) => toNetConf(parseNetworkConfig(doc));

  it('lists every IPv6 field that appears, after SubnetMax', () => {
    assert.deepEqual(diffConfigs(conf(IPV4), conf(DUAL)), [
      { field: 'EnableIPv6', from: null, to: true },
      { field: 'IPv6Network', from: null, to: 'fd00:10:244::/48' },
      { field: 'IPv6SubnetLen', from: null, to: 64 },
      { field: 'IPv6SubnetMin', from: null, to: 'fd00:10:244:1::' },
      { field: 'IPv6SubnetMax', from: null, to: 'fd00:10:244:ffff::' },
    ]);
  });

  it('lists every IPv6 field that disappears', () => {
    assert.deepEqual(
      diffConfigs(conf(DUAL), conf(IPV4)).map((change) => [change.field, change.to]),
      [['EnableIPv6', null], ['IPv6Network', null], ['IPv6SubnetLen', null], ['IPv6SubnetMin', null], ['IPv6SubnetMax', null]],
    );
  });

  it('lists one IPv6 field that changes, and nothing for an IPv4-only config written twice', () => {
    assert.deepEqual(diffConfigs(conf(DUAL), conf({ ...DUAL, IPv6SubnetMax: 'fd00:10:244:ff::' })), [{ field: 'IPv6SubnetMax', from: 'fd00:10:244:ffff::', to: 'fd00:10:244:ff::' }]);
    assert.deepEqual(diffConfigs(conf(IPV4), conf({ ...IPV4, EnableIPv6: false })), []);
  });
});
