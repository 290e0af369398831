// What a dual-stack node publishes, in namespaces: the conflist through the
// real CNI bridge and host-local plugins, called as kubelet calls them, and
// the --ip-masq rules of both families through the real iptables and
// ip6tables.
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { cniConflist } from '../../daemon/node/cni.js';
import { MASQ_CHAIN } from '../../daemon/node/masquerade.js';
import { createTestSandbox, testNamespace } from '../harness/namespaces.js';
import { compiledTest } from '../harness/paths.js';

test('a dual-stack conflist gives a pod one address of each family and routes to both cluster networks, and turns IPv6 forwarding on', async () => {
  const sandbox = await createTestSandbox(1);
  after(() => sandbox.destroy());
  const node = sandbox.nodes[0]!;
  const forwarding = () => node.ns.exec(['cat', '/proc/sys/net/ipv4/ip_forward', '/proc/sys/net/ipv6/conf/all/forwarding']);
  assert.equal(await forwarding(), '0\n0\n', 'a new namespace forwards nothing');
  const conflist = cniConflist({
    ipv4: { subnet: '10.244.3.0/24', network: '10.244.0.0/16' },
    ipv6: { subnet: 'fd00:10:244:3::/64', network: 'fd00:10:244::/48' },
    mtu: 1472,
    ipamDataDir: `${node.workDir}/ipam`,
  });
  const pod = await sandbox.addPod(node, conflist as never);

  assert.match(pod.ip, /^10\.244\.3\.\d+$/);
  assert.match(pod.ip6 ?? '', /^fd00:10:244:3::[0-9a-f]+$/);
  assert.notEqual(pod.ip6, 'fd00:10:244:3::', 'the subnet\'s first address, the TUN\'s, is never a pod\'s');
  assert.notEqual(pod.ip6, 'fd00:10:244:3::1', 'nor the bridge\'s');
  assert.match(await pod.ns.exec(['ip', '-4', 'route', 'show']), /^10\.244\.0\.0\/16 via 10\.244\.3\.1 dev eth0/m);
  assert.match(await pod.ns.exec(['ip', '-6', 'route', 'show']), /^fd00:10:244::\/48 via fd00:10:244:3::1 dev eth0/m);
  assert.match(await node.ns.exec(['ip', '-6', 'addr', 'show', 'dev', 'cni0']), /inet6 fd00:10:244:3::1\/64 scope global/, 'the bridge holds the node\'s IPv6 subnet');
  // The bridge plugin (isGateway) turns forwarding on for each family it gave an address of: the node need not.
  assert.equal(await forwarding(), '1\n1\n');
  // The bridge's gateway address answers once its duplicate address detection is over (about a second): hence the deadline.
  await pod.ns.exec(['ping', '-6', '-c', '1', '-w', '5', 'fd00:10:244:3::1']);
});

test('--ip-masq with IPv6: the same four rules in ip6tables, installed idempotently beside the IPv4 ones and removed without touching them', async () => {
  const ns = await testNamespace();
  const result = JSON.parse((await ns.exec([process.execPath, compiledTest('daemon/masquerade-probe.js')])).trim().split('\n').pop()!);
  const comment = '-m comment --comment "miniflannel masq"';
  const jump = `-A POSTROUTING ${comment} -j ${MASQ_CHAIN}`;
  const ipv6Rules = [
    `-N ${MASQ_CHAIN}`,
    jump,
    `-A ${MASQ_CHAIN} -s fd00:98::/48 -d fd00:98::/48 ${comment} -j RETURN`,
    `-A ${MASQ_CHAIN} -s fd00:98::/48 ! -d ff00::/8 ${comment} -j MASQUERADE --random-fully`,
    `-A ${MASQ_CHAIN} ! -s fd00:98::/48 -d fd00:98:0:3::/64 ${comment} -j RETURN`,
    `-A ${MASQ_CHAIN} ! -s fd00:98::/48 -d fd00:98::/48 ${comment} -j MASQUERADE --random-fully`,
  ];
  const ipv4Rules = [
    `-N ${MASQ_CHAIN}`,
    jump,
    `-A ${MASQ_CHAIN} -s 10.98.0.0/16 -d 10.98.0.0/16 ${comment} -j RETURN`,
    `-A ${MASQ_CHAIN} -s 10.98.0.0/16 ! -d 224.0.0.0/4 ${comment} -j MASQUERADE --random-fully`,
    `-A ${MASQ_CHAIN} ! -s 10.98.0.0/16 -d 10.98.3.0/24 ${comment} -j RETURN`,
    `-A ${MASQ_CHAIN} ! -s 10.98.0.0/16 -d 10.98.0.0/16 ${comment} -j MASQUERADE --random-fully`,
  ];
  assert.deepEqual(result.before, { ipv4: [], ipv6: [], installed: [false, false] });
  assert.deepEqual(result.installed, { ipv4: ipv4Rules, ipv6: ipv6Rules, installed: [true, true] });
  assert.deepEqual(result.again, result.installed, 'installing again changes nothing');
  assert.deepEqual(result.ipv6Removed, { ipv4: ipv4Rules, ipv6: [], installed: [true, false] });
  assert.deepEqual(result.removed, result.before, 'removing twice is no error and leaves nothing');
});
