// The daemon logs each lease event once: one "lease acquired" at start-up
// (from the lease store, with where the subnet came from), and one "lease
// renewal failed; retrying" per failed renewal while Redis is away. A node
// in a sandbox whose lease is renewed every 2 s.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { SANDBOX_REDIS_URL } from '../../lab/cluster.js';
import { waitFor } from '../../lab/daemon.js';
import { daemonLog, TestCluster } from '../reliability/harness.js';

let cluster: TestCluster;

before(async () => {
  cluster = await TestCluster.create(1, SANDBOX_REDIS_URL, ['--lease-ttl', '20s', '--lease-renew-margin', '18s']);
  await cluster.sandbox.startRedis();
  await cluster.join();
});

after(async () => {
  await cluster?.destroy();
});

test('"lease acquired" once, with the subnet and where it came from', async () => {
  const acquired = (await daemonLog(cluster.daemon(1))).filter((l) => l.msg === 'lease acquired');
  assert.equal(acquired.length, 1, JSON.stringify(acquired));
  assert.equal(acquired[0]!['subnet'], (await cluster.daemon(1).status()).lease!.subnet);
  assert.equal(acquired[0]!['source'], 'new');
});

test('"lease renewal failed; retrying" once per failed attempt while Redis is away', async () => {
  await cluster.sandbox.stopRedis();
  try {
    const failures = await waitFor('three failed renewals', async () => {
      const lines = (await daemonLog(cluster.daemon(1))).filter((l) => l.msg === 'lease renewal failed; retrying');
      return lines.length >= 3 && lines;
    }, 30_000);
    const attempts = failures.map((l) => l['attempt']);
    assert.deepEqual(attempts, [...new Set(attempts)], `each attempt logged once: ${attempts.join(', ')}`);
    assert.deepEqual(attempts.slice(0, 3), [1, 2, 3]);
  } finally {
    await cluster.sandbox.startRedis();
  }
});
