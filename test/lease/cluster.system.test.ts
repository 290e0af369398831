// The store on a real Redis Cluster: three masters with one replica each,
// started by the tests. Every key shares the hash tag {prefix}, so one shard
// holds the store, and the watch subscribes on that shard's master.
//
// Two failovers of that shard, with a daemon's settings sped up (every lease
// write waits for a replica, a keeper renews every few seconds):
// - a crash (SIGKILL of the master, by pid): the replica is promoted; every
//   acknowledged lease is there; the watch moves to the new master and finds
//   the same store (no reset); once the crashed node is back, as the new
//   master's replica, lease writes are acknowledged again and the keeper
//   renews;
// - a planned one (CLUSTER FAILOVER on the replica): no connection breaks,
//   and the keeper's renewals must find the new master by themselves.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Redis } from 'ioredis';
import { StoreReplicationError, StoreUnavailableError, type Lease, type LeaseKeeper, type SubnetManager, type WatchEvent } from '../../daemon/lease/index.js';
import { startRedisCluster, type RedisCluster, type RedisServer } from '../../lab/redis.js';
import { describeEvent, EventReader, openStore, pollUntil } from './helpers.js';

let cluster: RedisCluster;
const stores: SubnetManager[] = [];

before(async () => {
  cluster = await startRedisCluster({ masters: 3, replicasPerMaster: 1 });
});

after(async () => {
  for (const s of stores) await s.close();
  await cluster?.stop();
});

async function store(keyPrefix: string, overrides: Parameters<typeof openStore>[1] = {}): Promise<SubnetManager> {
  const s = await openStore(cluster.url, { keyPrefix, ...overrides });
  stores.push(s);
  return s;
}

/** The subnets of the lease events among `events`, of one type. */
function subnetsOf(events: readonly WatchEvent[], type: 'added' | 'removed'): string[] {
  return events.flatMap((e) => (e.type === type ? [e.lease.subnet] : [])).sort();
}

/** "subnet publicIP" of each lease, sorted. */
function owners(leases: readonly Lease[]): string[] {
  return leases.map((l) => `${l.subnet} ${l.publicIP}`).sort();
}

/** Runs `read` on a connection to a replica that has agreed to serve reads (READONLY), as a Cluster replica otherwise redirects them. */
async function readReplica<T>(node: RedisServer, read: (client: Redis) => Promise<T>): Promise<T> {
  const client = new Redis({ host: node.host, port: node.port, readOnly: true, lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
  try {
    await client.connect();
    return await read(client);
  } finally {
    client.disconnect();
  }
}

/** Names of the clients connected to `node` (CLIENT LIST). */
function clientNames(node: RedisServer): string[] {
  return [...node.cli('client', 'list').matchAll(/\bname=(\S*)/g)].map((m) => m[1]!);
}

/**
 * A daemon's settings, sped up: every lease write waits for one replica, and
 * the keeper renews every 1.5 to 3 s, so it renews across a failover on its
 * own. Reaping stays rare, as in production (hours apart, against a renewal
 * margin of an hour), so that between two reaps the keeper's renewals are all
 * a node sends.
 */
const failoverOptions = {
  minReplicas: 1,
  replicationTimeoutMs: 500,
  commandTimeoutMs: 2_000,
  leaseTtlMs: 60_000,
  renewMarginMs: 57_000,
  reapIntervalMs: 600_000,
} as const;

/**
 * A set-up write, tried again as a daemon would when the replica has not
 * acknowledged it within the short replicationTimeoutMs (a busy machine): the
 * write was applied, and the retry finds it. Only StoreReplicationError is retried.
 */
async function untilAcknowledged<T>(write: () => Promise<T>): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await write();
    } catch (err) {
      if (!(err instanceof StoreReplicationError) || attempt === 5) throw err;
    }
  }
}

