import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import {
  ConfigChangeRefusedError,
  ConfigError,
  ConfigMissingError,
  LeaseConflictError,
  LeaseLostError,
  OptionsError,
  OutOfSubnetsError,
  StoreUnavailableError,
  connectLeaseStore,
  parseNetworkConfig,
  type Lease,
  type LeaseStoreOptions,
  type SubnetManager,
} from '../../daemon/lease/index.js';
import { cidrContains, parseCidr } from '../../daemon/net/ipv4.js';
import { startRedis, type RedisServer } from '../../lab/redis.js';
import { keyLayout, scriptKeys } from '../../daemon/lease/registry.js';
import { SET_CONFIG } from '../../daemon/lease/scripts.js';
import { openStore, pollUntil, silentLogger, sleep, uniquePrefix } from './helpers.js';

let server: RedisServer;
const stores: SubnetManager[] = [];

async function store(prefix: string, overrides: Partial<LeaseStoreOptions> = {}): Promise<SubnetManager> {
  const s = await openStore(server.url, { keyPrefix: prefix, ...overrides });
  stores.push(s);
  return s;
}

/** A store with a network config already set. */
async function configured(name: string, netConf: object, overrides: Partial<LeaseStoreOptions> = {}): Promise<{ prefix: string; s: SubnetManager }> {
  const prefix = uniquePrefix(name);
  const s = await store(prefix, overrides);
  await s.setNetworkConfig(JSON.stringify(netConf));
  return { prefix, s };
}

function ip(i: number): string {
  return `192.168.${Math.floor(i / 250)}.${(i % 250) + 1}`;
}

before(async () => {
  server = await startRedis();
});

after(async () => {
  await Promise.all(stores.map((s) => s.close()));
  await server.stop();
});

