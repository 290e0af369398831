// `miniflannel config` and `miniflannel lease` under a dual-stack network
// config, against a real redis-server, run as a subprocess.

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { SubnetManager } from '../../daemon/lease/index.js';
import { startRedis, type RedisServer } from '../../lab/redis.js';
import { bindCli, closeStores, oneLineError, startCli, type BoundCli } from './helpers.js';

let redis: RedisServer;

before(async () => {
  redis = await startRedis();
});
after(async () => {
  await closeStores();
  await redis?.stop();
});

const DUAL = { Network: '10.244.0.0/16', EnableIPv6: true, IPv6Network: 'fd00:10:244::/48' };

/** A CLI on its own prefix with `netConf` stored, and a store on the same prefix for acting as nodes. */
async function cluster(name: string, netConf: Readonly<Record<string, unknown>> = DUAL): Promise<{ cli: BoundCli; store: SubnetManager }> {
  const cli = bindCli(redis, name);
  await cli.setConfig(netConf);
  return { cli, store: await cli.store() };
}

describe('config with IPv6', () => {
  it('init --ipv6-network stores EnableIPv6 and IPv6Network, and get shows every IPv6 field', async () => {
    const cli = bindCli(redis, 'init');
    const out = await cli.ok(['config', 'init', '--network', '10.244.0.0/16', '--ipv6-network', 'fd00:10:244::/48']);
    assert.match(out, /^ {2}IPv6Network:\s+fd00:10:244::\/48$/m);
    assert.match(out, /^ {2}IPv6SubnetLen:\s+64$/m);
    assert.deepEqual(JSON.parse(redis.cli('GET', `{${cli.prefix}}:config`)), { Network: '10.244.0.0/16', EnableIPv6: true, IPv6Network: 'fd00:10:244::/48', Backend: { Type: 'udp' } });
    const got = await cli.ok(['config', 'get']);
    assert.match(got, /^IPv6SubnetMin:\s+fd00:10:244:1::$/m);
    assert.match(got, /^IPv6SubnetMax:\s+fd00:10:244:ffff::$/m);
    const json = JSON.parse(await cli.ok(['config', 'get', '--json']));
    assert.deepEqual(Object.keys(json), ['Network', 'SubnetLen', 'SubnetMin', 'SubnetMax', 'EnableIPv6', 'IPv6Network', 'IPv6SubnetLen', 'IPv6SubnetMin', 'IPv6SubnetMax', 'Backend']);
  });

  it('shows no IPv6 field for an IPv4-only config', async () => {
    const cli = bindCli(redis, 'init-v4');
    await cli.ok(['config', 'init', '--network', '10.244.0.0/16']);
    assert.doesNotMatch(await cli.ok(['config', 'get']), /IPv6/);
    assert.deepEqual(Object.keys(JSON.parse(await cli.ok(['config', 'get', '--json']))), ['Network', 'SubnetLen', 'SubnetMin', 'SubnetMax', 'Backend']);
  });

  it('refuses a bad or too small --ipv6-network with exit 2, naming the flag', async () => {
    const cli = bindCli(redis, 'init-bad');
    const bad = await cli.run(['config', 'init', '--network', '10.244.0.0/16', '--ipv6-network', 'fd00:10:244::1/48']);
    assert.equal(bad.code, 2);
    assert.match(oneLineError(bad), /^miniflannel: --ipv6-network: IPv6Network .*host bits/);
    const small = await cli.run(['config', 'init', '--network', '10.0.0.0/8', '--ipv6-network', 'fd00:10:244::/56']);
    assert.equal(small.code, 2);
    assert.match(oneLineError(small), /^miniflannel: --ipv6-subnet-len: IPv6SubnetLen 64 \(the default\) cuts .* into 2\^8 subnets, fewer than the 2\^16 .*\/48 or larger, or an IPv6SubnetLen of 72 or more/);
    const alone = await cli.run(['config', 'init', '--network', '10.244.0.0/16', '--ipv6-subnet-len', '80']);
    assert.equal(alone.code, 2);
    assert.match(oneLineError(alone), /^miniflannel: --ipv6-subnet-len: it applies only with --ipv6-network$/);
  });

  it('init --ipv6-subnet-len sets IPv6SubnetLen', async () => {
    const cli = bindCli(redis, 'init-len');
    await cli.ok(['config', 'init', '--network', '10.0.0.0/8', '--ipv6-network', 'fd00:10:244::/56', '--ipv6-subnet-len', '72']);
    assert.deepEqual(JSON.parse(redis.cli('GET', `{${cli.prefix}}:config`)), { Network: '10.0.0.0/8', EnableIPv6: true, IPv6Network: 'fd00:10:244::/56', IPv6SubnetLen: 72, Backend: { Type: 'udp' } });
  });

  it('set turns IPv6 on under leases without --force, refuses to turn it off without it, and refuses stray IPv6 fields', async () => {
    const { cli, store } = await cluster('set', { Network: '10.244.0.0/16' });
    await store.acquireLease({ publicIP: '198.18.0.1', nodeName: 'a' });
    const on = JSON.parse(await cli.ok(['config', 'set', '--json'], { input: JSON.stringify(DUAL) }));
    assert.deepEqual(on.changes.map((c: { field: string }) => c.field), ['EnableIPv6', 'IPv6Network', 'IPv6SubnetLen', 'IPv6SubnetMin', 'IPv6SubnetMax']);
    const off = await cli.run(['config', 'set'], { input: JSON.stringify({ Network: '10.244.0.0/16' }) });
    assert.equal(off.code, 1);
    assert.match(oneLineError(off), /refusing to change EnableIPv6 while 1 lease exists.*--force/);
    const text = await cli.ok(['config', 'set', '--force'], { input: JSON.stringify({ Network: '10.244.0.0/16' }) });
    assert.match(text, /^ {2}EnableIPv6\s+true → \(none\)$/m);
    const stray = await cli.run(['config', 'set'], { input: JSON.stringify({ Network: '10.244.0.0/16', IPv6Network: 'fd00::/48' }) });
    assert.equal(stray.code, 2);
    assert.match(oneLineError(stray), /IPv6Network is given but EnableIPv6 is not true: set EnableIPv6: true/);
    // Going IPv6-only changes what every lease is keyed by.
    const v6only = await cli.run(['config', 'set'], { input: JSON.stringify({ EnableIPv4: false, EnableIPv6: true, IPv6Network: 'fd00::/48' }) });
    assert.equal(v6only.code, 1);
    assert.match(oneLineError(v6only), /refusing to change EnableIPv4 while 1 lease exists.*--force/);
  });
});