/** A keeper of `lease`, with what it reported and a check that it kept the lease. */
function keep(s: SubnetManager, lease: Lease): { keeper: LeaseKeeper; failures: Error[]; renewedAfter(at: number): Promise<number>; check(master: RedisServer): void } {
  const keeper = s.keepLease(lease, { retryInitialDelayMs: 200, retryMaxDelayMs: 1_000 });
  const renewals: number[] = [];
  const failures: Error[] = [];
  let lost: Error | undefined;
  keeper.on('renewed', () => renewals.push(Date.now()));
  keeper.on('restored', () => renewals.push(Date.now()));
  keeper.on('renewFailed', (err) => failures.push(err));
  keeper.on('lost', (err) => (lost = err));
  return {
    keeper,
    failures,
    /** When the first renewal after `at` happened; on a timeout, the error quotes the last failures. */
    async renewedAfter(at) {
      try {
        return await pollUntil('a renewal', async () => renewals.find((when) => when > at), 10_000);
      } catch (err) {
        const since = failures.slice(-3).map((f) => `${f.name}: ${f.message}`);
        throw new Error(`no renewal within 10 s; the last of ${failures.length} failures: ${since.join(' | ')}`, { cause: err });
      }
    },
    check(master) {
      assert.equal(lost, undefined, 'the lease was never lost');
      // Every failure said "not now" (Redis unreachable, no replica yet), none "wrong".
      const wrong = failures.filter((err) => !(err instanceof StoreUnavailableError));
      assert.deepEqual(wrong.map((err) => `${err.name}: ${err.message}`), [], 'renewal failures that are not StoreUnavailableError');
      const stored = Number(master.cli('zscore', s.keys.expiry, lease.subnet));
      assert.ok(keeper.lease.expiresAt! > lease.expiresAt! && stored >= keeper.lease.expiresAt!, `renewed on ${master.port}: ${stored} >= ${keeper.lease.expiresAt} > ${lease.expiresAt}`);
    },
  };
}