describe('network config in Redis', () => {
  it('reports a missing config with ConfigMissingError telling to run `miniflannel config set`', async () => {
    const s = await store(uniquePrefix('missing'));
    await assert.rejects(s.getNetworkConfig(), (err: unknown) => err instanceof ConfigMissingError && /miniflannel config set/.test(err.message));
    await assert.rejects(s.acquireLease({ publicIP: '192.168.0.1', nodeName: 'n' }), ConfigMissingError);
  });

  it('refuses to store an invalid config, leaving the old one', async () => {
    const { s } = await configured('badset', { Network: '10.5.0.0/16' });
    await assert.rejects(s.setNetworkConfig({ Network: '10.5.0.0/16', SubnetLen: 31 }), (err: unknown) => err instanceof ConfigError && err.field === 'SubnetLen');
    assert.equal((await s.getNetworkConfig()).ipv4!.subnetLen, 24);
  });

  it('refuses to change Network or SubnetLen while leases exist unless forced, checking in the same step as the write', async () => {
    const { prefix, s } = await configured('guard', { Network: '10.6.0.0/16' });
    await s.reserve('10.6.9.0/24', '192.168.6.9');
    await s.acquireLease({ publicIP: '192.168.6.1', nodeName: 'a' });
    const stored = () => server.cli('get', `{${prefix}}:config`).trim();
    const before = stored();
    for (const [netConf, fields] of [
      [{ Network: '10.7.0.0/16' }, ['Network']],
      [{ Network: '10.6.0.0/16', SubnetLen: 25 }, ['SubnetLen']],
      [{ Network: '10.6.0.0/20', SubnetLen: 26 }, ['Network', 'SubnetLen']],
    ] as const) {
      await assert.rejects(s.setNetworkConfig(netConf), (err: unknown) => {
        assert.ok(err instanceof ConfigChangeRefusedError, String(err));
        assert.deepEqual(err.fields, fields);
        assert.equal(err.leases, 2, 'the reservation counts');
        assert.match(err.message, /^refusing to change .* while 2 leases exist: .*pass --force/);
        return true;
      });
      assert.equal(stored(), before, `nothing written for ${JSON.stringify(netConf)}`);
    }
    await assert.rejects(s.setNetworkConfig({ Network: '10.7.0.0/16' }, { dryRun: true }), ConfigChangeRefusedError, 'a dry run applies the same rule');

    // Other fields may change under leases.
    const port = await s.setNetworkConfig({ Network: '10.6.0.0/16', Backend: { Type: 'udp', Port: 9000 } });
    assert.deepEqual([port.moved, port.leases, (port.previous as { backend: unknown }).backend], [[], 2, { type: 'udp', port: 8285 }]);

    const dry = await s.setNetworkConfig({ Network: '10.7.0.0/16' }, { force: true, dryRun: true });
    assert.deepEqual(dry.moved, ['Network']);
    assert.equal((await s.getNetworkConfig()).backend.port, 9000, 'a dry run writes nothing');

    const forced = await s.setNetworkConfig({ Network: '10.7.0.0/16' }, { force: true });
    assert.deepEqual([forced.moved, forced.leases], [['Network'], 2]);
    assert.equal(stored(), '{"Network":"10.7.0.0/16"}');
  });

  it('writes the config only if the stored text is still the one the caller compared', async () => {
    const { prefix, s } = await configured('guard-cas', { Network: '10.11.0.0/16' });
    const keys = scriptKeys(keyLayout(prefix));
    const evalSetConfig = (expected: string) => server.cli('eval', SET_CONFIG.lua, String(keys.length), ...keys, '100', '0', 'e', 'c', expected, '{"Network":"10.12.0.0/16"}', '0', '0');
    assert.match(evalSetConfig('{"Network":"10.99.0.0/16"}'), /changed/);
    assert.equal((await s.getNetworkConfig()).ipv4!.network.network, parseCidr('10.11.0.0/16').network, 'not written');
    assert.match(evalSetConfig('{"Network":"10.11.0.0/16"}'), /ok/);
    assert.equal((await s.getNetworkConfig()).ipv4!.network.network, parseCidr('10.12.0.0/16').network);
  });

  it('counts only live leases against a layout change, and treats an invalid stored config as none', async () => {
    const { prefix, s } = await configured('guard-expired', { Network: '10.8.0.0/16' }, { leaseTtlMs: 300, renewMarginMs: 100 });
    await s.acquireLease({ publicIP: '192.168.7.1', nodeName: 'a' });
    await sleep(400);
    const moved = await s.setNetworkConfig({ Network: '10.9.0.0/16' });
    assert.deepEqual([moved.moved, moved.leases], [[], 0], 'an expired lease holds nothing back');

    await s.acquireLease({ publicIP: '192.168.7.2', nodeName: 'b' });
    server.cli('set', `{${prefix}}:config`, '{"Network": "10.9.0.0/33"}');
    const replaced = await s.setNetworkConfig({ Network: '10.10.0.0/16' });
    assert.equal(replaced.previous, 'invalid');
    assert.deepEqual(replaced.moved, []);
  });

  it('reports a corrupt stored config as ConfigError naming the key', async () => {
    const prefix = uniquePrefix('corruptconf');
    const s = await store(prefix);
    server.cli('set', `{${prefix}}:config`, '{"Network": "10.5.0.0/33"}');
    await assert.rejects(s.getNetworkConfig(), (err: unknown) => err instanceof ConfigError && err.field === 'Network' && err.message.includes(`{${prefix}}:config`));
  });

  it('validates options before connecting', async () => {
    await assert.rejects(
      connectLeaseStore({ url: server.url, logger: silentLogger(), leaseTtlMs: 1000, renewMarginMs: 1000 }),
      (err: unknown) => err instanceof OptionsError && err.option === 'renewMarginMs',
    );
    await assert.rejects(
      connectLeaseStore({ url: server.url, logger: silentLogger(), keyPrefix: 'a{b}' }),
      (err: unknown) => err instanceof OptionsError && err.option === 'keyPrefix',
    );
  });
});

