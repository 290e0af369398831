// Redis gone silent: no FIN, no RST, just no packets, as when its host
// powers off or a network partition falls between a node and Redis. An idle
// watch sends nothing, so only TCP keepalive can notice; the daemon must drop
// the dead subscription within about 40 s, say so, keep forwarding, and catch
// up on what changed once Redis can be reached again. The silence is made
// with iptables DROP rules inside node 1's namespace only.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { SANDBOX_REDIS_URL, UNDERLAY_GATEWAY } from '../../lab/cluster.js';
import { waitFor } from '../../lab/daemon.js';
import { daemonLog, twoFreeSubnets, TestCluster, waitForPeers } from './harness.js';

let cluster: TestCluster;
const DROP = [
  ['INPUT', '-s', UNDERLAY_GATEWAY, '-p', 'tcp', '--sport', '6379', '-j', 'DROP'],
  ['OUTPUT', '-d', UNDERLAY_GATEWAY, '-p', 'tcp', '--dport', '6379', '-j', 'DROP'],
];
const iptables = (action: '-I' | '-D', rule: string[]) => cluster.node(1).ns.exec(['iptables', '-w', '5', action, ...rule]);

before(async () => {
  cluster = await TestCluster.create(2, SANDBOX_REDIS_URL);
  await cluster.sandbox.startRedis({ persistence: true });
  await cluster.join();
  for (let i = 1; i <= 2; i++) await waitForPeers(cluster, i, 1);
});

after(async () => {
  await cluster?.destroy();
});

test('a Redis that goes silent is noticed by TCP keepalive within a minute; pods keep talking, and the watch catches up after', async (t) => {
  const silentAt = Date.now();
  for (const rule of DROP) await iptables('-I', rule);
  let lostAt: number;
  try {
    lostAt = await waitFor('node 1 to notice the silent store', async () => ((await cluster.daemon(1).status()).store!.connected === false ? Date.now() : undefined), 70_000);
    t.diagnostic(`node 1 noticed the silence ${lostAt - silentAt} ms after it began`);
    const said = (await daemonLog(cluster.daemon(1))).find((l) => l.msg === 'lease watch lost Redis; retrying' && l.time >= silentAt);
    assert.ok(said, 'the log says the watch lost Redis');
    assert.equal((await cluster.daemon(2).status()).store!.connected, true, 'node 2 still reaches Redis');
    // Forwarding does not depend on Redis.
    await cluster.pod(1).ns.exec(['ping', '-c', '3', '-i', '0.2', '-W', '2', cluster.pod(2).ip]);

    // A change node 1 cannot see yet.
    const [joining] = await twoFreeSubnets(cluster);
    await cluster.cli(['lease', 'reserve', joining, '--public-ip', '198.18.0.99']);
    await waitForPeers(cluster, 2, 2);
    assert.equal((await cluster.daemon(1).status()).peers.length, 1);
  } finally {
    for (const rule of DROP) await iptables('-D', rule);
  }
  const backAt = Date.now();
  await waitForPeers(cluster, 1, 2, 60_000);
  t.diagnostic(`node 1 caught up ${Date.now() - backAt} ms after Redis could be reached again`);
  const status = await cluster.daemon(1).status();
  assert.equal(status.store!.connected, true);
  assert.equal(status.store!.resyncs, 0, 'caught up from the stream, without a listing');
  assert.equal(cluster.daemon(1).process.exitCode, null);
  assert.ok(lostAt - silentAt < 60_000);
});
