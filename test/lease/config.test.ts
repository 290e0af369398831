import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { layoutChanges } from '../../daemon/lease/config.js';
import { defaultSubnetLen, misfitOf, parseNetworkConfig, toNetConf } from '../../daemon/lease/index.js';
import { formatIPv4, parseCidr } from '../../daemon/net/ipv4.js';
import { assertConfigRejected } from './helpers.js';

describe('network config defaults (flannel pkg/subnet/config.go)', () => {
  it('gives a /16 network /24 subnets from the second to the last', () => {
    const config = parseNetworkConfig('{"Network": "10.5.0.0/16"}');
    assert.equal(config.ipv4!.subnetLen, 24);
    assert.equal(formatIPv4(config.ipv4!.subnetMin), '10.5.1.0');
    assert.equal(formatIPv4(config.ipv4!.subnetMax), '10.5.255.0');
    assert.deepEqual(config.backend, { type: 'udp', port: 8285 });
  });

  it('uses /24 up to a /22 network and prefix + 2 below that', () => {
    assert.equal(defaultSubnetLen(8), 24);
    assert.equal(defaultSubnetLen(22), 24);
    assert.equal(defaultSubnetLen(23), 25);
    assert.equal(defaultSubnetLen(28), 30);
    assert.equal(parseNetworkConfig({ Network: '10.5.0.0/22' }).ipv4!.subnetLen, 24);
    const small = parseNetworkConfig({ Network: '10.5.0.0/28' }).ipv4!;
    assert.equal(small.subnetLen, 30);
    assert.equal(formatIPv4(small.subnetMin), '10.5.0.4');
    assert.equal(formatIPv4(small.subnetMax), '10.5.0.12');
  });

  it('keeps explicit values and writes the defaults out in net-conf form', () => {
    const config = parseNetworkConfig({ Network: '10.5.0.0/16', SubnetLen: 26, SubnetMin: '10.5.4.0', SubnetMax: '10.5.9.192', Backend: { Type: 'udp', Port: 9000 } });
    assert.deepEqual(toNetConf(config), { Network: '10.5.0.0/16', SubnetLen: 26, SubnetMin: '10.5.4.0', SubnetMax: '10.5.9.192', Backend: { Type: 'udp', Port: 9000 } });
  });

  it('accepts flannel files that spell out EnableIPv4 and EnableIPv6', () => {
    assert.equal(parseNetworkConfig({ Network: '10.5.0.0/16', EnableIPv4: true, EnableIPv6: false }).ipv4!.subnetLen, 24);
  });
});

describe('network config validation: one rule each', () => {
  it('rejects text that is not JSON', () => assertConfigRejected('{"Network": ', '(document)', /not valid JSON/));
  it('rejects a non-object', () => assertConfigRejected('[1,2]', '(document)', /JSON object/));
  it('requires Network', () => assertConfigRejected({ SubnetLen: 24 }, 'Network', /required/));
  it('requires Network to be a CIDR', () => assertConfigRejected({ Network: '10.5.0.0' }, 'Network', /CIDR/));
  it('rejects a Network with host bits set', () => assertConfigRejected({ Network: '10.5.1.0/16' }, 'Network', /host bits/));
  it('rejects a Network smaller than /28', () => assertConfigRejected({ Network: '10.5.0.0/29' }, 'Network', /too small.*\/28/));
  it('rejects a non-integer SubnetLen', () => assertConfigRejected({ Network: '10.5.0.0/16', SubnetLen: 24.5 }, 'SubnetLen', /integer/));
  it('rejects SubnetLen above 30', () => assertConfigRejected({ Network: '10.5.0.0/16', SubnetLen: 31 }, 'SubnetLen', /at most 30/));
  it('rejects SubnetLen that leaves fewer than four subnets', () => assertConfigRejected({ Network: '10.5.0.0/16', SubnetLen: 17 }, 'SubnetLen', /at least.*\/18/));
  it('rejects a SubnetMin that is not an address', () => assertConfigRejected({ Network: '10.5.0.0/16', SubnetMin: '10.5.1' }, 'SubnetMin', /not an IPv4 address/));
  it('rejects a SubnetMin outside the Network', () => assertConfigRejected({ Network: '10.5.0.0/16', SubnetMin: '10.6.1.0' }, 'SubnetMin', /not in the range of the Network/));
  it('rejects a misaligned SubnetMin', () => assertConfigRejected({ Network: '10.5.0.0/16', SubnetMin: '10.5.1.128' }, 'SubnetMin', /SubnetLen boundary/));
  it('rejects a SubnetMax outside the Network', () => assertConfigRejected({ Network: '10.5.0.0/16', SubnetMax: '10.4.255.0' }, 'SubnetMax', /not in the range of the Network/));
  it('rejects a misaligned SubnetMax', () => assertConfigRejected({ Network: '10.5.0.0/16', SubnetLen: 26, SubnetMax: '10.5.9.32' }, 'SubnetMax', /SubnetLen boundary/));
  it('rejects SubnetMin above SubnetMax', () => assertConfigRejected({ Network: '10.5.0.0/16', SubnetMin: '10.5.9.0', SubnetMax: '10.5.8.0' }, 'SubnetMin', /above SubnetMax/));
  it('rejects an unknown backend type', () => assertConfigRejected({ Network: '10.5.0.0/16', Backend: { Type: 'vxlan' } }, 'Backend.Type', /"vxlan" is not supported/));
  it('rejects a Backend that is not an object', () => assertConfigRejected({ Network: '10.5.0.0/16', Backend: 'udp' }, 'Backend', /object/));
  it('rejects a Backend.Port out of range', () => assertConfigRejected({ Network: '10.5.0.0/16', Backend: { Type: 'udp', Port: 70000 } }, 'Backend.Port', /1\.\.65535/));
  it('rejects an unknown Backend field', () => assertConfigRejected({ Network: '10.5.0.0/16', Backend: { Type: 'udp', VNI: 1 } }, 'Backend.VNI', /not a known field/));
  it('rejects an unknown field (a typo must not pass silently)', () => assertConfigRejected({ Network: '10.5.0.0/16', SubnetLength: 24 }, 'SubnetLength', /not a known field/));
  it('requires IPv6Network with EnableIPv6 (the dual-stack rules: dual-stack-config.test.ts)', () => assertConfigRejected({ Network: '10.5.0.0/16', EnableIPv6: true }, 'IPv6Network', /required with EnableIPv6: true/));
});

