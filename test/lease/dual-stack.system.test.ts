// Dual stack against a real redis-server: a dual-stack config stored and read
// back, leases whose IPv6 subnets follow from their IPv4 ones, PublicIPv6 in
// the stored record and in the watch through acquire, renewal, re-assertion
// and reservation, and IPv4-only records left byte for byte as they were.

import assert from 'node:assert/strict';
import { once } from 'node:events';
import { after, before, describe, it } from 'node:test';
import {
  ConfigChangeRefusedError,
  ipv6SubnetOf,
  OptionsError,
  OutOfSubnetsError,
  type Lease,
  type SubnetManager,
} from '../../daemon/lease/index.js';
import type { Cidr } from '../../daemon/net/ipv4.js';
import { formatCidr6 } from '../../daemon/net/ipv6.js';
import { startRedis, type RedisServer } from '../../lab/redis.js';
import { EventReader, openStore, uniquePrefix } from './helpers.js';

let server: RedisServer;
const stores: SubnetManager[] = [];

before(async () => {
  server = await startRedis();
});
after(async () => {
  await Promise.all(stores.map((s) => s.close()));
  await server?.stop();
});

const DUAL = { Network: '10.244.0.0/16', EnableIPv6: true, IPv6Network: 'fd00:10:244::/56', Backend: { Type: 'udp' } };

async function configured(name: string, netConf: object): Promise<SubnetManager> {
  const s = await openStore(server.url, { keyPrefix: uniquePrefix(name) });
  stores.push(s);
  await s.setNetworkConfig(JSON.stringify(netConf));
  return s;
}

/** The attributes text stored for `subnet`, exactly as Redis holds it. */
function rawText(s: SubnetManager, subnet: string): string {
  return server.cli('--raw', 'hget', s.keys.leases, subnet).trimEnd();
}

async function pairedSubnet(s: SubnetManager, lease: Lease): Promise<string> {
  return formatCidr6(ipv6SubnetOf(await s.getNetworkConfig(), lease.cidr as Cidr)!);
}

describe('dual-stack config in the store', () => {
  it('stores the config as written and reads it back with the IPv6 defaults', async () => {
    const s = await configured('config', DUAL);
    assert.equal(server.cli('--raw', 'get', s.keys.config).trimEnd(), JSON.stringify(DUAL));
    const config = await s.getNetworkConfig();
    assert.equal(formatCidr6(config.ipv6!.network), 'fd00:10:244::/56');
    assert.equal(config.ipv6!.subnetLen, 64);
  });

  it('turns IPv6 on under leases without --force, but refuses to move or drop it unforced', async () => {
    const s = await configured('guard', { Network: '10.244.0.0/16' });
    await s.acquireLease({ publicIP: '198.18.0.1', nodeName: 'a' });
    const on = await s.setNetworkConfig(JSON.stringify(DUAL));
    assert.deepEqual(on.moved, []);
    assert.equal(on.leases, 1);
    for (const [next, fields] of [
      [{ ...DUAL, IPv6Network: 'fd00:10:245::/56' }, ['IPv6Network']],
      [{ ...DUAL, IPv6SubnetLen: 72, IPv6Network: 'fd00:10:244::/48' }, ['IPv6Network', 'IPv6SubnetLen']],
      [{ Network: '10.244.0.0/16' }, ['EnableIPv6']],
    ] as const) {
      await assert.rejects(s.setNetworkConfig(JSON.stringify(next)), (err: unknown) => {
        assert.ok(err instanceof ConfigChangeRefusedError);
        assert.deepEqual(err.fields, fields);
        assert.match(err.message, /pass --force/);
        return true;
      });
    }
    assert.equal((await s.getNetworkConfig()).ipv6 !== undefined, true, 'nothing was written');
    const off = await s.setNetworkConfig(JSON.stringify({ Network: '10.244.0.0/16' }), { force: true });
    assert.deepEqual(off.moved, ['EnableIPv6']);
  });
});

