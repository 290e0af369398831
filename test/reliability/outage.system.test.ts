// Redis gone for 30 s under a running three-node cluster (long enough for
// the watch's reconnection backoff to reach its 10 s cap, and for three
// renewals to fall due). Leases live 120 s
// and are renewed 110 s before they expire, so each daemon has a renewal due
// every 10 s, all through the outage. Redis keeps its data (appendonly) and
// comes back on the same address, as a restarted pod would.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { SANDBOX_REDIS_URL } from '../../lab/cluster.js';
import { waitFor } from '../../lab/daemon.js';
import { daemonLog, describePing, twoFreeSubnets, pingFor, repliesBetween, sleep, statusLease, TestCluster, type PingRecord } from './harness.js';

const OUTAGE_MS = 30_000;
/** A subnet held by a node that is not running: its lease is revoked right after Redis returns. */
const LEAVING = { subnet: '', ip: '198.18.0.98' };
/** A subnet reserved right after Redis returns, as a node joining would add one. */
const JOINING = { subnet: '', ip: '198.18.0.99' };

let cluster: TestCluster;

before(async () => {
  cluster = await TestCluster.create(3, SANDBOX_REDIS_URL, ['--lease-ttl', '120s', '--lease-renew-margin', '110s']);
  await cluster.sandbox.startRedis({ persistence: true });
  await cluster.join();
  [LEAVING.subnet, JOINING.subnet] = await twoFreeSubnets(cluster);
  await cluster.cli(['lease', 'reserve', LEAVING.subnet, '--public-ip', LEAVING.ip]);
  for (let i = 1; i <= 3; i++) await waitFor(`node ${i} to list 3 peers`, async () => (await cluster.daemon(i).status()).peers.length === 3);
});

after(async () => {
  await cluster?.destroy();
});

const peerSubnets = async (i: number): Promise<string[]> => (await cluster.daemon(i).status()).peers.map((p) => p.subnet);

test('Redis down for 30 s: pods keep talking, renewals and watch events catch up, no lease is lost', async (t) => {
  const before = new Map<number, { subnet: string; expiresAt: number }>();
  for (let i = 1; i <= 3; i++) before.set(i, await statusLease(cluster.daemon(i)));
  const seconds = Math.ceil(OUTAGE_MS / 1000) + 8;
  const pings: Array<Promise<PingRecord>> = [
    pingFor(cluster, cluster.pod(1), cluster.pod(2), seconds),
    pingFor(cluster, cluster.pod(2), cluster.pod(3), seconds),
    pingFor(cluster, cluster.pod(3), cluster.pod(1), seconds),
  ];
  await sleep(2_000);

  await cluster.sandbox.stopRedis();
  const downAt = Date.now();
  await sleep(OUTAGE_MS / 2);
  for (let i = 1; i <= 3; i++) {
    const status = await cluster.daemon(i).status();
    assert.equal(status.store!.connected, false, `node ${i} sees Redis down`);
    assert.equal(status.peers.length, 3, `node ${i} forwards with its cached peers`);
  }
  await sleep(downAt + OUTAGE_MS - Date.now());
  await cluster.sandbox.startRedis({ persistence: true });
  const upAt = Date.now();
  t.diagnostic(`Redis was down for ${upAt - downAt} ms`);

  // Changes made the moment Redis is back reach every daemon.
  await cluster.cli(['lease', 'revoke', LEAVING.subnet, '--yes']);
  await cluster.cli(['lease', 'reserve', JOINING.subnet, '--public-ip', JOINING.ip]);
  for (let i = 1; i <= 3; i++) {
    await waitFor(`node ${i} to see the revocation and the new lease`, async () => {
      const subnets = await peerSubnets(i);
      return subnets.includes(JOINING.subnet) && !subnets.includes(LEAVING.subnet);
    }, 60_000);
    t.diagnostic(`node ${i} caught up with the watch ${Date.now() - upAt} ms after Redis returned`);
  }

  // Renewals were due during the outage; each daemon renews once Redis is back.
  for (let i = 1; i <= 3; i++) {
    const failed = (await daemonLog(cluster.daemon(i))).filter((l) => l.msg === 'lease renewal failed; retrying' && l.time > downAt && l.time < upAt);
    assert.ok(failed.length > 0, `node ${i} tried to renew during the outage`);
    await waitFor(`node ${i} to renew`, async () => (await statusLease(cluster.daemon(i))).expiresAt > before.get(i)!.expiresAt + OUTAGE_MS, 60_000);
    t.diagnostic(`node ${i} renewed ${Date.now() - upAt} ms after Redis returned`);
  }

  for (const ping of await Promise.all(pings)) {
    t.diagnostic(describePing(ping));
    // Every 200 ms during the outage: most of those replies must be there.
    const duringOutage = repliesBetween(ping, downAt, upAt);
    assert.ok(duringOutage >= ((upAt - downAt) / 200) * 0.8, `only ${duringOutage} replies while Redis was down: ${describePing(ping)}`);
    assert.ok(ping.replies.length >= ping.transmitted * 0.8, describePing(ping));
  }

  const listed = JSON.parse(await cluster.cli(['lease', 'list', '--json'])).leases as Array<{ subnet: string; publicIP: string }>;
  for (let i = 1; i <= 3; i++) {
    assert.equal(cluster.daemon(i).process.exitCode, null, `node ${i} still running`);
    assert.equal((await statusLease(cluster.daemon(i))).subnet, before.get(i)!.subnet, `node ${i} kept its subnet`);
    assert.ok(listed.some((l) => l.subnet === before.get(i)!.subnet && l.publicIP === cluster.node(i).underlayIp), `node ${i}'s lease is listed`);
  }
  assert.deepEqual(listed.map((l) => l.subnet).filter((s) => s === LEAVING.subnet || s === JOINING.subnet), [JOINING.subnet]);
});
