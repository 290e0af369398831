// Redis Sentinel failover under a running cluster: one primary, one replica
// and three sentinels (Debian's redis-sentinel) in the underlay namespace,
// the real miniflanneld on three nodes with a redis+sentinel:// URL (and so
// WAIT for one replica on every lease write). The primary is killed by its
// pid while pods ping each other across nodes.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { UNDERLAY_GATEWAY } from '../../lab/cluster.js';
import { waitFor } from '../../lab/daemon.js';
import { redisServerArgs } from '../../lab/redis.js';
import { daemonLog, describePing, lineFrom, pingFor, redisCli, repliesBetween, statusLease, TestCluster, type PingRecord } from './harness.js';

const HOST = UNDERLAY_GATEWAY;
const PRIMARY_PORT = 6390;
const REPLICA_PORT = 6391;
const SENTINEL_PORTS = [26390, 26391, 26392];
const MASTER = 'mymaster';
const URL = `redis+sentinel://${SENTINEL_PORTS.map((p) => `${HOST}:${p}`).join(',')}/${MASTER}`;
const KEYS = { leases: '{miniflannel}:leases', expiry: '{miniflannel}:expiry' };

let cluster: TestCluster;
let primary: ChildProcess;

/** A redis-server data node in the underlay namespace, its files in the sandbox's workspace. */
async function startDataNode(port: number, replicaOf?: number): Promise<ChildProcess> {
  const dir = path.join(cluster.sandbox.options.workDir, `redis-${port}`);
  await mkdir(dir, { recursive: true });
  const replication = replicaOf === undefined ? [] : ['--replicaof', HOST, String(replicaOf)];
  const child = cluster.spawn(cluster.sandbox.underlay, ['redis-server', ...redisServerArgs({ host: HOST, port, dir, args: replication })]);
  await lineFrom(child, 'Ready to accept connections', `redis-server on ${port}`);
  return child;
}

async function startSentinel(port: number): Promise<void> {
  const dir = path.join(cluster.sandbox.options.workDir, `sentinel-${port}`);
  await mkdir(dir, { recursive: true });
  // Sentinel rewrites its config file as it learns the topology, so each gets its own.
  const conf = path.join(dir, 'sentinel.conf');
  await writeFile(conf, [
    `port ${port}`,
    `bind ${HOST}`,
    'protected-mode no',
    `dir ${dir}`,
    `sentinel monitor ${MASTER} ${HOST} ${PRIMARY_PORT} 2`,
    `sentinel down-after-milliseconds ${MASTER} 1000`,
    `sentinel failover-timeout ${MASTER} 5000`,
    `sentinel parallel-syncs ${MASTER} 1`,
    '',
  ].join('\n'));
  const child = cluster.spawn(cluster.sandbox.underlay, ['redis-sentinel', conf]);
  await lineFrom(child, 'Sentinel ID is', `redis-sentinel on ${port}`);
}

/** `SENTINEL MASTER` as a map. */
async function sentinelView(port: number): Promise<Map<string, string>> {
  const lines = (await redisCli(cluster.sandbox.underlay, HOST, port, 'sentinel', 'master', MASTER)).trim().split('\n');
  const view = new Map<string, string>();
  for (let i = 0; i + 1 < lines.length; i += 2) view.set(lines[i]!, lines[i + 1]!);
  return view;
}

before(async () => {
  assert.ok(existsSync('/usr/bin/redis-sentinel'), 'redis-sentinel is missing: apt-get install redis-sentinel (.ci/run and dev.sh do)');
  cluster = await TestCluster.create(3, URL, ['--lease-ttl', '30s', '--lease-renew-margin', '25s']);
  primary = await startDataNode(PRIMARY_PORT);
  await startDataNode(REPLICA_PORT, PRIMARY_PORT);
  await waitFor('the replica to sync', async () => /master_link_status:up/.test(await redisCli(cluster.sandbox.underlay, HOST, REPLICA_PORT, 'info', 'replication')));
  for (const port of SENTINEL_PORTS) await startSentinel(port);
  // Failover needs every sentinel to know the replica and a quorum of the others.
  for (const port of SENTINEL_PORTS) {
    await waitFor(`sentinel ${port} to see the replica and the other sentinels`, async () => {
      const view = await sentinelView(port);
      return view.get('num-slaves') === '1' && view.get('num-other-sentinels') === '2';
    }, 30_000);
  }
  await cluster.join();
});

after(async () => {
  await cluster?.destroy();
});

test('every lease write waited for the replica: all three leases are on it', async () => {
  for (let i = 1; i <= 3; i++) {
    const lease = await statusLease(cluster.daemon(i));
    const onReplica = await redisCli(cluster.sandbox.underlay, HOST, REPLICA_PORT, 'hget', KEYS.leases, lease.subnet);
    assert.match(onReplica, new RegExp(`"PublicIP":"${cluster.node(i).underlayIp.replace(/\./g, '\\.')}"`));
  }
});