describe('acquire', () => {
  it('gives 100 concurrent acquirers on 10 connections 100 distinct subnets', async () => {
    const { prefix, s } = await configured('concurrent', { Network: '10.10.0.0/16' });
    const clients = [s, ...(await Promise.all(Array.from({ length: 9 }, () => store(prefix))))];
    const results = await Promise.all(
      Array.from({ length: 100 }, (_, i) => clients[i % clients.length]!.acquireLease({ publicIP: ip(i), nodeName: `node-${i}` })),
    );
    const subnets = results.map((r) => r.lease.subnet);
    assert.equal(new Set(subnets).size, 100, 'no subnet handed out twice');
    const config = await s.getNetworkConfig();
    for (const r of results) {
      const cidr = parseCidr(r.lease.subnet);
      assert.equal(cidr.prefixLength, 24);
      assert.ok(cidr.network >= config.ipv4!.subnetMin && cidr.network <= config.ipv4!.subnetMax, `${r.lease.subnet} in SubnetMin..SubnetMax`);
      assert.equal(r.source, 'new');
    }
    const listed = (await s.listLeases()).leases;
    assert.equal(listed.length, 100);
    const byIp = new Map(listed.map((l) => [l.publicIP, l.subnet]));
    results.forEach((r, i) => assert.equal(byIp.get(ip(i)), r.lease.subnet));
  });

  it('hands out every subnet exactly once under contention, then says out of subnets', async () => {
    // /22 split into /26s: 16 subnets, the first skipped: 15 to give.
    const { prefix, s } = await configured('exhaust', { Network: '10.11.0.0/22', SubnetLen: 26 });
    const clients = [s, ...(await Promise.all(Array.from({ length: 3 }, () => store(prefix))))];
    const outcomes = await Promise.allSettled(
      Array.from({ length: 40 }, (_, i) => clients[i % clients.length]!.acquireLease({ publicIP: ip(i), nodeName: `node-${i}` })),
    );
    const won = outcomes.filter((o) => o.status === 'fulfilled').map((o) => o.value.lease.subnet);
    const lost = outcomes.filter((o): o is PromiseRejectedResult => o.status === 'rejected').map((o) => o.reason as unknown);
    assert.equal(won.length, 15);
    assert.equal(new Set(won).size, 15);
    assert.ok(!won.includes('10.11.0.0/26'), 'the first subnet is never allocated');
    assert.equal(lost.length, 25);
    for (const err of lost) {
      assert.ok(err instanceof OutOfSubnetsError, `expected OutOfSubnetsError, got ${String(err)}`);
      assert.match(err.message, /out of subnets/);
    }
  });

  it('frees the subnet of an expired lease', async () => {
    // /28 in /30s: three subnets.
    const { s } = await configured('expiry', { Network: '10.12.0.0/28' }, { leaseTtlMs: 400, renewMarginMs: 100 });
    const held = await Promise.all([0, 1, 2].map((i) => s.acquireLease({ publicIP: ip(i), nodeName: `n${i}` })));
    await assert.rejects(s.acquireLease({ publicIP: ip(3), nodeName: 'n3' }), OutOfSubnetsError);
    const late = await pollUntil('an expired subnet to be free again', async () => {
      try {
        return await s.acquireLease({ publicIP: ip(3), nodeName: 'n3' });
      } catch (err) {
        if (err instanceof OutOfSubnetsError) return undefined;
        throw err;
      }
    });
    assert.ok(held.some((h) => h.lease.subnet === late.lease.subnet));
    const listed = (await s.listLeases()).leases;
    assert.ok(listed.every((l) => l.expiresAt !== null && l.expiresAt > s.serverNow() - 1000));
    assert.ok(listed.some((l) => l.publicIP === ip(3)));
  });

  it('keeps a renewed lease alive past several TTLs while an unrenewed one expires', async () => {
    const { s } = await configured('renew', { Network: '10.13.0.0/16' }, { leaseTtlMs: 1_000, renewMarginMs: 700 });
    const kept = await s.acquireLease({ publicIP: '192.168.1.1', nodeName: 'kept' });
    const dropped = await s.acquireLease({ publicIP: '192.168.1.2', nodeName: 'dropped' });
    const renewer = s.keepLease(kept.lease);
    let renewals = 0;
    let lost = false;
    renewer.on('renewed', () => renewals++);
    renewer.on('lost', () => (lost = true));
    await pollUntil('the unrenewed lease to expire', async () => !(await s.listLeases()).leases.some((l) => l.subnet === dropped.lease.subnet));
    await sleep(1_500); // the renewed one must outlive at least 2.5 TTLs in total
    const listed = (await s.listLeases()).leases;
    assert.ok(listed.some((l) => l.subnet === kept.lease.subnet && l.publicIP === '192.168.1.1'), 'renewed lease still held');
    assert.ok(renewals >= 2, `renewed ${renewals} times`);
    assert.equal(lost, false);
    assert.ok(renewer.lease.expiresAt! > kept.lease.expiresAt!, 'expiry moved forward');
    renewer.stop();
  });

  it('retries a renewal through a Redis outage and keeps the lease', async () => {
    const durable = await startRedis({ persistence: true });
    const s = await openStore(durable.url, { keyPrefix: uniquePrefix('outage'), leaseTtlMs: 4_000, renewMarginMs: 3_500, commandTimeoutMs: 300 });
    stores.push(s);
    try {
      await s.setNetworkConfig({ Network: '10.16.0.0/16' });
      const { lease } = await s.acquireLease({ publicIP: '192.168.2.9', nodeName: 'a' });
      await durable.kill();
      const renewer = s.keepLease(lease, { retryInitialDelayMs: 100, retryMaxDelayMs: 200 });
      const failures: Error[] = [];
      renewer.on('renewFailed', (err) => failures.push(err));
      await pollUntil('a failed renewal', async () => failures.length > 0);
      assert.ok(failures[0] instanceof StoreUnavailableError, String(failures[0]));
      await durable.restart();
      const renewed = await new Promise<Lease>((resolve) => renewer.once('renewed', resolve));
      assert.equal(renewed.subnet, lease.subnet);
      assert.ok(renewed.expiresAt! > lease.expiresAt!);
      renewer.stop();
    } finally {
      await durable.stop();
    }
  });

  it('tells the owner its revoked lease is lost: renewLease throws and the keeper emits lost', async () => {
    const { s } = await configured('revoke', { Network: '10.14.0.0/16' }, { leaseTtlMs: 60_000, renewMarginMs: 59_800 });
    const { lease } = await s.acquireLease({ publicIP: '192.168.2.1', nodeName: 'a' });
    const renewer = s.keepLease(lease, { retryInitialDelayMs: 50 });
    const lostEvent = new Promise<LeaseLostError>((resolve) => renewer.once('lost', resolve));
    assert.equal(await s.revokeLease(lease.subnet), true);
    assert.equal(await s.revokeLease(lease.subnet), false, 'a second revoke finds nothing');
    await assert.rejects(s.renewLease(lease), (err: unknown) => err instanceof LeaseLostError && err.reason === 'revoked' && err.subnet === lease.subnet);
    const err = await lostEvent;
    assert.equal(err.subnet, lease.subnet);
  });

  it('says the lease was taken when another node now holds the subnet', async () => {
    const { s } = await configured('taken', { Network: '10.15.0.0/16' });
    const { lease } = await s.acquireLease({ publicIP: '192.168.3.1', nodeName: 'a' });
    await s.revokeLease(lease.subnet);
    const other = await s.acquireLease({ publicIP: '192.168.3.2', nodeName: 'b', previousSubnet: lease.subnet });
    assert.equal(other.lease.subnet, lease.subnet);
    await assert.rejects(s.renewLease(lease), (err: unknown) => err instanceof LeaseLostError && err.reason === 'taken');
    await assert.rejects(s.revokeLease(lease.subnet, { publicIP: '192.168.3.1' }), LeaseConflictError);
  });
});