describe('dual-stack leases', () => {
  it('gives two nodes distinct IPv4 subnets whose IPv6 pairs are distinct, and publishes PublicIPv6', async () => {
    const s = await configured('two', DUAL);
    const reader = new EventReader(s.watchLeases());
    assert.equal((await reader.next()).type, 'snapshot');
    const a = (await s.acquireLease({ publicIP: '198.18.0.1', publicIPv6: 'fd00:198:18::1', nodeName: 'a' })).lease;
    const b = (await s.acquireLease({ publicIP: '198.18.0.2', publicIPv6: 'FD00:198:18:0:0:0:0:2', nodeName: 'b' })).lease;
    assert.notEqual(a.subnet, b.subnet);
    const [a6, b6] = [await pairedSubnet(s, a), await pairedSubnet(s, b)];
    assert.notEqual(a6, b6);
    // The pairing itself: subnet 10.244.k.0/24 goes with fd00:10:244:k::/64 (k in hex).
    for (const [lease, subnet6] of [[a, a6], [b, b6]] as const) {
      const k = Number(lease.subnet.split('.')[2]);
      assert.equal(subnet6, `fd00:10:244:${k.toString(16)}::/64`);
    }
    assert.equal(a.publicIPv6, 'fd00:198:18::1');
    assert.equal(b.publicIPv6, 'fd00:198:18::2', 'stored in RFC 5952 form');
    assert.equal(rawText(s, b.subnet), '{"PublicIP":"198.18.0.2","PublicIPv6":"fd00:198:18::2","NodeName":"b","BackendType":"udp","BackendData":{"Port":8285}}');

    const events = await reader.until((e) => e.type === 'added' && e.lease.subnet === b.subnet);
    const added = events.filter((e) => e.type === 'added').map((e) => (e.type === 'added' ? [e.lease.subnet, e.lease.publicIPv6] : []));
    assert.deepEqual(added, [[a.subnet, 'fd00:198:18::1'], [b.subnet, 'fd00:198:18::2']]);
    await reader.watch.close();

    const later = new EventReader(s.watchLeases());
    const snapshot = await later.next();
    assert.ok(snapshot.type === 'snapshot');
    assert.deepEqual(snapshot.leases.map((l) => l.publicIPv6).sort(), ['fd00:198:18::1', 'fd00:198:18::2']);
    await later.watch.close();
    const listed = (await s.listLeases()).leases.find((l) => l.subnet === a.subnet)!;
    assert.equal(listed.publicIPv6, 'fd00:198:18::1');
  });

  it('keeps an IPv4-only record byte for byte as before, under an IPv4-only and a dual-stack config', async () => {
    for (const netConf of [{ Network: '10.244.0.0/16' }, DUAL]) {
      const s = await configured('v4-bytes', netConf);
      const { lease } = await s.acquireLease({ publicIP: '198.18.0.4', nodeName: 'node-d' });
      const text = '{"PublicIP":"198.18.0.4","NodeName":"node-d","BackendType":"udp","BackendData":{"Port":8285}}';
      assert.equal(rawText(s, lease.subnet), text);
      assert.equal('publicIPv6' in lease, false);
      await s.renewLease(lease);
      assert.equal(rawText(s, lease.subnet), text, 'a renewal writes the same text');
    }
  });

  it('carries PublicIPv6 through renewal, a restart of the node, a change of address, and a re-assertion', async () => {
    const s = await configured('carry', DUAL);
    const first = (await s.acquireLease({ publicIP: '198.18.0.5', publicIPv6: 'fd00:198:18::5', nodeName: 'e' })).lease;
    const text = rawText(s, first.subnet);
    assert.match(text, /"PublicIPv6":"fd00:198:18::5"/);
    const renewed = await s.renewLease(first);
    assert.equal(renewed.publicIPv6, 'fd00:198:18::5');
    assert.equal(rawText(s, first.subnet), text);

    const restarted = await s.acquireLease({ publicIP: '198.18.0.5', publicIPv6: 'fd00:198:18::55', nodeName: 'e' });
    assert.equal(restarted.source, 'existing');
    assert.equal(restarted.lease.subnet, first.subnet);
    assert.match(rawText(s, first.subnet), /"PublicIPv6":"fd00:198:18::55"/, 'the new address replaced the old');

    const keeper = s.keepLease(restarted.lease, { renewMarginMs: 1_000 });
    try {
      server.cli('hdel', s.keys.leases, first.subnet);
      const restored = once(keeper, 'restored');
      keeper.reassert('test: the record is gone');
      const [lease] = (await restored) as [Lease];
      assert.equal(lease.publicIPv6, 'fd00:198:18::55');
      assert.match(rawText(s, first.subnet), /^\{"PublicIP":"198\.18\.0\.5","PublicIPv6":"fd00:198:18::55","NodeName":"e",/);
    } finally {
      keeper.stop();
    }
  });

  it('refuses a PublicIPv6 that is not an IPv6 address, naming the option', async () => {
    const s = await configured('bad-ipv6', DUAL);
    await assert.rejects(s.acquireLease({ publicIP: '198.18.0.6', publicIPv6: '198.18.0.6', nodeName: 'f' }), (err: unknown) => {
      assert.ok(err instanceof OptionsError);
      assert.equal(err.option, 'publicIPv6');
      assert.match(err.message, /^publicIPv6: "198\.18\.0\.6" is not an IPv6 address/);
      return true;
    });
  });

  it('names the node of a reservation whose record holds a PublicIPv6', async () => {
    const s = await configured('rename', DUAL);
    const { lease } = await s.acquireLease({ publicIP: '198.18.0.7', publicIPv6: 'fd00:198:18::7', nodeName: 'g' });
    const converted = await s.reserve(lease.subnet, '198.18.0.7', 'node-g');
    assert.equal(converted.outcome, 'converted');
    assert.equal(converted.lease.nodeName, 'node-g');
    assert.equal(converted.lease.publicIPv6, 'fd00:198:18::7');
    assert.equal(rawText(s, lease.subnet), '{"PublicIP":"198.18.0.7","PublicIPv6":"fd00:198:18::7","NodeName":"node-g","BackendType":"udp","BackendData":{"Port":8285}}');
    const again = await s.reserve(lease.subnet, '198.18.0.7', 'node-g2');
    assert.equal(again.outcome, 'updated');
    assert.match(rawText(s, lease.subnet), /"PublicIPv6":"fd00:198:18::7","NodeName":"node-g2"/);
  });

  it('allocates only subnets whose pair lies in IPv6SubnetMin..IPv6SubnetMax, and says so when they run out', async () => {
    const s = await configured('narrow', { ...DUAL, IPv6SubnetMin: 'fd00:10:244:80::', IPv6SubnetMax: 'fd00:10:244:81::' });
    const subnets = [];
    for (const n of [1, 2]) subnets.push((await s.acquireLease({ publicIP: `198.18.0.${n}`, nodeName: `n${n}` })).lease.subnet);
    assert.deepEqual(subnets.sort(), ['10.244.128.0/24', '10.244.129.0/24']);
    await assert.rejects(s.acquireLease({ publicIP: '198.18.0.3', nodeName: 'n3' }), (err: unknown) => {
      assert.ok(err instanceof OutOfSubnetsError);
      assert.match(err.message, /all 2 subnets .*IPv6SubnetMin fd00:10:244:80:: to IPv6SubnetMax fd00:10:244:81::/);
      return true;
    });
  });

  it('releases a lease whose pair falls outside a narrowed IPv6 range, but keeps a reservation there', async () => {
    const s = await configured('misfit', DUAL);
    const held = (await s.acquireLease({ publicIP: '198.18.0.8', nodeName: 'h', previousSubnet: '10.244.5.0/24' })).lease;
    assert.equal(held.subnet, '10.244.5.0/24');
    await s.reserve('10.244.6.0/24', '198.18.0.9');
    await s.setNetworkConfig(JSON.stringify({ ...DUAL, IPv6SubnetMin: 'fd00:10:244:10::' }));
    const again = await s.acquireLease({ publicIP: '198.18.0.8', nodeName: 'h' });
    assert.equal(again.source, 'new');
    assert.ok(Number(again.lease.subnet.split('.')[2]) >= 16, again.lease.subnet);
    const reserved = await s.acquireLease({ publicIP: '198.18.0.9', nodeName: 'i' });
    assert.deepEqual([reserved.source, reserved.lease.subnet], ['reservation', '10.244.6.0/24']);
  });
});
