// From lease events to peer-table changes, in memory: one table write per
// event whatever the size of the cluster, a forgotten peer kept for the
// grace period, this node's own lease handed to the keeper, and each peer's
// paired IPv6 subnet when the network is dual-stack.
import assert from 'node:assert/strict';
import { describe, it, mock } from 'node:test';
import type { Peer } from '../../daemon/dataplane/index.js';
import { formatSubnet, parseNetworkConfig, type Lease, type NetworkConfig, type WatchEvent } from '../../daemon/lease/index.js';
import { formatCidr, parseCidr, type Cidr } from '../../daemon/net/ipv4.js';
import { formatCidr6, nthSubnet6, parseCidr6, type Cidr6 } from '../../daemon/net/ipv6.js';
import { backendDataFor, PeerFeed, peerFromLease, sealerIdOf, type PeerSink } from '../../daemon/node/peers.js';
import { formatEndpoint } from '../../daemon/transport/index.js';
import { silentLogger } from '../lease/helpers.js';

const OWN = { subnet: '10.244.1.0/24', ip: '198.18.0.1' };
const GRACE_MS = 60_000;
const IPV4_ONLY = parseNetworkConfig({ Network: '10.244.0.0/16' });
const DUAL_STACK = parseNetworkConfig({ Network: '10.244.0.0/16', EnableIPv6: true, IPv6Network: 'fd00:10:244::/48' });

function lease(third: number, ip = `198.18.1.${third}`, port = 8285): Lease {
  const subnet = `10.244.${third}.0/24`;
  return { subnet, cidr: parseCidr(subnet), publicIP: ip, nodeName: `n${third}`, backendType: 'udp', backendData: { Port: port }, expiresAt: 1 };
}

/** A sink that records every call, as the data plane's table would receive them. */
class RecordingSink implements PeerSink {
  readonly table = new Map<string, string>();
  readonly calls: string[] = [];
  /** The IPv6 subnet each peer routes, by its IPv4 subnet. */
  readonly subnets6 = new Map<string, string>();

  setPeer(peer: Peer): void {
    const key = formatSubnet(peer.subnet ?? peer.subnet6!);
    this.calls.push(`set ${key}`);
    if (peer.subnet6) this.subnets6.set(key, formatCidr6(peer.subnet6));
    this.table.set(key, `${peer.endpoint.address}:${peer.endpoint.port}`);
  }

  removePeer(subnet: Cidr | Cidr6): boolean {
    this.calls.push(`remove ${formatSubnet(subnet)}`);
    return this.table.delete(formatSubnet(subnet));
  }
}

function feed(network: NetworkConfig = IPV4_ONLY) {
  const sink = new RecordingSink();
  const doubts: string[] = [];
  const hooks = { ready: 0, resets: 0, configs: 0 };
  const f = new PeerFeed({
    ownSubnet: OWN.subnet,
    ownOwner: OWN.ip,
    network,
    underlay: 4,
    graceMs: GRACE_MS,
    logger: silentLogger(),
    sink,
    onReady: () => hooks.ready++,
    onOwnLeaseInDoubt: (reason) => doubts.push(reason),
    onStoreReset: () => hooks.resets++,
    onConfigChanged: () => hooks.configs++,
  });
  const own: Lease = { ...lease(1, OWN.ip) };
  const snapshot = (leases: Lease[], cause: 'start' | 'gap' | 'reset' = 'start'): WatchEvent => ({ type: 'snapshot', leases: [own, ...leases], seq: '1-0', cause });
  return { f, sink, doubts, hooks, own, snapshot };
}