describe('allocation inside Redis', () => {
  it('acquires with one script and no listing, whatever the size of the table', async () => {
    const own = await startRedis();
    try {
      const s = await openStore(own.url, { keyPrefix: uniquePrefix('cost') });
      stores.push(s);
      await s.setNetworkConfig({ Network: '10.0.0.0/8' }); // 65535 allocatable /24s
      await Promise.all(Array.from({ length: 300 }, (_, i) => s.acquireLease({ publicIP: ip(i), nodeName: `n${i}` })));
      own.cli('config', 'resetstat');
      for (let i = 300; i < 320; i++) await s.acquireLease({ publicIP: ip(i), nodeName: `n${i}` });
      const calls = new Map<string, number>();
      for (const line of own.cli('info', 'commandstats').split('\n')) {
        const match = /^cmdstat_([^:]+):calls=(\d+)/.exec(line.trim());
        if (match) calls.set(match[1]!, Number(match[2]));
      }
      // Each acquire: GET the config, one script (which uses BITPOS on the bitmap), nothing that lists.
      assert.equal(calls.get('get'), 20 + 20 * 3, 'the config, and inside each script the epoch and the range (twice)');
      assert.equal(calls.get('evalsha'), 20);
      assert.equal(calls.get('bitpos'), 20);
      for (const listing of ['hgetall', 'hscan', 'hkeys', 'zrange', 'xrange']) assert.equal(calls.get(listing), undefined, `no ${listing}`);
    } finally {
      await own.stop();
    }
  });

  it('rebuilds the bitmap when the range changes, and never hands out a subnet a lease holds', async () => {
    const { prefix, s } = await configured('rebuild', { Network: '10.60.0.0/24', SubnetLen: 28 }); // 15 allocatable
    const first = await Promise.all(Array.from({ length: 5 }, (_, i) => s.acquireLease({ publicIP: ip(i), nodeName: `n${i}` })));
    // A hand edit the bitmap does not know about, and a bitmap wiped by hand.
    server.cli('hset', `{${prefix}}:leases`, '10.60.0.240/28', '{"PublicIP":"192.168.99.1","NodeName":"hand","BackendType":"udp","BackendData":{}}');
    server.cli('del', `{${prefix}}:allocated`);
    server.cli('set', `{${prefix}}:allocatable`, 'stale');
    const rest = await Promise.allSettled(Array.from({ length: 12 }, (_, i) => s.acquireLease({ publicIP: ip(100 + i), nodeName: `m${i}` })));
    const got = rest.filter((r) => r.status === 'fulfilled').map((r) => r.value.lease.subnet);
    assert.equal(got.length, 9, '15 minus the 5 held minus the one written by hand');
    const all = new Set([...first.map((f) => f.lease.subnet), ...got]);
    assert.equal(all.size, 14);
    assert.ok(!all.has('10.60.0.240/28'));
    assert.ok(rest.filter((r) => r.status === 'rejected').every((r) => r.reason instanceof OutOfSubnetsError));
  });
});