test('killing the primary: pods keep talking, daemons reconnect to the promoted replica and renew, no lease is lost', async (t) => {
  const leasesBefore = new Map<number, { subnet: string; expiresAt: number }>();
  for (let i = 1; i <= 3; i++) leasesBefore.set(i, await statusLease(cluster.daemon(i)));
  const listedBefore = JSON.parse(await cluster.cli(['lease', 'list', '--json'])).leases.map((l: { subnet: string; publicIP: string }) => `${l.subnet}=${l.publicIP}`).sort();
  assert.equal(listedBefore.length, 3);

  const pings: Array<Promise<PingRecord>> = [
    pingFor(cluster, cluster.pod(1), cluster.pod(2), 12),
    pingFor(cluster, cluster.pod(2), cluster.pod(3), 12),
    pingFor(cluster, cluster.pod(3), cluster.pod(1), 12),
  ];
  await new Promise((resolve) => setTimeout(resolve, 2_000));

  const killedAt = Date.now();
  primary.kill('SIGKILL');
  await waitFor('a sentinel to promote the replica', async () =>
    (await redisCli(cluster.sandbox.underlay, HOST, SENTINEL_PORTS[0]!, 'sentinel', 'get-master-addr-by-name', MASTER)).includes(String(REPLICA_PORT)), 60_000);
  const promotedAt = Date.now();
  t.diagnostic(`failover: replica promoted ${promotedAt - killedAt} ms after the primary was killed`);

  // Reconnected: the daemon's log says its watch is back and caught up, after the kill.
  const reconnectedAt = new Map<number, number>();
  for (let i = 1; i <= 3; i++) {
    const at = await waitFor(`node ${i} to reconnect`, async () =>
      (await daemonLog(cluster.daemon(i))).find((l) => l.msg === 'lease watch reconnected and caught up' && l.time > killedAt)?.time, 60_000);
    reconnectedAt.set(i, at);
    t.diagnostic(`reconnect time node ${i}: ${at - killedAt} ms after the kill`);
  }

  // Renewed on the new primary: its expiry moved past the one held before the kill.
  for (let i = 1; i <= 3; i++) {
    const before = leasesBefore.get(i)!;
    await waitFor(`node ${i}'s lease to be renewed on the new primary`, async () =>
      Number(await redisCli(cluster.sandbox.underlay, HOST, REPLICA_PORT, 'zscore', KEYS.expiry, before.subnet)) > before.expiresAt, 30_000);
  }

  const records = await Promise.all(pings);
  const lastReconnect = Math.max(...reconnectedAt.values());
  for (const ping of records) {
    t.diagnostic(`during failover ${describePing(ping)}`);
    assert.ok(ping.replies.length >= ping.transmitted * 0.9, describePing(ping));
    // Forwarding never waited for Redis: replies kept coming while no primary was reachable.
    assert.ok(repliesBetween(ping, killedAt + 200, Math.max(promotedAt, killedAt + 1_500)) > 0, `no reply while Redis had no primary: ${describePing(ping)}`);
  }
  t.diagnostic(`every daemon reconnected within ${lastReconnect - killedAt} ms of the kill`);

  for (let i = 1; i <= 3; i++) {
    assert.equal(cluster.daemon(i).process.exitCode, null, `node ${i} still running`);
    assert.equal((await statusLease(cluster.daemon(i))).subnet, leasesBefore.get(i)!.subnet, `node ${i} kept its subnet`);
    assert.equal((await cluster.daemon(i).status()).store!.connected, true);
  }
  const listedAfter = JSON.parse(await cluster.cli(['lease', 'list', '--json'])).leases.map((l: { subnet: string; publicIP: string }) => `${l.subnet}=${l.publicIP}`).sort();
  assert.deepEqual(listedAfter, listedBefore, 'no lease lost');
});

test('with a replica again, renewals are acknowledged: each daemon reports a new expiry', async (t) => {
  // Until a replica is back, renewals reach the new primary but no replica acknowledges them,
  // so the daemons keep retrying them. The old primary comes back as the new one's replica.
  const expiries = new Map<number, number>();
  for (let i = 1; i <= 3; i++) expiries.set(i, (await statusLease(cluster.daemon(i))).expiresAt);
  const log = await daemonLog(cluster.daemon(1));
  assert.ok(log.some((l) => l.msg === 'lease renewal failed; retrying' && /replicas acknowledged/.test(String(l['err']))), 'unreplicated renewals were reported');
  primary = await startDataNode(PRIMARY_PORT, REPLICA_PORT);
  const rejoinedAt = Date.now();
  for (let i = 1; i <= 3; i++) {
    await waitFor(`node ${i} to report an acknowledged renewal`, async () => (await statusLease(cluster.daemon(i))).expiresAt > expiries.get(i)!, 60_000);
  }
  t.diagnostic(`acknowledged renewals resumed ${Date.now() - rejoinedAt} ms after a replica rejoined`);
});