describe('peer feed', () => {
  it('turns each event into one table write, whatever the number of peers', () => {
    const { f, sink, hooks, snapshot } = feed();
    const many = Array.from({ length: 2_000 }, (_, i) => lease(2 + (i % 250), `198.18.${2 + Math.floor(i / 250)}.${(i % 250) + 1}`));
    const unique = [...new Map(many.map((l) => [l.subnet, l])).values()];
    f.handle(snapshot(unique));
    assert.equal(hooks.ready, 1);
    assert.equal(sink.table.size, unique.length);
    sink.calls.length = 0;
    f.handle({ type: 'added', lease: lease(253, '198.18.9.9'), seq: '2-0' });
    f.handle({ type: 'removed', lease: unique[0]!, seq: '3-0' });
    f.handle({ type: 'added', lease: lease(7, '198.18.9.7', 9000), seq: '4-0' }); // moved to a new endpoint
    f.handle({ type: 'added', lease: lease(7, '198.18.9.7', 9000), seq: '5-0' }); // the same again: nothing to do
    assert.deepEqual(sink.calls, ['set 10.244.253.0/24', `remove ${unique[0]!.subnet}`, 'set 10.244.7.0/24']);
    assert.equal(sink.table.get('10.244.7.0/24'), '198.18.9.7:9000');
  });

  it('keeps peers the store forgot for the grace period, and drops those that were not re-asserted', () => {
    mock.timers.enable({ apis: ['setTimeout', 'Date'], now: 1_000_000 });
    try {
      const { f, sink, hooks, snapshot } = feed();
      f.handle(snapshot([lease(2), lease(3), lease(4)]));
      f.handle({ type: 'reset', epoch: null });
      assert.equal(hooks.resets, 1);
      assert.equal(sink.table.size, 3, 'nothing dropped when the store loses its data');
      assert.equal(f.unconfirmedCount, 3);
      f.handle({ type: 'added', lease: lease(2), seq: '1-0' }); // node 2 re-asserts
      f.handle({ type: 'expired', lease: lease(3), seq: '2-0' }); // the store says 3 expired: gone at once
      assert.deepEqual([...sink.table.keys()].sort(), ['10.244.2.0/24', '10.244.4.0/24']);
      assert.equal(f.unconfirmedCount, 1);
      mock.timers.tick(GRACE_MS - 1);
      assert.ok(sink.table.has('10.244.4.0/24'), 'kept until the grace period is over');
      mock.timers.tick(1);
      assert.deepEqual([...sink.table.keys()], ['10.244.2.0/24'], 'dropped: node 4 never re-asserted');
      assert.equal(f.unconfirmedCount, 0);
      assert.equal(f.view().find((p) => p.subnet === '10.244.2.0/24')?.unconfirmedSince, undefined);
    } finally {
      mock.timers.reset();
    }
  });

  it('after a gap, keeps a peer missing from the new listing for the grace period too, and takes the listing\'s changes at once', () => {
    mock.timers.enable({ apis: ['setTimeout', 'Date'], now: 0 });
    try {
      const { f, sink, snapshot } = feed();
      f.handle(snapshot([lease(2), lease(3)]));
      f.handle(snapshot([lease(2, '198.18.7.2'), lease(5)], 'gap'));
      assert.equal(sink.table.get('10.244.2.0/24'), '198.18.7.2:8285', 'moved at once');
      assert.ok(sink.table.has('10.244.5.0/24'), 'added at once');
      assert.ok(sink.table.has('10.244.3.0/24'), 'absent from the listing: kept for now');
      assert.equal(f.view().find((p) => p.subnet === '10.244.3.0/24')?.unconfirmedSince, 0);
      mock.timers.tick(GRACE_MS);
      assert.ok(!sink.table.has('10.244.3.0/24'));
    } finally {
      mock.timers.reset();
    }
  });

  it('hands this node\'s own lease to the keeper when it goes, is missing, or another node names its subnet; its own echo is nothing', () => {
    const { f, doubts, own, snapshot } = feed();
    f.handle(snapshot([lease(2)]));
    f.handle({ type: 'added', lease: own, seq: '2-0' });
    assert.deepEqual(doubts, []);
    f.handle({ type: 'removed', lease: own, seq: '3-0' });
    f.handle({ type: 'expired', lease: own, seq: '4-0' });
    f.handle({ type: 'added', lease: { ...own, publicIP: '198.18.0.66' }, seq: '5-0' });
    f.handle({ type: 'snapshot', leases: [lease(2)], seq: '6-0', cause: 'gap' });
    assert.deepEqual(doubts, ['the lease was removed', 'the lease was expired', 'the subnet now belongs to 198.18.0.66', 'the lease is missing from the store']);
  });

  it('skips a lease that is no peer (another backend, a bad port), and drops the peer it replaces', () => {
    const { f, sink, snapshot } = feed();
    f.handle(snapshot([lease(2)]));
    f.handle({ type: 'added', lease: { ...lease(3), backendType: 'vxlan' }, seq: '2-0' });
    f.handle({ type: 'added', lease: lease(2, '198.18.1.2', 70_000), seq: '3-0' });
    assert.deepEqual([...sink.table.keys()], []);
    assert.deepEqual(f.skippedLeases(), [
      { subnet: '10.244.3.0/24', node: 'n3', reason: 'backend vxlan is not udp' },
      { subnet: '10.244.2.0/24', node: 'n2', reason: 'port 70000 is invalid' },
    ]);
  });

  it('counts the leases in the store as last seen, its own included, and lists the skipped ones until they are fixed or gone', () => {
    const { f, snapshot } = feed();
    assert.equal(f.leaseCount, undefined, 'nothing seen before the first listing');
    f.handle(snapshot([lease(2), { ...lease(3), backendType: 'vxlan' }, lease(4)]));
    assert.equal(f.leaseCount, 4);
    assert.deepEqual(f.skippedLeases().map((s) => s.subnet), ['10.244.3.0/24']);
    f.handle({ type: 'added', lease: lease(5), seq: '2-0' });
    f.handle({ type: 'added', lease: lease(2), seq: '3-0' });
    assert.equal(f.leaseCount, 5, 'a lease seen again is not counted twice');
    f.handle({ type: 'removed', lease: lease(4), seq: '4-0' });
    assert.equal(f.leaseCount, 4);
    f.handle({ type: 'added', lease: lease(3), seq: '5-0' });
    assert.deepEqual(f.skippedLeases(), [], 'fixed: a peer now');
    f.handle({ type: 'added', lease: { ...lease(6), backendType: 'vxlan' }, seq: '6-0' });
    f.handle({ type: 'expired', lease: lease(6), seq: '7-0' });
    assert.deepEqual(f.skippedLeases(), [], 'gone from the store');
    f.handle(snapshot([lease(2), { ...lease(7), backendType: 'vxlan' }], 'gap'));
    assert.equal(f.leaseCount, 3, 'a listing replaces the count');
    assert.deepEqual(f.skippedLeases().map((s) => s.subnet), ['10.244.7.0/24']);
  });

  it('with IPv6 enabled, each peer also routes the IPv6 subnet paired with its IPv4 one, and /status shows it', () => {
    const { f, sink, snapshot } = feed(DUAL_STACK);
    f.handle(snapshot([lease(2), lease(10)]));
    f.handle({ type: 'added', lease: lease(255), seq: '2-0' });
    assert.deepEqual(Object.fromEntries(sink.subnets6), {
      '10.244.2.0/24': 'fd00:10:244:2::/64',
      '10.244.10.0/24': 'fd00:10:244:a::/64',
      '10.244.255.0/24': 'fd00:10:244:ff::/64',
    });
    assert.deepEqual(
      f.view().map((v) => [v.subnet, v.ipv6Subnet]),
      [
        ['10.244.2.0/24', 'fd00:10:244:2::/64'],
        ['10.244.10.0/24', 'fd00:10:244:a::/64'],
        ['10.244.255.0/24', 'fd00:10:244:ff::/64'],
      ],
    );
  });

  it('IPv4 only: peers carry no IPv6 subnet, and /status shows none', () => {
    const { f, sink, snapshot } = feed();
    f.handle(snapshot([lease(2)]));
    assert.equal(sink.table.size, 1);
    assert.equal(sink.subnets6.size, 0);
    assert.equal('ipv6Subnet' in f.view()[0]!, false);
  });

  it('a lease outside the Network (left from before a forced change) keeps its IPv4 route but has no IPv6 pair', () => {
    const stray: Lease = { ...lease(2), subnet: '10.99.2.0/24', cidr: parseCidr('10.99.2.0/24') };
    const peer = peerFromLease(stray, DUAL_STACK);
    assert.ok(typeof peer !== 'string');
    assert.equal(formatCidr(peer.subnet!), '10.99.2.0/24');
    assert.equal(peer.subnet6, undefined);
  });

  it('refuses a lease whose subnet length is not the network config\'s SubnetLen, and takes the default port from it', () => {
    assert.equal(peerFromLease({ ...lease(2), cidr: parseCidr('10.244.2.0/25') }, IPV4_ONLY), 'subnet is not a /24');
    const portless = peerFromLease({ ...lease(2), backendData: {} }, parseNetworkConfig({ Network: '10.244.0.0/16', Backend: { Type: 'udp', Port: 9000 } }));
    assert.ok(typeof portless !== 'string');
    assert.equal(portless.endpoint.port, 9000);
  });

  it('over an IPv6 underlay, sends to the lease\'s PublicIPv6, and skips a node that publishes none', () => {
    const peer = peerFromLease({ ...lease(2), publicIPv6: '2001:2::2' }, DUAL_STACK, 6);
    assert.ok(typeof peer !== 'string');
    assert.equal(formatEndpoint(peer.endpoint), '[2001:2::2]:8285');
    assert.match(String(peerFromLease(lease(3), DUAL_STACK, 6)), /publishes no PublicIPv6, and this node sends over an IPv6 underlay/);
    const v4 = peerFromLease({ ...lease(2), publicIPv6: '2001:2::2' }, DUAL_STACK, 4);
    assert.ok(typeof v4 !== 'string');
    assert.equal(formatEndpoint(v4.endpoint), '198.18.1.2:8285', 'an IPv4 underlay ignores PublicIPv6');
  });

  it('passes config changes on', () => {
    const { f, hooks, snapshot } = feed();
    f.handle(snapshot([]));
    f.handle({ type: 'config' });
    assert.equal(hooks.configs, 1);
  });
});