describe('soft state: what the store forgot, the owner puts back', () => {
  it('renewing a lease the store lost puts it back as it was; a revoked one stays revoked', async () => {
    const volatile = await startRedis();
    try {
      const prefix = uniquePrefix('forgot');
      const s = await openStore(volatile.url, { keyPrefix: prefix });
      stores.push(s);
      await s.setNetworkConfig({ Network: '10.50.0.0/16' });
      const a = (await s.acquireLease({ publicIP: '192.168.20.1', nodeName: 'a', backendData: { Port: 8300 } })).lease;
      const b = (await s.acquireLease({ publicIP: '192.168.20.2', nodeName: 'b' })).lease;
      volatile.cli('flushall');
      await assert.rejects(s.getNetworkConfig(), ConfigMissingError);
      const back = await s.renewLease(a);
      assert.deepEqual({ ...back, expiresAt: 0 }, { ...a, expiresAt: 0 }, 'same subnet, node and backend data');
      // b's owner puts b back too; a node starting after the settling window gets neither subnet,
      // not even when it asks for a's as its previous one.
      await s.setNetworkConfig({ Network: '10.50.0.0/16' });
      assert.equal((await s.renewLease(b)).subnet, b.subnet);
      volatile.cli('pexpire', `{${prefix}}:settling`, '50');
      const newcomer = await s.acquireLease({ publicIP: '192.168.20.3', nodeName: 'c', previousSubnet: a.subnet });
      assert.ok(![a.subnet, b.subnet].includes(newcomer.lease.subnet), `the newcomer got ${newcomer.lease.subnet}`);
      // After a revocation the owner's renewal is refused, even though the subnet is free.
      await s.revokeLease(b.subnet);
      await assert.rejects(s.renewLease(b), (err: unknown) => err instanceof LeaseLostError && err.reason === 'revoked');
      assert.ok(!(await s.listLeases()).leases.some((l) => l.subnet === b.subnet));
    } finally {
      await volatile.stop();
    }
  });

  it('hands out no new subnet while running nodes put back what the store lost; a previous subnet is not held up', async () => {
    const volatile = await startRedis();
    try {
      const prefix = uniquePrefix('settle');
      const s = await openStore(volatile.url, { keyPrefix: prefix });
      stores.push(s);
      await s.setNetworkConfig({ Network: '10.57.0.0/16' });
      const held = (await s.acquireLease({ publicIP: '192.168.24.1', nodeName: 'a' })).lease;
      volatile.cli('flushall');
      assert.deepEqual(await s.ensureNetworkConfig(parseNetworkConfig({ Network: '10.57.0.0/16' })), { status: 'stored' });
      const window = Number(volatile.cli('pttl', `{${prefix}}:settling`).trim());
      assert.ok(window > 14_000 && window <= 15_000, `the config put back opens a 15 s window (${window} ms left)`);
      await s.renewLease(held); // a running node puts its lease back: the window starts again
      volatile.cli('pexpire', `{${prefix}}:settling`, '1500');
      const returning = await s.acquireLease({ publicIP: '192.168.24.3', nodeName: 'c', previousSubnet: '10.57.77.0/24' });
      assert.equal(returning.source, 'previous', 'a node taking its previous subnet is not held up');
      const started = Date.now();
      const newcomer = await s.acquireLease({ publicIP: '192.168.24.2', nodeName: 'b' });
      assert.ok(Date.now() - started >= 1_300, `a new subnet waited for the window (${Date.now() - started} ms)`);
      assert.ok(![held.subnet, returning.lease.subnet].includes(newcomer.lease.subnet));
    } finally {
      await volatile.stop();
    }
  });

  it('puts back a lease that expired while its owner could not renew it, if nobody took the subnet', async () => {
    const { s } = await configured('expired-back', { Network: '10.51.0.0/16' }, { leaseTtlMs: 300, renewMarginMs: 100 });
    const { lease } = await s.acquireLease({ publicIP: '192.168.21.1', nodeName: 'a' });
    await sleep(400);
    assert.equal(await s.reap(), 1);
    const back = await s.renewLease(lease);
    assert.equal(back.subnet, lease.subnet);
    assert.ok(back.expiresAt! > lease.expiresAt!);
  });

  it('restores the network config only where none is stored, and says when a different one is', async () => {
    const { prefix, s } = await configured('ensure', { Network: '10.52.0.0/16' });
    const mine = await s.getNetworkConfig();
    assert.deepEqual(await s.ensureNetworkConfig(mine), { status: 'same' });
    server.cli('del', `{${prefix}}:config`);
    assert.deepEqual(await s.ensureNetworkConfig(mine), { status: 'stored' });
    assert.deepEqual(await s.getNetworkConfig(), mine);
    await s.setNetworkConfig({ Network: '10.53.0.0/16' });
    const different = await s.ensureNetworkConfig(mine);
    assert.equal(different.status, 'different');
    assert.match(different.status === 'different' ? different.why : '', /10\.53\.0\.0\/16.*10\.52\.0\.0\/16/);
    assert.equal((await s.getNetworkConfig()).ipv4!.network.network, parseCidr('10.53.0.0/16').network, 'never overwritten');
  });

  it('a keeper puts its lease back after a flush, and stops only when the lease is revoked', async () => {
    const volatile = await startRedis();
    try {
      const s = await openStore(volatile.url, { keyPrefix: uniquePrefix('keeper') });
      stores.push(s);
      await s.setNetworkConfig({ Network: '10.54.0.0/16' });
      const { lease } = await s.acquireLease({ publicIP: '192.168.22.1', nodeName: 'a' });
      const keeper = s.keepLease(lease);
      volatile.cli('flushall');
      const restored = new Promise<Lease>((resolve) => keeper.once('restored', resolve));
      keeper.reassert('the store lost its data');
      assert.equal((await restored).subnet, lease.subnet);
      assert.deepEqual((await s.listLeases()).leases.map((l) => l.subnet), [lease.subnet]);
      const lost = new Promise<LeaseLostError>((resolve) => keeper.once('lost', resolve));
      await s.revokeLease(lease.subnet);
      keeper.reassert('the watch saw it removed');
      assert.equal((await lost).reason, 'revoked');
    } finally {
      await volatile.stop();
    }
  });

  it('keepers share the reaping: a lease nobody renews is reaped without anyone calling reap', async () => {
    const { s } = await configured('reaping', { Network: '10.55.0.0/16' }, { leaseTtlMs: 2_000, renewMarginMs: 1_000, reapIntervalMs: 200 });
    const kept = await s.acquireLease({ publicIP: '192.168.23.1', nodeName: 'kept' });
    const dead = await s.acquireLease({ publicIP: '192.168.23.2', nodeName: 'dead' });
    const keeper = s.keepLease(kept.lease);
    const watch = s.watchLeases();
    let expired: string | undefined;
    for await (const event of watch) {
      if (event.type === 'expired') {
        expired = event.lease.subnet;
        break;
      }
    }
    assert.equal(expired, dead.lease.subnet);
    keeper.stop();
  });
});