describe('lease list and show with IPv6', () => {
  it('lists the IPv6 subnet and PublicIPv6 of every lease, in the table and in JSON', async () => {
    const { cli, store } = await cluster('list');
    await store.acquireLease({ publicIP: '198.18.0.20', publicIPv6: 'fd00:198:18::20', nodeName: 'node-t', previousSubnet: '10.244.20.0/24' });
    await store.acquireLease({ publicIP: '198.18.0.3', nodeName: 'node-c', previousSubnet: '10.244.3.0/24' });

    const lines = (await cli.ok(['lease', 'list'])).trimEnd().split('\n');
    assert.deepEqual(lines[0]!.split(/\s{2,}/), ['SUBNET', 'IPV6 SUBNET', 'PUBLIC IP', 'PUBLIC IPV6', 'NODE', 'BACKEND', 'EXPIRES IN']);
    const rows = lines.slice(1).map((line) => line.split(/\s{2,}/));
    assert.deepEqual(rows[0]!.slice(0, 6), ['10.244.3.0/24', 'fd00:10:244:3::/64', '198.18.0.3', '-', 'node-c', 'udp:8285']);
    assert.deepEqual(rows[1]!.slice(0, 6), ['10.244.20.0/24', 'fd00:10:244:14::/64', '198.18.0.20', 'fd00:198:18::20', 'node-t', 'udp:8285']);
    for (const line of lines.slice(1)) assert.equal(line.indexOf('198.18.'), lines[0]!.indexOf('PUBLIC IP'), line);

    const json = JSON.parse(await cli.ok(['lease', 'list', '--json']));
    assert.deepEqual(
      json.leases.map((l: Record<string, unknown>) => [l['subnet'], l['ipv6Subnet'], l['publicIP'], l['publicIPv6']]),
      [['10.244.3.0/24', 'fd00:10:244:3::/64', '198.18.0.3', null], ['10.244.20.0/24', 'fd00:10:244:14::/64', '198.18.0.20', 'fd00:198:18::20']],
    );
  });

  it('lists no IPv6 column or key under an IPv4-only config', async () => {
    const { cli, store } = await cluster('list-v4', { Network: '10.244.0.0/16' });
    await store.acquireLease({ publicIP: '198.18.0.3', nodeName: 'node-c' });
    assert.deepEqual((await cli.ok(['lease', 'list'])).split('\n')[0]!.split(/\s{2,}/), ['SUBNET', 'PUBLIC IP', 'NODE', 'BACKEND', 'EXPIRES IN']);
    const [lease] = JSON.parse(await cli.ok(['lease', 'list', '--json'])).leases;
    assert.deepEqual(Object.keys(lease), ['subnet', 'publicIP', 'nodeName', 'backendType', 'backendData', 'reserved', 'expiresAt', 'expires', 'expiresInMs']);
  });

  it('shows a lease named by either subnet of its pair', async () => {
    const { cli, store } = await cluster('show');
    await store.acquireLease({ publicIP: '198.18.0.7', publicIPv6: 'fd00:198:18::7', nodeName: 'node-g', previousSubnet: '10.244.7.0/24' });
    for (const name of ['10.244.7.0/24', 'fd00:10:244:7::/64', '10.244.7.0/24,fd00:10:244:7::/64']) {
      const out = await cli.ok(['lease', 'show', name]);
      assert.match(out, /^Subnet:\s+10\.244\.7\.0\/24$/m, name);
      assert.match(out, /^IPv6 subnet:\s+fd00:10:244:7::\/64$/m, name);
      assert.match(out, /^Public IPv6:\s+fd00:198:18::7$/m, name);
    }
    const json = JSON.parse(await cli.ok(['lease', 'show', 'fd00:10:244:7::/64', '--json']));
    assert.deepEqual([json.subnet, json.ipv6Subnet, json.publicIP, json.publicIPv6], ['10.244.7.0/24', 'fd00:10:244:7::/64', '198.18.0.7', 'fd00:198:18::7']);
  });

  it('watches with the IPv6 side in every record', async () => {
    const { cli, store } = await cluster('watch');
    const watch = startCli(['lease', 'list', '--watch', '--json', '--redis-url', cli.url, '--prefix', cli.prefix]);
    try {
      assert.equal(JSON.parse(await watch.nextLine()).type, 'snapshot');
      await store.acquireLease({ publicIP: '198.18.0.2', publicIPv6: 'fd00:198:18::2', nodeName: 'node-b', previousSubnet: '10.244.2.0/24' });
      const added = JSON.parse(await watch.nextLine());
      assert.deepEqual([added.type, added.lease.subnet, added.lease.ipv6Subnet, added.lease.publicIPv6], ['added', '10.244.2.0/24', 'fd00:10:244:2::/64', 'fd00:198:18::2']);
    } finally {
      assert.equal((await watch.stop()).code, 0);
    }
  });
});

