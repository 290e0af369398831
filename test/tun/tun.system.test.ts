// The native TUN binding, on real devices inside a test namespace.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { testNamespace } from '../harness/namespaces.js';
import { compiledTest } from '../harness/paths.js';
import type { Netns } from '../../lab/netns.js';
import { DEFAULT_TX_QUEUE_LENGTH } from '../../daemon/tun/index.js';

const probe = compiledTest('tun/probe.js');

async function runProbe(ns: Netns, mode: string, prefix: string[] = [], variant = 'offload'): Promise<any> {
  const out = await ns.exec([...prefix, process.execPath, probe, mode, variant]);
  return JSON.parse(out.trim().split('\n').pop()!);
}

test('opening and closing 200 devices leaks no fd and leaves no interface', async () => {
  const ns = await testNamespace();
  const result = await runProbe(ns, 'leak');
  assert.equal(result.after, result.before, `fds before ${result.before}, after ${result.after}`);
  assert.equal(result.linkRemains, false);
});

for (const variant of ['plain', 'offload']) {
  test(`${variant}: packets the kernel routes into the device arrive in batches, intact and in order`, async () => {
    const ns = await testNamespace();
    const { payloads, batchSizes, capacity } = await runProbe(ns, 'read', [], variant);
    assert.deepEqual(payloads, Array.from({ length: 200 }, (_, i) => `packet-${i}`));
    assert.ok(batchSizes.length < 200, `expected fewer callbacks than packets, got ${batchSizes.length}`);
    assert.ok(Math.max(...batchSizes) > 1, `expected a batch of more than one packet: ${batchSizes}`);
    assert.ok(Math.max(...batchSizes) <= capacity, 'never more than the batch capacity');
  });

  test(`${variant}: packets written in one batch are delivered by the kernel; a zero-length slot among them is not counted as written`, async () => {
    const ns = await testNamespace();
    const { written, received } = await runProbe(ns, 'write', [], variant);
    assert.equal(written, 10);
    assert.deepEqual([...received].sort(), Array.from({ length: 10 }, (_, i) => `written-${i}`).sort());
  });
}

test('the device gets the MTU and the transmit queue length asked for, 2000 packets by default', async () => {
  const ns = await testNamespace();
  const result = await runProbe(ns, 'setup');
  assert.deepEqual(result.byDefault, { mtu: 1400, txQueueLength: DEFAULT_TX_QUEUE_LENGTH });
  assert.equal(DEFAULT_TX_QUEUE_LENGTH, 2000);
  assert.deepEqual(result.chosen, { mtu: 1300, txQueueLength: 7000 });
});

test('failures are errors with a code and a cause a person can act on', async () => {
  const ns = await testNamespace();
  const result = await runProbe(ns, 'errors');
  assert.equal(result.longName.code, 'EINVAL');
  assert.match(result.longName.message, /longer than 15 bytes/);
  assert.equal(result.busy.code, 'EBUSY');
  assert.match(result.busy.message, /mfbusy/);
  assert.equal(result.badAddress.code, 'EINVAL');
  assert.match(result.badAddress.message, /10\.99\.0\.300/);
  assert.equal(result.writeAfterClose.code, 'EBADF');
});

test('without CAP_NET_ADMIN the error says so', async () => {
  const ns = await testNamespace();
  const result = await runProbe(ns, 'noPermission', ['setpriv', '--bounding-set=-net_admin', '--inh-caps=-net_admin']);
  assert.equal(result.code, 'EPERM');
  assert.match(result.message, /^EPERM: creating TUN device 'mfperm' requires CAP_NET_ADMIN/);
});

test('deleting the interface under a reader reports one error and stops reading', async () => {
  const ns = await testNamespace();
  const { errors } = await runProbe(ns, 'deleted');
  assert.equal(errors.length, 1);
  assert.match(errors[0], /reading mfgone stopped/);
});