describe('restart reuse, in flannel order', () => {
  it('1. reuses the lease held by this public IP, even over a previous subnet', async () => {
    const { prefix, s } = await configured('reuse-ip', { Network: '10.20.0.0/16' });
    const first = await s.acquireLease({ publicIP: '192.168.4.1', nodeName: 'a', backendData: { Port: 8285 } });
    const restarted = await store(prefix);
    const again = await restarted.acquireLease({ publicIP: '192.168.4.1', nodeName: 'a', previousSubnet: '10.20.77.0/24', backendData: { Port: 9999 } });
    assert.equal(again.source, 'existing');
    assert.equal(again.lease.subnet, first.lease.subnet);
    assert.deepEqual(again.lease.backendData, { Port: 9999 });
    const listed = (await s.listLeases()).leases;
    assert.equal(listed.length, 1, 'no second lease for the same IP');
    assert.deepEqual(listed[0]!.backendData, { Port: 9999 }, 'new backend data published');
  });

  it('2. otherwise takes the previous subnet from subnet.env if it is free', async () => {
    const { s } = await configured('reuse-prev', { Network: '10.21.0.0/16' });
    for (const previousSubnet of ['10.21.200.0/24', '10.21.3.0/24']) {
      const got = await s.acquireLease({ publicIP: '192.168.5.1', nodeName: 'a', previousSubnet });
      assert.equal(got.source, 'previous');
      assert.equal(got.lease.subnet, previousSubnet);
      await s.revokeLease(got.lease.subnet);
    }
    // subnet.env holds the node's first address (FLANNEL_SUBNET=10.21.4.1/24), not the network.
    const fromEnv = await s.acquireLease({ publicIP: '192.168.5.1', nodeName: 'a', previousSubnet: '10.21.4.1/24' });
    assert.equal(fromEnv.source, 'previous');
    assert.equal(fromEnv.lease.subnet, '10.21.4.0/24');
  });

  it('3. otherwise takes a new subnet: previous one held by another node, or outside the config', async () => {
    const { s } = await configured('reuse-new', { Network: '10.22.0.0/16' });
    const other = await s.acquireLease({ publicIP: '192.168.6.2', nodeName: 'b', previousSubnet: '10.22.9.0/24' });
    assert.equal(other.lease.subnet, '10.22.9.0/24');
    const mine = await s.acquireLease({ publicIP: '192.168.6.1', nodeName: 'a', previousSubnet: '10.22.9.0/24' });
    assert.equal(mine.source, 'new');
    assert.notEqual(mine.lease.subnet, '10.22.9.0/24');
    await s.revokeLease(mine.lease.subnet);
    for (const previousSubnet of ['10.99.9.0/24', '10.22.0.0/24', '10.22.9.0/25']) {
      const got = await s.acquireLease({ publicIP: '192.168.6.1', nodeName: 'a', previousSubnet });
      assert.equal(got.source, 'new', previousSubnet);
      assert.notEqual(got.lease.subnet, previousSubnet);
      await s.revokeLease(got.lease.subnet);
    }
  });

  it('drops a lease of this IP that no longer fits a changed config and allocates anew', async () => {
    const { s } = await configured('reuse-changed', { Network: '10.23.0.0/16' });
    const old = await s.acquireLease({ publicIP: '192.168.7.1', nodeName: 'a' });
    await s.setNetworkConfig({ Network: '10.24.0.0/16' }, { force: true });
    const got = await s.acquireLease({ publicIP: '192.168.7.1', nodeName: 'a', previousSubnet: old.lease.subnet });
    assert.equal(got.source, 'new');
    assert.ok(cidrContains(parseCidr('10.24.0.0/16'), parseCidr(got.lease.subnet).network));
    const listed = (await s.listLeases()).leases;
    assert.deepEqual(listed.map((l) => l.subnet), [got.lease.subnet]);
  });
});