describe('lease reserve with IPv6', () => {
  it('reserves by IPv6 subnet and by pair, storing the IPv4 subnet', async () => {
    const { cli, store } = await cluster('reserve');
    const by6 = await cli.ok(['lease', 'reserve', 'fd00:10:244:9::/64', '--public-ip', '198.18.0.9', '--node', 'node-i']);
    assert.equal(by6.trim(), 'reserved 10.244.9.0/24 and fd00:10:244:9::/64 for node-i (198.18.0.9)');
    const byPair = JSON.parse(await cli.ok(['lease', 'reserve', '10.244.10.0/24,fd00:10:244:a::/64', '--public-ip', '198.18.0.10', '--json']));
    assert.deepEqual([byPair.outcome, byPair.lease.subnet, byPair.lease.ipv6Subnet], ['created', '10.244.10.0/24', 'fd00:10:244:a::/64']);
    const { leases } = await store.listLeases();
    assert.deepEqual(leases.map((l) => [l.subnet, l.expiresAt]), [['10.244.9.0/24', null], ['10.244.10.0/24', null]]);
  });

  it('refuses a pair that is not one (exit 2), naming the right pair, and stores nothing', async () => {
    const { cli, store } = await cluster('reserve-bad');
    const result = await cli.run(['lease', 'reserve', '10.244.7.0/24,fd00:10:244:8::/64', '--public-ip', '198.18.0.7']);
    assert.equal(result.code, 2);
    assert.match(oneLineError(result), /10\.244\.7\.0\/24 and fd00:10:244:8::\/64 are not a pair in this network config: 10\.244\.7\.0\/24 pairs with fd00:10:244:7::\/64/);
    const unpaired = await cli.run(['lease', 'reserve', 'fd00:10:244:100::/64', '--public-ip', '198.18.0.7']);
    assert.equal(unpaired.code, 2);
    assert.match(oneLineError(unpaired), /pairs with no subnet of Network 10\.244\.0\.0\/16/);
    assert.deepEqual((await store.listLeases()).leases, []);
  });

  it('revokes a lease named by its IPv6 subnet, or by its pair', async () => {
    const { cli, store } = await cluster('revoke');
    const { lease } = await store.acquireLease({ publicIP: '198.18.0.11', nodeName: 'node-k', previousSubnet: '10.244.11.0/24' });
    assert.equal(lease.subnet, '10.244.11.0/24');
    await store.reserve('10.244.12.0/24', '198.18.0.12');
    assert.match(await cli.ok(['lease', 'revoke', 'fd00:10:244:b::/64', '--yes']), /10\.244\.11\.0\/24.*node-k \(198\.18\.0\.11\)/);
    assert.match(await cli.ok(['lease', 'revoke', '10.244.12.0/24,fd00:10:244:c::/64', '--yes']), /10\.244\.12\.0\/24/);
    assert.deepEqual((await store.listLeases()).leases, []);
  });

  it('refuses an IPv6 subnet under an IPv4-only config (exit 2)', async () => {
    const { cli } = await cluster('reserve-v4', { Network: '10.244.0.0/16' });
    const result = await cli.run(['lease', 'reserve', 'fd00:10:244:9::/64', '--public-ip', '198.18.0.9']);
    assert.equal(result.code, 2);
    assert.match(oneLineError(result), /is IPv6, but the network config has no IPv6Network/);
  });
});