describe('peers of an IPv6-only network', () => {
  const IPV6_ONLY = parseNetworkConfig({ EnableIPv4: false, EnableIPv6: true, IPv6Network: 'fd00:10:244::/48' });
  const lease6 = (n: number, attrs: Partial<Lease> = {}): Lease => {
    const subnet = `fd00:10:244:${n.toString(16)}::/64`;
    return { subnet, cidr: parseCidr6(subnet), publicIPv6: `2001:db8::${n.toString(16)}`, nodeName: `n${n}`, backendType: 'udp', backendData: { Port: 8285 }, expiresAt: 1, ...attrs };
  };

  /** A feed for the node on fd00:10:244:1::/64 of an IPv6-only network, over an IPv6 underlay: the feed, what it set and removed, and its doubts. */
  const feed6 = (options: { network?: NetworkConfig; ownSealerId?: number } = {}) => {
    const sink = new RecordingSink();
    const doubts: string[] = [];
    const own = lease6(1);
    const f = new PeerFeed({
      ownSubnet: own.subnet,
      ownOwner: '2001:db8::1',
      ...(options.ownSealerId === undefined ? {} : { ownSealerId: options.ownSealerId }),
      network: options.network ?? IPV6_ONLY,
      underlay: 6,
      graceMs: GRACE_MS,
      logger: silentLogger(),
      sink,
      onReady: () => undefined,
      onOwnLeaseInDoubt: (reason) => doubts.push(reason),
      onStoreReset: () => undefined,
      onConfigChanged: () => undefined,
    });
    return { f, sink, doubts, own };
  };

  it('a lease keyed by its IPv6 subnet is a peer with that subnet alone, reached at its PublicIPv6 over an IPv6 underlay', () => {
    const peer = peerFromLease(lease6(0x12), IPV6_ONLY, 6);
    assert.ok(typeof peer !== 'string', String(peer));
    assert.equal(peer.subnet, undefined);
    assert.equal(formatCidr6(peer.subnet6!), 'fd00:10:244:12::/64');
    assert.equal(formatEndpoint(peer.endpoint), '[2001:db8::12]:8285');
  });

  it('over an IPv4 underlay it needs a PublicIP, and an IPv4-keyed lease is no peer here', () => {
    assert.match(String(peerFromLease(lease6(2), IPV6_ONLY, 4)), /publishes no PublicIP, and this node sends over an IPv4 underlay/);
    const viaIPv4 = peerFromLease(lease6(2, { publicIP: '198.18.0.2' }), IPV6_ONLY, 4);
    assert.ok(typeof viaIPv4 !== 'string');
    assert.equal(formatEndpoint(viaIPv4.endpoint), '198.18.0.2:8285');
    assert.match(String(peerFromLease(lease(2), IPV6_ONLY, 6)), /subnet is IPv4, which the network config does not carry/);
    assert.equal(peerFromLease(lease6(2, { cidr: parseCidr6('fd00:10:244:2::/80') }), IPV6_ONLY, 6), 'subnet is not a /64');
  });

  it('tells nodes apart in seal nonces by PublicIP, else by the low 24 bits of their subnet number, inside 0.0.0.0/8', () => {
    assert.equal(sealerIdOf({ publicIP: '198.18.0.2', cidr: parseCidr6('fd00:10:244:2::/64') }), 0xc6120002);
    assert.equal(sealerIdOf({ cidr: parseCidr('10.244.7.0/24') }), 0x0af407);
    assert.equal(sealerIdOf({ cidr: parseCidr6('fd00:10:244:12::/64') }), 0x440012);
    // A /48 subnet: its number is the address's bits 16..48, across two words.
    assert.equal(sealerIdOf({ cidr: parseCidr6('fd00:abcd:1234::/48') }), 0xcd1234);
    assert.equal(sealerIdOf({ cidr: parseCidr6('fd00:10:244:0:0:0:0:1c/126') }), 0x7);
    // Deep in a wide network, across the 2^24 boundary of the numbers: still distinct, still below 2^24.
    const deep = Array.from({ length: 1000 }, (_, k) => sealerIdOf({ cidr: nthSubnet6(parseCidr6('fd00::/16'), 64, 2 ** 40 - 500 + k) }));
    assert.equal(new Set(deep).size, 1000, 'distinct for distinct subnets');
    assert.ok(deep.every((id) => id < 2 ** 24), 'inside 0.0.0.0/8, where no PublicIP is');
  });

  it('with a cluster key, leaves out a peer whose sender ID is this node\'s or another peer\'s', () => {
    const { f, sink, own } = feed6({ network: parseNetworkConfig({ EnableIPv4: false, EnableIPv6: true, IPv6Network: 'fd00::/16' }), ownSealerId: sealerIdOf(lease6(1)) });
    // Subnets 2^24 apart share the low 24 bits of their numbers.
    const at = (subnet: string, n: number): Lease => ({ ...lease6(n), subnet, cidr: parseCidr6(subnet) });
    const twinOfOwn = at('fd00:10:344:1::/64', 7);
    const first = at('fd00:10:244:2::/64', 2);
    const twinOfFirst = at('fd00:10:344:2::/64', 3);
    f.handle({ type: 'snapshot', cause: 'start', leases: [own, first, twinOfOwn, twinOfFirst], seq: '1-0' } as WatchEvent);
    assert.deepEqual([...sink.table.keys()], ['fd00:10:244:2::/64']);
    f.handle({ type: 'removed', lease: first, seq: '2-0' } as WatchEvent);
    f.handle({ type: 'added', lease: twinOfFirst, seq: '3-0' } as WatchEvent);
    assert.deepEqual([...sink.table.keys()], ['fd00:10:344:2::/64'], 'its ID is free once the other peer is gone');
    f.stop();
  });

  it('sets a peer again when its sender ID changes, though its endpoint stays the same', () => {
    const { f, sink, own } = feed6();
    f.handle({ type: 'snapshot', cause: 'start', leases: [own, lease6(2)], seq: '1-0' } as WatchEvent);
    f.handle({ type: 'added', lease: lease6(2), seq: '2-0' } as WatchEvent);
    assert.deepEqual(sink.calls, ['set fd00:10:244:2::/64'], 'the same lease again changes nothing');
    // The lease gains a PublicIP: its seals now name that, so ingress must open them with it.
    f.handle({ type: 'added', lease: lease6(2, { publicIP: '198.18.0.2' }), seq: '3-0' } as WatchEvent);
    assert.deepEqual(sink.calls, ['set fd00:10:244:2::/64', 'set fd00:10:244:2::/64']);
    f.stop();
  });

  it('follows its own lease by the PublicIPv6 it belongs to', () => {
    const { f, sink, doubts, own } = feed6();
    f.handle({ type: 'snapshot', cause: 'start', leases: [own, lease6(2)], seq: '1-0' } as WatchEvent);
    assert.deepEqual([...sink.table], [['fd00:10:244:2::/64', '2001:db8::2:8285']]);
    assert.deepEqual(doubts, []);
    f.handle({ type: 'added', lease: { ...own, publicIPv6: '2001:db8::99' }, seq: '2-0' } as WatchEvent);
    assert.match(doubts[0] ?? '', /the subnet now belongs to 2001:db8::99/);
    f.handle({ type: 'removed', lease: lease6(2), seq: '3-0' } as WatchEvent);
    assert.deepEqual(sink.calls.at(-1), 'remove fd00:10:244:2::/64');
    f.stop();
  });
});

