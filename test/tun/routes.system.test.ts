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

test('without CAP_NET_ADMIN the route error says so and nothing is routed', async () => {
  const ns = await testNamespace();
  const result = await runProbe(ns, 'noPermission', ['setpriv', '--bounding-set=-net_admin', '--inh-caps=-net_admin']);
  assert.equal(result.route.code, 'EPERM');
  assert.equal(result.route.message, "EPERM: routing 10.98.0.0/16 into 'lo' requires CAP_NET_ADMIN (Operation not permitted)");
  assert.deepEqual(result.routes, []);
});