describe('an IPv6-only network', () => {
  const V6ONLY = { EnableIPv4: false, EnableIPv6: true, IPv6Network: 'fd00:10:244::/48' };

  it('config init --ipv6-network alone stores an IPv6-only config, and get shows it', async () => {
    const cli = bindCli(redis, 'init-v6only');
    const out = await cli.ok(['config', 'init', '--ipv6-network', 'fd00:10:244::/48']);
    assert.match(out, /^ {2}EnableIPv4:\s+false \(an IPv6-only network\)$/m);
    assert.deepEqual(JSON.parse(redis.cli('GET', `{${cli.prefix}}:config`)), { EnableIPv4: false, EnableIPv6: true, IPv6Network: 'fd00:10:244::/48', Backend: { Type: 'udp' } });
    assert.deepEqual(Object.keys(JSON.parse(await cli.ok(['config', 'get', '--json']))), ['EnableIPv4', 'EnableIPv6', 'IPv6Network', 'IPv6SubnetLen', 'IPv6SubnetMin', 'IPv6SubnetMax', 'Backend']);
    const neither = await cli.run(['config', 'init']);
    assert.equal(neither.code, 2);
    assert.match(oneLineError(neither), /give --network, --ipv6-network \(an IPv6-only network\), or both/);
  });

  it('hands out IPv6 subnets as lease keys, to nodes with and without a PublicIP, and lists them', async () => {
    const { cli, store } = await cluster('v6only-list', V6ONLY);
    const a = await store.acquireLease({ publicIPv6: '2001:2::a', nodeName: 'node-a', previousSubnet: 'fd00:10:244:a::1/64' });
    const b = await store.acquireLease({ publicIP: '198.18.0.11', publicIPv6: '2001:2::b', nodeName: 'node-b' });
    assert.deepEqual([a.lease.subnet, a.source], ['fd00:10:244:a::/64', 'previous']);
    assert.match(b.lease.subnet, /^fd00:10:244:[0-9a-f]{1,4}::\/64$/);
    const again = await store.acquireLease({ publicIPv6: '2001:2::a', nodeName: 'node-a' });
    assert.deepEqual([again.lease.subnet, again.source], ['fd00:10:244:a::/64', 'existing'], 'a node without PublicIP gets its lease back by its PublicIPv6');
    const lines = (await cli.ok(['lease', 'list'])).trimEnd().split('\n');
    assert.deepEqual(lines[0]!.split(/\s{2,}/), ['SUBNET', 'PUBLIC IP', 'PUBLIC IPV6', 'NODE', 'BACKEND', 'EXPIRES IN']);
    assert.ok(lines.some((line) => /^fd00:10:244:a::\/64\s+-\s+2001:2::a\s+node-a\s/.test(line)), lines.join('\n'));
    const json = JSON.parse(await cli.ok(['lease', 'list', '--json']));
    const listedA = json.leases.find((l: { subnet: string }) => l.subnet === 'fd00:10:244:a::/64');
    assert.deepEqual([listedA.publicIP, listedA.publicIPv6, 'ipv6Subnet' in listedA], [null, '2001:2::a', false]);
    assert.match(await cli.ok(['lease', 'show', 'fd00:10:244:a::/64']), /^Public IP:\s+- \(its node has no IPv4 underlay address\)$/m);
  });

  it('reserves and revokes by IPv6 subnet for an IPv6 owner, and refuses IPv4 subnets (exit 2)', async () => {
    const { cli, store } = await cluster('v6only-reserve', V6ONLY);
    const reserved = await cli.ok(['lease', 'reserve', 'fd00:10:244:9::/64', '--public-ip', '2001:2::9', '--node', 'node-i']);
    assert.equal(reserved.trim(), 'reserved fd00:10:244:9::/64 for node-i (2001:2::9)');
    const { lease } = await store.acquireLease({ publicIPv6: '2001:2::9', nodeName: 'node-i' });
    assert.deepEqual([lease.subnet, lease.expiresAt], ['fd00:10:244:9::/64', null], 'the reserved node claims its reservation');
    const v4 = await cli.run(['lease', 'reserve', '10.244.9.0/24', '--public-ip', '198.18.0.9']);
    assert.equal(v4.code, 2);
    assert.match(oneLineError(v4), /IPv4.*but the network config is IPv6-only/);
    const badIp = await cli.run(['lease', 'reserve', 'fd00:10:244:8::/64', '--public-ip', 'fd00::zz']);
    assert.equal(badIp.code, 2);
    assert.match(oneLineError(badIp), /--public-ip "fd00::zz" is not an IPv4 address/);
    assert.match(await cli.ok(['lease', 'revoke', 'fd00:10:244:9::/64', '--yes']), /fd00:10:244:9::\/64.*node-i \(2001:2::9\)/);
    assert.deepEqual((await store.listLeases()).leases, []);
  });
});
