// Routes over rtnetlink (daemon/node/routes.ts, native/netlink.cc), on real
// devices inside a test namespace.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { testNamespace } from '../harness/namespaces.js';
import { compiledTest } from '../harness/paths.js';
import type { Netns } from '../../lab/netns.js';

const probe = compiledTest('tun/routes-probe.js');

async function runProbe(ns: Netns, mode: string, prefix: string[] = []): Promise<any> {
  const out = await ns.exec([...prefix, process.execPath, probe, mode]);
  return JSON.parse(out.trim().split('\n').pop()!);
}

test('the cluster network is routed into the TUN, replaced idempotently, and removed with the device', async (t) => {
  const ns = await testNamespace();
  const result = await runProbe(ns, 'routes');

  await t.test('the route is the one `ip route replace NETWORK dev TUN` makes', () => {
    assert.deepEqual(result.first, ['10.98.0.0/16 dev mfother scope link']);
  });
  await t.test('routing again replaces the route, into another device or the same one, and never adds a second', () => {
    assert.deepEqual(result.replaced, ['10.98.0.0/16 dev mfroute scope link']);
    assert.deepEqual(result.again, ['10.98.0.0/16 dev mfroute scope link']);
  });
  await t.test('the routes through a device, as /status reports them, are the kernel\'s: the one that moved away is gone', () => {
    assert.deepEqual(result.seenThrough, { mfroute: ['10.98.0.0/16'], mfother: [] });
  });
  await t.test('closing the TUN takes its route with it', () => {
    assert.deepEqual(result.afterClose, []);
  });
  await t.test('deleting a leftover TUN removes the device and its route', () => {
    assert.deepEqual(result.beforeDelete, ['10.98.0.0/16 dev mfleft scope link']);
    assert.deepEqual(result.afterDelete, { routes: [], exists: false });
  });
  await t.test('packets to the cluster network arrive in the TUN', () => {
    assert.equal(result.arrived, true);
  });
  await t.test('a device that does not exist: RouteError, ENODEV, one line naming the route and the device', () => {
    for (const refusal of [result.missingDevice, result.missingDelete]) {
      assert.equal(refusal.isRouteError, true);
      assert.equal(refusal.name, 'RouteError');
      assert.equal(refusal.code, 'ENODEV');
      assert.equal(refusal.causeCode, 'ENODEV');
      assert.doesNotMatch(refusal.message, /\n/);
    }
    assert.equal(result.missingDevice.message, "ENODEV: routing 10.98.0.0/16 into 'mfnone': no interface 'mfnone' (No such device)");
    assert.equal(result.missingDelete.message, "ENODEV: deleting interface 'mfnone': no interface 'mfnone' (No such device)");
  });
  await t.test('a device that is down: the kernel\'s own explanation is in the message', () => {
    assert.equal(result.deviceDown.code, 'ENETDOWN');
    assert.match(result.deviceDown.message, /^ENETDOWN: routing 10\.98\.0\.0\/16 into 'mfdown': .*not up \(Network is down\)$/);
  });
});

test('dual-stack: the TUN gets a /128 from the node\'s IPv6 subnet and the IPv6 cluster network, idempotently; the subnet stays on the bridge', async (t) => {
  const ns = await testNamespace();
  const result = await runProbe(ns, 'routes6');

  await t.test('the address is the subnet\'s first one as a /128, usable at once, and giving it again keeps one', () => {
    const expected = ['mfroute6 inet6 fd00:98:0:7::/128 scope global nodad valid_lft forever preferred_lft forever'];
    assert.deepEqual(result.address, expected);
    assert.deepEqual(result.addressAgain, expected);
  });
  await t.test('the IPv6 cluster network is routed into the TUN once, however often it is routed', () => {
    assert.deepEqual(result.routes, ['fd00:98::/48 dev mfroute6 metric 1024 pref medium']);
    assert.deepEqual(result.seenThrough, ['fd00:98::/48'], "/status's reading leaves out the device's own address, link-local and multicast");
  });
  await t.test('the node\'s own pods stay on the bridge (the longer prefix), other nodes\' pods go into the TUN, and the TUN\'s address is local', () => {
    assert.deepEqual(result.via, { ownPod: 'mfbridge6', otherNodesPod: 'mfroute6', tunAddress: 'lo' });
  });
  await t.test('closing the TUN takes its IPv6 route with it', () => {
    assert.deepEqual(result.afterClose, []);
  });
  await t.test('a device that does not exist: RouteError, ENODEV, for the route and for the address', () => {
    for (const refusal of [result.missingRoute, result.missingAddress]) {
      assert.equal(refusal.isRouteError, true);
      assert.equal(refusal.code, 'ENODEV');
      assert.equal(refusal.causeCode, 'ENODEV');
    }
    assert.equal(result.missingRoute.message, "ENODEV: routing fd00:98::/48 into 'mfnone': no interface 'mfnone' (No such device)");
    assert.equal(result.missingAddress.message, "ENODEV: adding fd00:98:0:7::/128 to 'mfnone': no interface 'mfnone' (No such device)");
  });
});

test('without CAP_NET_ADMIN the route error says so and nothing is routed', async () => {
  const ns = await testNamespace();
  const result = await runProbe(ns, 'noPermission', ['setpriv', '--bounding-set=-net_admin', '--inh-caps=-net_admin']);
  assert.equal(result.route.code, 'EPERM');
  assert.equal(result.route.message, "EPERM: routing 10.98.0.0/16 into 'lo' requires CAP_NET_ADMIN (Operation not permitted)");
  assert.deepEqual(result.routes, []);
});
