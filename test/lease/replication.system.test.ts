// Lease writes wait for replication: with minReplicas, every acquire, renew,
// reserve and revoke is followed by WAIT on the same connection, so a write
// the store reports as done is already on a replica (and survives a
// failover). A real master and replica; the replica is paused with SIGSTOP
// (by its pid) to show that the store really waits for it.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { LeaseLostError, minReplicasFor, OptionsError, parseRedisUrl, StoreReplicationError, StoreUnavailableError, type SubnetManager } from '../../daemon/lease/index.js';
import { startRedis, type RedisServer } from '../../lab/redis.js';
import { openStore, pollUntil, uniquePrefix } from './helpers.js';

let master: RedisServer;
let replica: RedisServer;
const stores: SubnetManager[] = [];
/** The network's first subnet: reservable, but below SubnetMin, so no acquisition can have taken it (acquisitions start at a random free subnet). */
const BELOW_SUBNET_MIN = '10.60.0.0/24';

before(async () => {
  master = await startRedis();
  replica = await startRedis({ args: ['--replicaof', master.host, String(master.port)] });
  await pollUntil('the replica to sync', async () => /master_link_status:up/.test(replica.cli('info', 'replication')), 15_000, 50);
});

after(async () => {
  if (replica?.pid !== undefined) process.kill(replica.pid, 'SIGCONT');
  for (const s of stores) await s.close();
  await replica?.stop();
  await master?.stop();
});

async function store(minReplicas: number): Promise<SubnetManager> {
  const s = await openStore(master.url, { keyPrefix: uniquePrefix('wait'), minReplicas, replicationTimeoutMs: 500, commandTimeoutMs: 3_000 });
  stores.push(s);
  await s.setNetworkConfig({ Network: '10.60.0.0/16' });
  return s;
}

/** WAIT commands the master has served, from INFO commandstats. */
function waitCalls(): number {
  return Number(/^cmdstat_wait:calls=(\d+)/m.exec(master.cli('info', 'commandstats'))?.[1] ?? 0);
}

/** Pauses the replica (SIGSTOP by pid) while `work` runs, so nothing it is sent gets acknowledged. */
async function withReplicaPaused<T>(work: () => Promise<T>): Promise<T> {
  process.kill(replica.pid!, 'SIGSTOP');
  try {
    return await work();
  } finally {
    process.kill(replica.pid!, 'SIGCONT');
  }
}