describe('which underlay family a peer is reached over', () => {
  const DUAL = parseNetworkConfig({ Network: '10.244.0.0/16', EnableIPv6: true, IPv6Network: 'fd00:10:244::/48' });
  type Mode = 4 | 6 | 'dual';
  /** A peer publishing `publicIP`/`publicIPv6` and listening on `underlay`, its BackendData as backendDataFor writes it. */
  const peer = (addresses: Partial<Pick<Lease, 'publicIP' | 'publicIPv6'>>, underlay: Mode = 4): Lease => ({
    subnet: '10.244.2.0/24',
    cidr: parseCidr('10.244.2.0/24'),
    ...addresses,
    nodeName: 'n2',
    backendType: 'udp',
    backendData: backendDataFor(8285, underlay, addresses.publicIPv6 !== undefined) ?? { Port: 8285 },
    expiresAt: 1,
  });
  /** The same peer's lease as nodes wrote it before the Underlay marker. */
  const unmarked = (lease: Lease): Lease => ({ ...lease, backendData: { Port: 8285 } });
  const reached = (lease: Lease, underlay: Mode) => {
    const p = peerFromLease(lease, DUAL, underlay);
    return typeof p === 'string' ? p : formatEndpoint(p.endpoint);
  };
  const both = { publicIP: '198.18.0.2', publicIPv6: '2001:2::2' };
  const v4Only = { publicIP: '198.18.0.2' };
  const v6Only = { publicIPv6: '2001:2::2' };

  it('publishes which underlay it listens on whenever a peer could guess wrong, and a plain IPv4 node keeps flannel\'s record', () => {
    assert.equal(backendDataFor(8285, 4, false), undefined);
    assert.deepEqual(backendDataFor(8285, 4, true), { Port: 8285, Underlay: 'ipv4' }, 'it publishes a PublicIPv6 it does not listen on');
    assert.deepEqual(backendDataFor(8285, 6, true), { Port: 8285, Underlay: 'ipv6' });
    assert.deepEqual(backendDataFor(9000, 'dual', true), { Port: 9000, Underlay: 'dual' });
  });

  it('a dual node reaches a peer over IPv4 when both listen on it, else over IPv6', () => {
    assert.equal(reached(peer(both, 'dual'), 'dual'), '198.18.0.2:8285');
    assert.equal(reached(peer(both, 4), 'dual'), '198.18.0.2:8285');
    assert.equal(reached(peer(v4Only, 4), 'dual'), '198.18.0.2:8285');
    assert.equal(reached(peer(both, 6), 'dual'), '[2001:2::2]:8285', 'a peer on IPv6 alone, though it publishes a PublicIP');
    assert.equal(reached(peer(v6Only, 6), 'dual'), '[2001:2::2]:8285');
    assert.equal(reached(peer(v6Only, 'dual'), 'dual'), '[2001:2::2]:8285', 'no PublicIP to reach');
    assert.equal(reached(unmarked(peer(v6Only, 6)), 'dual'), '[2001:2::2]:8285', 'a lease from before the marker without a PublicIP can only be on IPv6');
  });

  it('makes the same choice from both ends, or both leave the other out', () => {
    const family = (endpoint: string) => (endpoint.startsWith('[') ? 6 : /^\d+\.\d+\.\d+\.\d+:\d+$/.test(endpoint) ? 4 : 'none');
    const nodes: Array<{ underlay: Mode; addresses: Partial<Pick<Lease, 'publicIP' | 'publicIPv6'>> }> = [
      { underlay: 4, addresses: v4Only },
      { underlay: 4, addresses: both },
      { underlay: 6, addresses: both },
      { underlay: 6, addresses: v6Only },
      { underlay: 'dual', addresses: both },
    ];
    let none = 0;
    for (const a of nodes) {
      for (const b of nodes) {
        const aToB = reached(peer(b.addresses, b.underlay), a.underlay);
        const bToA = reached(peer(a.addresses, a.underlay), b.underlay);
        assert.equal(family(aToB), family(bToA), `${JSON.stringify(a)} and ${JSON.stringify(b)}: ${aToB} / ${bToA}`);
        if (family(aToB) === 'none') none++;
      }
    }
    assert.equal(none, 8, 'the two IPv4 nodes and the two IPv6 nodes share no family, each pair both ways');
  });

  it('skips a peer that shares no family with this node, saying why', () => {
    assert.match(reached(peer(v4Only, 4), 6), /publishes no PublicIPv6, and this node sends over an IPv6 underlay/);
    assert.match(reached(peer(v6Only, 6), 4), /publishes no PublicIP, and this node sends over an IPv4 underlay/);
    assert.match(reached(peer(both, 6), 4), /^it shares no underlay family with this node \(--underlay ipv4\): it listens on IPv6 and publishes a PublicIP and a PublicIPv6$/);
    assert.match(reached(peer(both, 4), 6), /^it shares no underlay family with this node \(--underlay ipv6\): it listens on IPv4 and publishes a PublicIP and a PublicIPv6$/);
    assert.match(reached({ ...peer(both), backendData: { Port: 8285, Underlay: 'carrier-pigeon' } }, 'dual'), /BackendData.Underlay "carrier-pigeon" is not "ipv4", "ipv6" or "dual"/);
    assert.match(reached({ ...peer(both), backendData: { Port: 8285, Underlay: 'toString' } }, 'dual'), /BackendData.Underlay "toString" is not/);
  });

  it('a node on IPv6 alone still reaches a lease from before the marker at its PublicIPv6, as it did then', () => {
    assert.equal(reached(unmarked(peer(both, 6)), 6), '[2001:2::2]:8285');
  });
});

