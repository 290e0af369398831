// IPv6 on the TUN (native/netlink.cc, native/offload.cc), on real devices
// inside a test namespace: the address and route over rtnetlink, and TCP
// through the offloads, with IPv4 beside it as the reference.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { testNamespace } from '../harness/namespaces.js';
import { compiledTest } from '../harness/paths.js';
import type { Netns } from '../../lab/netns.js';

const probe = compiledTest('tun/ipv6-probe.js');

async function runProbe(ns: Netns, mode: string, prefix: string[] = [], variant?: string): Promise<any> {
  const out = await ns.exec([...prefix, process.execPath, probe, mode, ...(variant ? [variant] : [])]);
  return JSON.parse(out.trim().split('\n').pop()!);
}

test('an IPv6 address and the IPv6 cluster route are set over rtnetlink, idempotently', async (t) => {
  const ns = await testNamespace();
  const result = await runProbe(ns, 'rtnetlink');

  await t.test('the address is usable at once (no duplicate address detection), and adding it again keeps one', () => {
    const expected = ['mfroute6 inet6 fd00:10:0:1::1/64 scope global nodad valid_lft forever preferred_lft forever'];
    assert.deepEqual(result.address, expected);
    assert.deepEqual(result.addressAgain, expected);
  });
  await t.test('the route is the one `ip -6 route replace NETWORK dev TUN` makes', () => {
    assert.deepEqual(result.first, ['fd00:10::/48 dev mfother6 metric 1024 pref medium']);
  });
  await t.test('routing again replaces the route, into another device or the same one, and never adds a second', () => {
    assert.deepEqual(result.replaced, ['fd00:10::/48 dev mfroute6 metric 1024 pref medium']);
    assert.deepEqual(result.again, ['fd00:10::/48 dev mfroute6 metric 1024 pref medium']);
  });
  await t.test('packets to the IPv6 cluster network arrive in the TUN', () => {
    assert.equal(result.arrived, true);
  });
  await t.test('closing the TUN takes its route with it', () => {
    assert.deepEqual(result.afterClose, []);
  });
  await t.test('refusals are one line naming the change, the errno and the way out', () => {
    assert.equal(result.missingDevice.message, "ENODEV: routing fd00:10::/48 into 'mfnone': no interface 'mfnone' (No such device)");
    assert.equal(result.missingAddressDevice.message, "ENODEV: adding fd00:10:0:1::1/64 to 'mfnone': no interface 'mfnone' (No such device)");
    assert.equal(result.notAnAddress.message, "EINVAL: routing fd00:10::x/48 into 'lo': 'fd00:10::x' is not an IPv6 address (Invalid argument)");
    assert.equal(result.prefixTooLong.message, "EINVAL: adding fd00:10::1/129 to 'lo': an IPv6 prefix length is 0 to 128 (Invalid argument)");
    assert.match(result.deviceDown.message, /^ENETDOWN: routing fd00:10::\/48 into 'mfdown6': .*not up \(Network is down\)$/);
    assert.equal(
      result.mtuTooSmall.message,
      "EINVAL: adding fd00:10:0:2::1/64 to 'mfsmall6': IPv6 needs an MTU of 1280 or more and the interface has 1000 (Invalid argument)",
    );
    // EACCES here is the kernel's, not a missing capability: the message must not send the operator after one.
    assert.equal(result.ipv6Disabled.code, 'EACCES');
    assert.match(result.ipv6Disabled.message, /^EACCES: adding fd00:10:0:3::1\/64 to 'mfnov6': .*IPv6 is disabled/);
    assert.doesNotMatch(result.ipv6Disabled.message, /CAP_NET_ADMIN/);
    for (const refusal of [result.missingDevice, result.notAnAddress, result.deviceDown, result.mtuTooSmall, result.ipv6Disabled]) {
      assert.doesNotMatch(refusal.message, /\n/);
    }
  });
});

test('without CAP_NET_ADMIN the IPv6 route and address errors say so and nothing changes', async () => {
  const ns = await testNamespace();
  const result = await runProbe(ns, 'noPermission', ['setpriv', '--bounding-set=-net_admin', '--inh-caps=-net_admin']);
  assert.equal(result.route.code, 'EPERM');
  assert.equal(result.route.message, "EPERM: routing fd00:10::/48 into 'lo' requires CAP_NET_ADMIN (Operation not permitted)");
  assert.equal(result.address.message, "EPERM: adding fd00:10::1/64 to 'lo' requires CAP_NET_ADMIN (Operation not permitted)");
  assert.deepEqual(result.routes, []);
  assert.deepEqual(result.addresses, []);
});

for (const family of [4, 6] as const) {
  for (const variant of ['plain', 'offload'] as const) {
    test(`IPv${family} TCP through ${variant === 'offload' ? 'an offloading' : 'a plain'} TUN arrives intact, ${variant === 'offload' ? 'read as super-packets and written joined' : 'one packet per read and per write'}`, async () => {
      const ns = await testNamespace();
      const result = await runProbe(ns, `reflect${family}`, [], variant);
      assert.equal(result.intact, true, 'the bytes sent are the bytes received');
      assert.equal(result.refusedReads, 0, 'the cutter refused no frame');
      if (variant === 'plain') {
        assert.equal(result.framesRead, result.packetsRead, 'every read is one packet');
        assert.equal(result.framesWritten, result.packetsWritten, 'every write is one packet');
      } else {
        // The kernel counts a super-packet once: far fewer frames than packets means most frames held many segments.
        assert.ok(result.packetsRead > 2 * result.framesRead, `frames read ${result.framesRead}, packets cut from them ${result.packetsRead}`);
        assert.ok(result.packetsWritten > 2 * result.framesWritten, `packets written ${result.packetsWritten} in ${result.framesWritten} frames`);
      }
    });
  }
}