describe('reservations', () => {
  it('keeps a reserved subnet from everyone but its public IP, which gets it on acquire', async () => {
    const { s } = await configured('reserve', { Network: '10.30.0.0/28' }); // three /30s
    const { lease: reserved } = await s.reserve('10.30.0.8/30', '192.168.8.8');
    assert.equal(reserved.expiresAt, null);
    const others = await Promise.allSettled([1, 2, 3].map((i) => s.acquireLease({ publicIP: ip(i), nodeName: `n${i}` })));
    const got = others.filter((o) => o.status === 'fulfilled').map((o) => o.value.lease.subnet);
    assert.equal(got.length, 2);
    assert.ok(!got.includes('10.30.0.8/30'), 'nobody else got the reserved subnet');
    assert.ok(others.some((o) => o.status === 'rejected' && o.reason instanceof OutOfSubnetsError));
    const owner = await s.acquireLease({ publicIP: '192.168.8.8', nodeName: 'special' });
    assert.equal(owner.source, 'reservation');
    assert.equal(owner.lease.subnet, '10.30.0.8/30');
    assert.equal(owner.lease.expiresAt, null, 'a claimed reservation still never expires');
    assert.equal(owner.lease.nodeName, 'special');
    assert.deepEqual(await s.renewLease(owner.lease), owner.lease);
  });

  it('may sit outside SubnetMin..SubnetMax, never expires, and can be removed only as a reservation', async () => {
    const { s } = await configured('reserve2', { Network: '10.31.0.0/16' }, { leaseTtlMs: 300, renewMarginMs: 100 });
    await s.reserve('10.31.0.0/24', '192.168.9.1');
    const leased = await s.acquireLease({ publicIP: '192.168.9.2', nodeName: 'b', previousSubnet: '10.31.7.0/24' });
    assert.equal(leased.lease.subnet, '10.31.7.0/24');
    await assert.rejects(s.reserve(leased.lease.subnet, '192.168.9.3'), LeaseConflictError);
    await assert.rejects(s.reserve('10.31.5.0/24', '192.168.9.2'), LeaseConflictError, 'an IP holding a lease cannot get a second subnet');
    await assert.rejects(s.reserve('10.99.0.0/24', '192.168.9.4'), (err: unknown) => err instanceof OptionsError && err.option === 'subnet');
    await assert.rejects(s.unreserve(leased.lease.subnet), LeaseConflictError);
    await sleep(600);
    const listed = (await s.listLeases()).leases;
    assert.deepEqual(listed.map((l) => l.subnet), ['10.31.0.0/24'], 'the reservation outlived the TTL; the lease did not');
    const owner = await s.acquireLease({ publicIP: '192.168.9.1', nodeName: 'a' });
    assert.equal(owner.lease.subnet, '10.31.0.0/24');
    assert.equal(await s.unreserve('10.31.0.0/24'), true);
    assert.equal(await s.unreserve('10.31.0.0/24'), false);
  });

  it('says what it did: created, converted, updated (the node renamed) or unchanged, writing an event only for a change', async () => {
    const { prefix, s } = await configured('reserve-outcome', { Network: '10.33.0.0/16' });
    const seq = () => Number(server.cli('get', `{${prefix}}:seq`).trim() || 0);
    const stored = (subnet: string) => server.cli('hget', `{${prefix}}:leases`, subnet).trim();

    const created = await s.reserve('10.33.9.0/24', '192.168.11.9', 'node-i');
    assert.deepEqual([created.outcome, created.lease.nodeName, created.lease.expiresAt], ['created', 'node-i', null]);
    assert.equal(created.lease.cidr.prefixLength, 24);
    let events = seq();

    const same = await s.reserve('10.33.9.0/24', '192.168.11.9', 'node-i');
    assert.deepEqual([same.outcome, same.lease.nodeName], ['unchanged', 'node-i']);
    const kept = await s.reserve('10.33.9.0/24', '192.168.11.9');
    assert.deepEqual([kept.outcome, kept.lease.nodeName], ['unchanged', 'node-i'], 'no node name keeps the stored one');
    assert.equal(seq(), events, 'nothing written');

    const renamed = await s.reserve('10.33.9.0/24', '192.168.11.9', 'node-"j"');
    assert.deepEqual([renamed.outcome, renamed.lease.nodeName], ['updated', 'node-"j"']);
    assert.equal(seq(), events + 1, 'one "added" event');
    assert.equal(stored('10.33.9.0/24'), '{"PublicIP":"192.168.11.9","NodeName":"node-\\"j\\"","BackendType":"udp","BackendData":{"Port":8285}}', 'the text a node writes');
    const back = await s.reserve('10.33.9.0/24', '192.168.11.9', 'node-i');
    assert.deepEqual([back.outcome, back.lease.nodeName], ['updated', 'node-i'], 'an escaped name is replaced whole');
    events = seq();
    const claimed = await s.acquireLease({ publicIP: '192.168.11.9', nodeName: 'node-i' });
    assert.equal(claimed.source, 'reservation');
    assert.equal(seq(), events, 'the node claiming its renamed reservation changes nothing');

    const { lease } = await s.acquireLease({ publicIP: '192.168.11.5', nodeName: 'node-e', backendData: { Port: 9000 } });
    const converted = await s.reserve(lease.subnet, '192.168.11.5', 'node-f');
    assert.deepEqual([converted.outcome, converted.lease.nodeName, converted.lease.expiresAt, converted.lease.backendData], ['converted', 'node-f', null, { Port: 9000 }]);
    assert.equal(seq(), events + 2, 'the acquire and the conversion');

    await assert.rejects(s.reserve('10.33.9.0/24', '192.168.11.7', 'node-g'), (err: unknown) => {
      assert.ok(err instanceof LeaseConflictError);
      assert.equal(err.message, 'subnet 10.33.9.0/24 is already taken: it is reserved for node-i (192.168.11.9); revoke it first');
      return true;
    });
    assert.equal(stored('10.33.9.0/24'), '{"PublicIP":"192.168.11.9","NodeName":"node-i","BackendType":"udp","BackendData":{"Port":8285}}', 'untouched');
  });

  it('turns an existing lease of the same IP into a reservation', async () => {
    const { s } = await configured('reserve3', { Network: '10.32.0.0/16' }, { leaseTtlMs: 300, renewMarginMs: 100 });
    const { lease } = await s.acquireLease({ publicIP: '192.168.10.1', nodeName: 'a' });
    const { lease: reserved } = await s.reserve(lease.subnet, '192.168.10.1');
    assert.equal(reserved.expiresAt, null);
    assert.equal(reserved.nodeName, 'a', 'the node data is kept');
    await sleep(600);
    assert.equal((await s.listLeases()).leases.length, 1);
  });
});