describe('subnets under a config', () => {
  const config = parseNetworkConfig({ Network: '10.5.0.0/16', SubnetMin: '10.5.10.0', SubnetMax: '10.5.20.0' });

  it('keeps a lease SubnetLen long inside SubnetMin..SubnetMax, and a reservation anywhere in the Network', () => {
    assert.equal(misfitOf(config, parseCidr('10.5.10.0/24'), false), undefined);
    assert.equal(misfitOf(config, parseCidr('10.5.20.0/24'), false), undefined);
    assert.equal(misfitOf(config, parseCidr('10.5.30.0/24'), true), undefined);
    assert.equal(misfitOf(config, parseCidr('10.5.30.0/24'), false), 'subnet 10.5.30.0/24 lies outside SubnetMin..SubnetMax (10.5.10.0 to 10.5.20.0)');
    assert.equal(misfitOf(config, parseCidr('10.5.9.0/24'), false), 'subnet 10.5.9.0/24 lies outside SubnetMin..SubnetMax (10.5.10.0 to 10.5.20.0)');
    assert.equal(misfitOf(config, parseCidr('10.6.10.0/24'), true), 'subnet 10.6.10.0/24 lies outside the Network 10.5.0.0/16');
    assert.equal(misfitOf(config, parseCidr('10.5.10.0/25'), true), 'subnet 10.5.10.0/25 is a /25, but the network config gives each node a /24 (SubnetLen)');
  });

  it('names the layout fields that differ, defaults included', () => {
    const base = parseNetworkConfig({ Network: '10.5.0.0/16' });
    assert.deepEqual(layoutChanges(base, config), [], 'SubnetMin and SubnetMax do not move existing subnets');
    assert.deepEqual(layoutChanges(base, parseNetworkConfig({ Network: '10.5.0.0/16', SubnetLen: 24, Backend: { Type: 'udp', Port: 9000 } })), []);
    assert.deepEqual(layoutChanges(base, parseNetworkConfig({ Network: '10.6.0.0/16' })), ['Network']);
    assert.deepEqual(layoutChanges(parseNetworkConfig({ Network: '10.4.0.0/16' }), parseNetworkConfig({ Network: '10.4.0.0/15' })), ['Network'], 'same address, another length');
    assert.deepEqual(layoutChanges(base, parseNetworkConfig({ Network: '10.5.0.0/16', SubnetLen: 25 })), ['SubnetLen']);
    assert.deepEqual(layoutChanges(base, parseNetworkConfig({ Network: '10.5.0.0/23' })), ['Network', 'SubnetLen'], 'a /23 defaults to /25 subnets');
  });
});