describe('Redis Cluster', () => {
  it('holds the store on one shard of 3 masters with replicas: config, concurrent acquires, listing, and a watch', async () => {
    const s = await store('cluster');
    const other = await store('cluster');
    await s.setNetworkConfig({ Network: '10.52.0.0/16' });
    const master = await cluster.masterOf(s.keys.leases);
    // One hash tag: every key of the store, and the watch's subscription, on the master of one slot.
    for (const key of [s.keys.config, s.keys.events, s.keys.epoch, s.keys.allocated]) assert.equal(await cluster.keySlot(key), await cluster.keySlot(s.keys.leases));
    assert.match(master.cli('get', s.keys.config), /10\.52\.0\.0\/16/);

    const first = await s.acquireLease({ publicIP: '192.168.0.100', nodeName: 'early' });
    const reader = new EventReader(s.watchLeases());
    const snapshot = await reader.next();
    assert.ok(snapshot.type === 'snapshot' && snapshot.cause === 'start');
    assert.deepEqual(snapshot.leases.map((l) => l.subnet), [first.lease.subnet]);
    assert.ok(clientNames(master).includes('miniflannel:watch'), 'the watch subscribes on the master of the store\'s slot');

    // Two stores (two connections, as two nodes would be) racing for subnets.
    const got = await Promise.all([1, 2, 3, 4, 5, 6].map((i) => (i % 2 === 0 ? s : other).acquireLease({ publicIP: `192.168.0.${i}`, nodeName: `n${i}` })));
    assert.equal(new Set([first, ...got].map((g) => g.lease.subnet)).size, 7, 'distinct subnets');
    assert.ok(got.every((g) => g.source === 'new'));
    const pushed = await reader.until(() => subnetsOf(reader.seen, 'added').length === 6);
    assert.deepEqual(subnetsOf(pushed, 'added'), got.map((g) => g.lease.subnet).sort());

    const listing = await other.listLeases();
    assert.deepEqual(owners(listing.leases), owners([first, ...got].map((g) => g.lease)));
    assert.equal(Number(master.cli('hlen', s.keys.leases)), 7, 'the leases are on the master the harness found');

    assert.ok(await other.revokeLease(got[0]!.lease.subnet));
    const removed = await reader.until((e) => e.type === 'removed');
    assert.deepEqual(subnetsOf(removed, 'removed'), [got[0]!.lease.subnet]);
    // CLIENT TRACKING is per node: a config write is reported because the watch sits on the slot's master.
    await other.setNetworkConfig({ Network: '10.52.0.0/16', SubnetLen: 25 }, { force: true });
    assert.equal((await reader.until((e) => e.type === 'config')).at(-1)?.type, 'config');
    assert.equal(reader.watch.stats.reconnects, 0);
    await reader.watch.close();
  });

  it('survives a crash of the master that holds the store: acknowledged leases, the keeper and the watch carry on', async (t) => {
    const s = await store('crash', failoverOptions);
    await untilAcknowledged(() => s.setNetworkConfig({ Network: '10.70.0.0/16' }));
    const acquired = await Promise.all([1, 2, 3, 4].map((i) => untilAcknowledged(() => s.acquireLease({ publicIP: `198.18.0.${i}`, nodeName: `n${i}` }))));
    const leases: Lease[] = acquired.map((a) => a.lease);
    const reader = new EventReader(s.watchLeases());
    const snapshot = await reader.next();
    assert.ok(snapshot.type === 'snapshot');
    assert.deepEqual(owners(snapshot.leases), owners(leases));
    const keeping = keep(s, leases[0]!);
    await keeping.renewedAfter(0);

    const master = await cluster.masterOf(s.keys.leases);
    const [replica, ...more] = await cluster.replicasOf(master);
    assert.ok(replica !== undefined && more.length === 0, 'one replica');
    // WAIT made every acknowledged write reach the replica before the call returned.
    assert.deepEqual(Object.keys(await readReplica(replica, (c) => c.hgetall(s.keys.leases))).sort(), leases.map((l) => l.subnet).sort());

    const killedAt = Date.now();
    await cluster.kill(master);
    const promoted = await cluster.waitForFailover(master, s.keys.leases);
    const promotedAt = Date.now();
    assert.equal(promoted, replica, 'the replica of the crashed master took over its slots');

    // Every acknowledged lease survived, with its subnet and owner.
    const listed = await pollUntil('a listing from the new master', () => s.listLeases().catch(() => undefined), 10_000);
    assert.deepEqual(owners(listed.leases), owners(leases));

    // The watch follows the slot to the new master.
    await pollUntil('the watch to reconnect', async () => reader.watch.stats.reconnects >= 1 && reader.watch.connected, 15_000);
    const reconnectedAt = Date.now();
    assert.ok(clientNames(promoted).includes('miniflannel:watch'), 'the watch subscribes on the promoted master');

    // The new master has no replica yet: a lease write is applied but not acknowledged (docs/redis.md,
    // "Replication"). The watch reports it all the same: it is a change to the store it watches.
    await assert.rejects(s.acquireLease({ publicIP: '198.18.0.50', nodeName: 'early' }), StoreReplicationError);
    const firstChange = (await reader.until((e) => e.type === 'added')).at(-1);
    const firstChangeAt = Date.now();
    assert.ok(firstChange?.type === 'added');

    // The crashed node comes back (as Kubernetes would restart its pod), as the new master's replica,
    // and lease writes are acknowledged again.
    const restartedAt = Date.now();
    await master.restart();
    await cluster.waitUntilHealthy();
    assert.deepEqual(await cluster.replicasOf(promoted), [master]);
    const rejoinedAt = Date.now();
    // A rejoined replica may still be catching up on a busy machine: retried as a daemon retries it.
    const early = await untilAcknowledged(() => s.acquireLease({ publicIP: '198.18.0.50', nodeName: 'early' }));
    assert.equal(early.source, 'existing', 'the unacknowledged write had taken effect on the new master');
    assert.equal(firstChange.lease.subnet, early.lease.subnet);

    // Changes made after the failover reach the watch: an acquire and a revoke.
    const acquireSentAt = Date.now();
    const fresh = await s.acquireLease({ publicIP: '198.18.0.5', nodeName: 'n5' });
    assert.equal(fresh.source, 'new');
    assert.ok(!owners(leases).some((o) => o.startsWith(`${fresh.lease.subnet} `)), 'a subnet of its own');
    await reader.until((e) => e.type === 'added' && e.lease.subnet === fresh.lease.subnet);
    const freshDeliveredAt = Date.now();
    assert.ok(await s.revokeLease(leases[3]!.subnet));
    await reader.until((e) => e.type === 'removed' && e.lease.subnet === leases[3]!.subnet);

    // Same store, same epoch: no reset, and nothing the watch saw was lost, so no listing either.
    assert.ok(!reader.seen.some((e) => e.type === 'reset'), `no reset: ${reader.seen.map(describeEvent).join(', ')}`);
    assert.deepEqual({ resets: reader.watch.stats.resets, resyncs: reader.watch.stats.resyncs }, { resets: 0, resyncs: 0 });

    // The keeper renews on the new master, and never lost its lease.
    await keeping.renewedAfter(rejoinedAt);
    keeping.check(promoted);

    keeping.keeper.stop();
    await reader.watch.close();
    t.diagnostic(`failover: ${promotedAt - killedAt} ms from the SIGKILL to the replica serving the slot with cluster_state:ok everywhere`);
    t.diagnostic(`watch: reconnected to the new master ${reconnectedAt - killedAt} ms after the SIGKILL`);
    t.diagnostic(`watch: first change after the failover delivered ${firstChangeAt - killedAt} ms after the SIGKILL`);
    t.diagnostic(`rejoin: ${rejoinedAt - restartedAt} ms for the crashed node to come back as a synced replica`);
    t.diagnostic(`acquire after the rejoin: acknowledged and delivered by the watch in ${freshDeliveredAt - acquireSentAt} ms`);
    t.diagnostic(`keeper: ${keeping.failures.length} failed renewals (${[...new Set(keeping.failures.map((e) => e.name))].join(', ') || 'none'})`);
  });

  it('follows a planned failover (CLUSTER FAILOVER) of the store\'s shard: renewals go on, on the new master', async (t) => {
    const s = await store('planned', failoverOptions);
    await untilAcknowledged(() => s.setNetworkConfig({ Network: '10.71.0.0/16' }));
    const { lease } = await untilAcknowledged(() => s.acquireLease({ publicIP: '198.18.1.1', nodeName: 'p1' }));
    const reader = new EventReader(s.watchLeases());
    assert.equal((await reader.next()).type, 'snapshot');
    const keeping = keep(s, lease);
    await keeping.renewedAfter(0);

    const master = await cluster.masterOf(s.keys.leases);
    const [replica] = await cluster.replicasOf(master);
    assert.ok(replica !== undefined);
    const startedAt = Date.now();
    assert.equal(replica.cli('cluster', 'failover').trim(), 'OK');
    assert.equal(await cluster.waitForFailover(master, s.keys.leases), replica);
    await cluster.waitUntilHealthy();
    const doneAt = Date.now();
    assert.deepEqual(await cluster.replicasOf(replica), [master], 'the old master now replicates the new one');

    // Nothing but the keeper talks to Redis here, as in a daemon between two reaps.
    const renewedAt = await keeping.renewedAfter(doneAt);
    keeping.check(replica);

    // The watch's connection to the old master stayed open; that node is a replica now, where
    // PUBLISH (cluster-wide) and the tracking of the replicated writes still reach it.
    assert.equal(reader.watch.stats.reconnects, 0);
    const other = await s.acquireLease({ publicIP: '198.18.1.2', nodeName: 'p2' });
    await reader.until((e) => e.type === 'added' && e.lease.subnet === other.lease.subnet);
    await s.setNetworkConfig({ Network: '10.71.0.0/16', SubnetLen: 25 }, { force: true });
    await reader.until((e) => e.type === 'config');
    assert.deepEqual({ resets: reader.watch.stats.resets, resyncs: reader.watch.stats.resyncs }, { resets: 0, resyncs: 0 });

    keeping.keeper.stop();
    await reader.watch.close();
    t.diagnostic(`failover: ${doneAt - startedAt} ms; first renewal on the new master ${renewedAt - doneAt} ms after it`);
    t.diagnostic(`keeper: ${keeping.failures.length} failed renewals (${[...new Set(keeping.failures.map((e) => e.name))].join(', ') || 'none'})`);
  });
});