describe('replication (WAIT)', () => {
  it('derives one replica for Sentinel URLs and none otherwise', () => {
    assert.equal(minReplicasFor(parseRedisUrl('redis+sentinel://s1,s2/mymaster')), 1);
    assert.equal(minReplicasFor(parseRedisUrl('redis://127.0.0.1')), 0);
    assert.equal(minReplicasFor(parseRedisUrl('redis+cluster://a,b')), 0);
  });

  it('refuses a replication timeout that the command timeout would cut short', async () => {
    await assert.rejects(openStore(master.url, { minReplicas: 1, replicationTimeoutMs: 5_000, commandTimeoutMs: 5_000 }), (err: unknown) => {
      assert.ok(err instanceof OptionsError);
      assert.equal(err.option, 'replicationTimeoutMs');
      return true;
    });
  });

  it('an acknowledged lease, renewal and reservation are on the replica the moment the call returns', async () => {
    const s = await store(1);
    const before = waitCalls();
    const { lease } = await s.acquireLease({ publicIP: '198.18.1.1', nodeName: 'a' });
    // A first run of a script may count twice: NOSCRIPT, then the source with another WAIT.
    let waits = waitCalls();
    assert.ok(waits > before, 'WAIT after acquiring');
    const waited = (what: string): void => {
      const now = waitCalls();
      assert.ok(now > waits, `WAIT after ${what}`);
      waits = now;
    };
    // Read from the replica right away: no polling, WAIT already made sure.
    assert.match(replica.cli('hget', s.keys.leases, lease.subnet), /"PublicIP":"198\.18\.1\.1"/);
    assert.equal(Number(replica.cli('zscore', s.keys.expiry, lease.subnet)), lease.expiresAt);
    const renewed = await s.renewLease(lease);
    waited('renewing');
    assert.equal(Number(replica.cli('zscore', s.keys.expiry, lease.subnet)), renewed.expiresAt);
    const { lease: reserved } = await s.reserve(BELOW_SUBNET_MIN, '198.18.1.2');
    waited('reserving');
    assert.match(replica.cli('hget', s.keys.leases, reserved.subnet), /198\.18\.1\.2/);
    assert.ok(await s.revokeLease(reserved.subnet));
    waited('revoking');
    assert.equal(replica.cli('hexists', s.keys.leases, reserved.subnet).trim(), '0');
  });

  it('a write no replica acknowledges fails with StoreReplicationError (applied on the master, to be retried)', async () => {
    const s = await store(1);
    const { lease } = await s.acquireLease({ publicIP: '198.18.1.3', nodeName: 'c' });
    await withReplicaPaused(async () => {
      for (const write of [() => s.renewLease(lease), () => s.acquireLease({ publicIP: '198.18.1.4', nodeName: 'd' }), () => s.reserve(BELOW_SUBNET_MIN, '198.18.1.5')]) {
        await assert.rejects(write(), (err: unknown) => {
          assert.ok(err instanceof StoreReplicationError, String(err));
          assert.ok(err instanceof StoreUnavailableError, 'a kind of "try again later"');
          assert.equal(err.acknowledged, 0);
          assert.equal(err.required, 1);
          assert.match(err.message, /only 0 of 1 replicas acknowledged it within 500 ms \(minReplicas/);
          return true;
        });
      }
    });
    // A refusal wrote nothing to wait for: it is reported as what it is, replica or not.
    const gone = await s.acquireLease({ publicIP: '198.18.1.8', nodeName: 'h' });
    assert.ok(await s.revokeLease(gone.lease.subnet));
    await withReplicaPaused(() => assert.rejects(s.renewLease(gone.lease), LeaseLostError));
    // Once the replica is back, the same calls succeed, and the acquisition finds the lease it already wrote.
    const again = await s.acquireLease({ publicIP: '198.18.1.4', nodeName: 'd' });
    assert.equal(again.source, 'existing');
    assert.match(replica.cli('hget', s.keys.leases, again.lease.subnet), /198\.18\.1\.4/);
  });

  it('a renewer keeps retrying an unreplicated renewal, and reports it renewed once a replica acknowledges', async () => {
    const s = await openStore(master.url, { keyPrefix: uniquePrefix('renewer'), minReplicas: 1, replicationTimeoutMs: 300, commandTimeoutMs: 3_000, leaseTtlMs: 4_000, renewMarginMs: 3_500 });
    stores.push(s);
    await s.setNetworkConfig({ Network: '10.61.0.0/16' });
    const { lease } = await s.acquireLease({ publicIP: '198.18.1.6', nodeName: 'f' });
    const failures: Error[] = [];
    const renewer = s.keepLease(lease, { retryInitialDelayMs: 100 });
    renewer.on('renewFailed', (err) => failures.push(err));
    try {
      await withReplicaPaused(() => pollUntil('a renewal to fail for want of a replica', async () => failures.length > 0, 10_000));
      assert.ok(failures[0] instanceof StoreReplicationError, String(failures[0]));
      const renewed = await new Promise<number | null>((resolve) => renewer.once('renewed', (l) => resolve(l.expiresAt)));
      assert.ok(renewed !== null && renewed > lease.expiresAt!);
    } finally {
      renewer.stop();
    }
  });

  it('with minReplicas 0 (a lone server) no WAIT is sent', async () => {
    const s = await store(0);
    const before = waitCalls();
    const { lease } = await s.acquireLease({ publicIP: '198.18.1.7', nodeName: 'g' });
    await s.renewLease(lease);
    assert.equal(waitCalls(), before);
  });
});
