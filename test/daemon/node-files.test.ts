// The files a node publishes for its pods, dual-stack or not: subnet.env as
// flannel writes it, and the CNI conflist. The conflist is checked against
// the real CNI plugins in node-files.system.test.ts.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { formatSubnet } from '../../daemon/lease/index.js';
import { parseCidr } from '../../daemon/net/ipv4.js';
import { parseCidr6 } from '../../daemon/net/ipv6.js';
import { cniConflist } from '../../daemon/node/cni.js';
import { formatSubnetEnv, readPreviousSubnet, writeSubnetEnv } from '../../daemon/node/subnet-env.js';

const IPV4 = { ipv4: { network: parseCidr('10.244.0.0/16'), subnet: parseCidr('10.244.3.0/24') }, mtu: 1472, ipMasq: true };
const IPV6 = { network: parseCidr6('fd00:10:244::/48'), subnet: parseCidr6('fd00:10:244:3::/64') };

test('subnet.env, IPv4 only: exactly as before dual-stack', () => {
  assert.equal(formatSubnetEnv(IPV4), 'FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.3.1/24\nFLANNEL_MTU=1472\nFLANNEL_IPMASQ=true\n');
});

test('subnet.env, dual-stack: flannel\'s lines in flannel\'s order, each subnet as its first address', () => {
  assert.equal(
    formatSubnetEnv({ ...IPV4, ipv6: IPV6 }),
    [
      'FLANNEL_NETWORK=10.244.0.0/16',
      'FLANNEL_SUBNET=10.244.3.1/24',
      'FLANNEL_IPV6_NETWORK=fd00:10:244::/48',
      'FLANNEL_IPV6_SUBNET=fd00:10:244:3::1/64',
      'FLANNEL_MTU=1472',
      'FLANNEL_IPMASQ=true',
      '',
    ].join('\n'),
  );
});

test('subnet.env, IPv6-only: the IPv6 lines alone, as flannel writes them', () => {
  assert.equal(
    formatSubnetEnv({ ipv6: IPV6, mtu: 1452, ipMasq: false }),
    'FLANNEL_IPV6_NETWORK=fd00:10:244::/48\nFLANNEL_IPV6_SUBNET=fd00:10:244:3::1/64\nFLANNEL_MTU=1452\nFLANNEL_IPMASQ=false\n',
  );
});

test('subnet.env: the IPv6 first address for subnets of other lengths, in RFC 5952 form', () => {
  const line = (subnet: string) => /^FLANNEL_IPV6_SUBNET=(.*)$/m.exec(formatSubnetEnv({ ...IPV4, ipv6: { network: IPV6.network, subnet: parseCidr6(subnet) } }))?.[1];
  assert.equal(line('fd00:10:244:3:1::/80'), 'fd00:10:244:3:1::1/80');
  assert.equal(line('fd00:10:244:0:0:0:ab:ff00/120'), 'fd00:10:244::ab:ff01/120');
  assert.equal(line('fd00:10:244:ffff:ffff:ffff:ffff:fff0/124'), 'fd00:10:244:ffff:ffff:ffff:ffff:fff1/124');
});

test('the previous subnet is read back from a dual-stack subnet.env as its IPv4 subnet, and from an IPv6-only one as its IPv6 subnet', async (t) => {
  const dir = await mkdtemp(path.join(tmpdir(), 'miniflannel-subnet-env-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const file = path.join(dir, 'subnet.env');
  await writeSubnetEnv(file, { ...IPV4, ipv6: IPV6 });
  const previous = await readPreviousSubnet(file);
  assert.equal(previous && formatSubnet(previous), '10.244.3.0/24');
  // What an IPv6-only node (flannel's too) writes: no FLANNEL_SUBNET.
  await writeFile(file, 'FLANNEL_IPV6_NETWORK=fd00:10:244::/48\nFLANNEL_IPV6_SUBNET=fd00:10:244:3::1/64\nFLANNEL_MTU=1472\nFLANNEL_IPMASQ=false\n');
  const previous6 = await readPreviousSubnet(file);
  assert.equal(previous6 && formatSubnet(previous6), 'fd00:10:244:3::/64');
  await writeFile(file, 'FLANNEL_IPV6_SUBNET=fd00:10:244:3::1/1299\n');
  assert.equal(await readPreviousSubnet(file), undefined, 'a damaged line is no previous subnet');
});

const IPV4_BRIDGE = {
  type: 'bridge',
  bridge: 'cni0',
  isGateway: true,
  isDefaultGateway: true,
  ipMasq: false,
  hairpinMode: true,
  mtu: 1472,
  ipam: { type: 'host-local', ranges: [[{ subnet: '10.244.3.0/24' }]], routes: [{ dst: '10.244.0.0/16' }], dataDir: '/var/lib/ipam' },
};
const PORTMAP = { type: 'portmap', capabilities: { portMappings: true } };
const IPV4_CONFLIST = { cniVersion: '1.0.0', name: 'miniflannel', plugins: [IPV4_BRIDGE, PORTMAP] };

test('the conflist, IPv4 only: exactly as before dual-stack', () => {
  assert.deepEqual(cniConflist({ ipv4: { subnet: '10.244.3.0/24', network: '10.244.0.0/16' }, mtu: 1472, ipamDataDir: '/var/lib/ipam' }), IPV4_CONFLIST);
});

test('the conflist, dual-stack: one host-local range set per family and a route to each cluster network; the rest unchanged', () => {
  const conflist = cniConflist({
    ipv4: { subnet: '10.244.3.0/24', network: '10.244.0.0/16' },
    ipv6: { subnet: 'fd00:10:244:3::/64', network: 'fd00:10:244::/48' },
    mtu: 1472,
    ipamDataDir: '/var/lib/ipam',
  });
  assert.deepEqual(conflist, {
    ...IPV4_CONFLIST,
    plugins: [
      {
        ...IPV4_BRIDGE,
        ipam: {
          ...IPV4_BRIDGE.ipam,
          ranges: [[{ subnet: '10.244.3.0/24' }], [{ subnet: 'fd00:10:244:3::/64' }]],
          routes: [{ dst: '10.244.0.0/16' }, { dst: 'fd00:10:244::/48' }],
        },
      },
      PORTMAP,
    ],
  });
});

test('the conflist, IPv6-only: the IPv6 range and route alone', () => {
  const conflist = cniConflist({ ipv6: { subnet: 'fd00:10:244:3::/64', network: 'fd00:10:244::/48' }, mtu: 1452, ipamDataDir: '/var/lib/ipam' });
  assert.deepEqual(conflist, {
    ...IPV4_CONFLIST,
    plugins: [
      { ...IPV4_BRIDGE, mtu: 1452, ipam: { ...IPV4_BRIDGE.ipam, ranges: [[{ subnet: 'fd00:10:244:3::/64' }]], routes: [{ dst: 'fd00:10:244::/48' }] } },
      PORTMAP,
    ],
  });
});
