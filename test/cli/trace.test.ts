// The hops of `miniflannel trace` from fabricated store contents and
// daemon documents: a healthy pair, and each way the path breaks. Also the
// command's refusals of bad arguments, which come before it reads anything.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { parseNetworkConfig, type Lease } from '../../daemon/lease/index.js';
import { parseCidr } from '../../daemon/net/ipv4.js';
import type { PeerView } from '../../daemon/node/peers.js';
import type { StatusDocument } from '../../daemon/node/status.js';
import { emptyCounters } from '../../daemon/dataplane/index.js';
import { statusUrl, type NodeLook } from '../../cli/cluster/survey.js';
import { HOPS, locate, nodesToAsk, parsePodAddress, tracePath, type Hop, type HopName } from '../../cli/cluster/trace.js';
import { oneLineError, runCli } from './helpers.js';

const NOW = Date.parse('2026-12-02T12:00:00Z');
const CONFIG = parseNetworkConfig({ Network: '10.244.0.0/16', EnableIPv6: true, IPv6Network: 'fd00:10:244::/56' });

/** Node k: 10.244.k.0/24 paired with fd00:10:244:k::/64, at 198.18.0.k. */
function leaseOf(k: number): Lease {
  return { subnet: `10.244.${k}.0/24`, cidr: parseCidr(`10.244.${k}.0/24`), publicIP: `198.18.0.${k}`, nodeName: `node-${k}`, backendType: 'udp', backendData: { Port: 8285 }, expiresAt: NOW + 3_600_000 };
}
const A = leaseOf(1);
const B = leaseOf(2);
const LEASES = [A, B, leaseOf(3)];

/** Node k as a peer, with traffic. */
function peerOf(k: number, overrides: Partial<PeerView> = {}): PeerView {
  return {
    subnet: `10.244.${k}.0/24`,
    ipv6Subnet: `fd00:10:244:${k}::/64`,
    endpoint: `198.18.0.${k}:8285`,
    node: `node-${k}`,
    traffic: { packetsSent: 7, bytesSent: 686, packetsReceived: 5, bytesReceived: 490, drops: 0, lastReceivedAt: NOW - 3_000 },
    ...overrides,
  };
}

/** Node k's daemon, running, with the other two nodes as peers. */
function statusOf(k: number, overrides: Partial<StatusDocument> = {}): StatusDocument {
  return {
    version: '0.2.0',
    state: 'running',
    node: {
      name: `node-${k}`, publicIP: `198.18.0.${k}`, iface: 'eth0', tun: 'flannel0', mtu: 1472, port: 8285,
      subnet: `10.244.${k}.0/24`, network: '10.244.0.0/16', ipv6Subnet: `fd00:10:244:${k}::/64`, ipv6Network: 'fd00:10:244::/56',
      routes: ['10.244.0.0/16', 'fd00:10:244::/56'],
    },
    lease: { subnet: `10.244.${k}.0/24`, publicIP: `198.18.0.${k}`, nodeName: `node-${k}`, expiresAt: NOW + 3_600_000 },
    store: { address: 'redis://198.18.0.254:6379', connected: true, resets: 0, leaseRestored: 0, resyncs: 0, leases: 3 },
    peers: [1, 2, 3].filter((n) => n !== k).map((n) => peerOf(n)),
    skippedLeases: [],
    counters: emptyCounters(),
    uptimeSeconds: 60,
    ...overrides,
  };
}

const look = (lease: Lease, status: StatusDocument | undefined, error?: string): NodeLook => ({
  lease,
  url: statusUrl(lease, 8286),
  ...(status ? { status } : {}),
  ...(error !== undefined ? { error } : {}),
});

const HEALTHY = [look(A, statusOf(1)), look(B, statusOf(2))];

function trace(src: string, dst: string, looks: readonly NodeLook[] = HEALTHY): Hop[] {
  const source = parsePodAddress(src)!;
  const destination = parsePodAddress(dst)!;
  const ends = locate(CONFIG, LEASES, source, destination);
  return tracePath({ config: CONFIG, src: source, dst: destination, ends, looks: looks.filter((l) => nodesToAsk(ends).includes(l.lease)), now: NOW });
}

function hopOf(hops: readonly Hop[], name: HopName): Hop {
  const hop = hops.find((h) => h.hop === name);
  assert.ok(hop, `a ${name} hop in ${hops.map((h) => h.hop).join(', ')}`);
  return hop;
}

const broken = (hops: readonly Hop[]) => hops.filter((h) => h.status === 'broken').map((h) => h.hop);

/** Every hop of a path across two nodes, in the path's order. */
const ACROSS = HOPS.filter((name) => name !== 'same-node');

describe('trace: a healthy pair', () => {
  const hops = trace('10.244.1.5', '10.244.2.7');

  it('has every hop in the path order, each ok', () => {
    assert.deepEqual(hops.map((h) => h.hop), ACROSS);
    assert.deepEqual(hops.filter((h) => h.status !== 'ok'), []);
  });

  it('names the leases, the route, the endpoint and the MTU', () => {
    assert.equal(hopOf(hops, 'source-lease').detail, '10.244.1.5 lies in 10.244.1.0/24, leased by node-1 (198.18.0.1)');
    assert.equal(hopOf(hops, 'destination-lease').detail, '10.244.2.7 lies in 10.244.2.0/24, leased by node-2 (198.18.0.2)');
    assert.match(hopOf(hops, 'source-daemon').detail, /^node-1 answers at http:\/\/198\.18\.0\.1:8286\/status \(version 0\.2\.0\): running$/);
    assert.match(hopOf(hops, 'source-route').detail, /node-1 routes 10\.244\.2\.7 into flannel0 \(10\.244\.0\.0\/16\)/);
    assert.match(hopOf(hops, 'source-peer').detail, /sends 10\.244\.2\.0\/24 to UDP 198\.18\.0\.2:8285 \(node-2\), as its lease says/);
    assert.match(hopOf(hops, 'path-mtu').detail, /1472 on node-1, 1472 on node-2: the path carries packets of up to 1472 bytes/);
    assert.match(hopOf(hops, 'ingress-sender').detail, /node-2 knows 198\.18\.0\.1:8285 as its peer node-1/);
    assert.match(hopOf(hops, 'ingress-source').detail, /10\.244\.1\.5 lies in 10\.244\.1\.0\/24/);
    assert.match(hopOf(hops, 'ingress-destination').detail, /10\.244\.2\.7 lies in node-2's own subnet 10\.244\.2\.0\/24/);
  });

  it('shows the per-peer counters of both ends and the node-wide drops this path can meet', () => {
    assert.match(hopOf(hops, 'source-counters').detail, /node-1 sent node-2 7 packets \(686 B\); node-wide drops no-route 0, too-big 0, send-queue-full 0$/);
    assert.match(hopOf(hops, 'destination-counters').detail, /node-2 received 5 packets \(490 B\) from node-1, the last 3s ago, 0 dropped; node-wide drops unknown-sender 0, spoofed-source 0, wrong-destination 0, unauthenticated 0$/);
  });
});

describe("trace: datagrams the source's own node refused at its send", () => {
  it('shows them next to what its peer entry counts as sent, which includes them', () => {
    const counters = { ...emptyCounters(), egressDrops: { ...emptyCounters().egressDrops, 'send-queue-full': 4 } };
    const hops = trace('10.244.1.5', '10.244.2.7', [look(A, statusOf(1, { counters })), look(B, statusOf(2))]);
    assert.match(hopOf(hops, 'source-counters').detail, /node-1 sent node-2 7 packets \(686 B\); node-wide drops no-route 0, too-big 0, send-queue-full 4$/);
  });
});

describe('trace: an address no lease holds', () => {
  it('is a broken first hop, and the trace stops after the two leases', () => {
    const hops = trace('10.244.9.9', '10.244.2.7');
    assert.deepEqual(hops.map((h) => h.hop), ['source-lease', 'destination-lease']);
    assert.deepEqual(broken(hops), ['source-lease']);
    assert.equal(hops[0]!.detail, "no lease holds 10.244.9.9: it lies in the cluster network 10.244.0.0/16, but in no node's subnet");
  });

  it('says when the address is outside the cluster network', () => {
    const hops = trace('10.244.1.5', '192.168.7.1');
    assert.deepEqual(broken(hops), ['destination-lease']);
    assert.equal(hops[1]!.detail, 'no lease holds 192.168.7.1: it lies outside the cluster network 10.244.0.0/16');
  });

  it('asks no daemon', () => {
    const ends = locate(CONFIG, LEASES, parsePodAddress('10.244.9.9')!, parsePodAddress('10.244.2.7')!);
    assert.deepEqual(nodesToAsk(ends), []);
  });
});

describe('trace: the destination daemon does not answer', () => {
  const hops = trace('10.244.1.5', '10.244.2.7', [look(A, statusOf(1)), look(B, undefined, 'daemon unreachable at http://198.18.0.2:8286/status: ECONNREFUSED')]);

  it('breaks at the destination daemon, with the reason', () => {
    assert.deepEqual(broken(hops), ['destination-daemon']);
    assert.equal(hopOf(hops, 'destination-daemon').detail, 'node-2: daemon unreachable at http://198.18.0.2:8286/status: ECONNREFUSED');
  });

  it('still shows the source side, and leaves what needs the destination unknown', () => {
    for (const name of ['source-daemon', 'source-route', 'source-peer', 'source-counters'] as const) assert.equal(hopOf(hops, name).status, 'ok', name);
    for (const name of ['path-mtu', 'ingress-sender', 'ingress-source', 'ingress-destination', 'destination-counters'] as const) assert.equal(hopOf(hops, name).status, 'unknown', name);
    assert.match(hopOf(hops, 'path-mtu').detail, /1472 on node-1, unknown on node-2/);
    assert.equal(hopOf(hops, 'ingress-sender').detail, "not known: node-2's daemon did not answer");
  });

  it('breaks at a daemon that answers but is not running, with its reason', () => {
    const waiting = statusOf(2, { state: 'waiting', reason: 'lease store unreachable' });
    const hops = trace('10.244.1.5', '10.244.2.7', [look(A, statusOf(1)), look(B, waiting)]);
    assert.deepEqual(broken(hops), ['destination-daemon']);
    assert.match(hopOf(hops, 'destination-daemon').detail, /but is waiting: lease store unreachable$/);
  });
});

describe("trace: the destination does not know the source's endpoint", () => {
  it('with no peer entry for it: unknown-sender, and the source check cannot be made', () => {
    const hops = trace('10.244.1.5', '10.244.2.7', [look(A, statusOf(1)), look(B, statusOf(2, { peers: [peerOf(3)] }))]);
    assert.deepEqual(broken(hops), ['ingress-sender']);
    assert.equal(hopOf(hops, 'ingress-sender').detail, "node-2 has no peer at 198.18.0.1:8285: node-1's datagrams are dropped as unknown-sender");
    assert.equal(hopOf(hops, 'ingress-source').status, 'unknown');
    assert.match(hopOf(hops, 'destination-counters').detail, /node-2 reports no traffic from node-1; node-wide drops unknown-sender 0/);
  });

  it("with the lease skipped: the daemon's reason", () => {
    const skippedLeases = [{ subnet: '10.244.1.0/24', node: 'node-1', reason: 'backend vxlan is not udp' }];
    const hops = trace('10.244.1.5', '10.244.2.7', [look(A, statusOf(1)), look(B, statusOf(2, { peers: [peerOf(3)], skippedLeases }))]);
    assert.deepEqual(broken(hops), ['ingress-sender']);
    assert.match(hopOf(hops, 'ingress-sender').detail, /node-2 left 10\.244\.1\.0\/24 of node-1 out: backend vxlan is not udp; node-1's datagrams are dropped as unknown-sender/);
  });

  it('with a stale entry at another endpoint', () => {
    const hops = trace('10.244.1.5', '10.244.2.7', [look(A, statusOf(1)), look(B, statusOf(2, { peers: [peerOf(1, { endpoint: '198.18.0.41:8285' }), peerOf(3)] }))]);
    assert.deepEqual(broken(hops), ['ingress-sender']);
    assert.match(hopOf(hops, 'ingress-sender').detail, /node-2 knows 10\.244\.1\.0\/24 at 198\.18\.0\.41:8285, not at 198\.18\.0\.1:8285 where node-1 sends from/);
  });

  it('with the source sending from another port than its lease says', () => {
    const node = { ...statusOf(1).node!, port: 8299 };
    const hops = trace('10.244.1.5', '10.244.2.7', [look(A, statusOf(1, { node })), look(B, statusOf(2))]);
    assert.deepEqual(broken(hops), ['ingress-sender']);
    assert.equal(hopOf(hops, 'ingress-sender').detail, "node-1 sends from port 8299, but its lease says 198.18.0.1:8285, where node-2 expects it: node-1's datagrams are dropped as unknown-sender");
  });

  it('with the endpoint held for another subnet: spoofed-source', () => {
    const hops = trace('10.244.1.5', '10.244.2.7', [look(A, statusOf(1)), look(B, statusOf(2, { peers: [peerOf(3, { endpoint: '198.18.0.1:8285' })] }))]);
    assert.deepEqual(broken(hops), ['ingress-source']);
    assert.match(hopOf(hops, 'ingress-source').detail, /10\.244\.1\.5 lies outside the subnets node-2 holds for 198\.18\.0\.1:8285 \(10\.244\.3\.0\/24, fd00:10:244:3::\/64\): dropped as spoofed-source/);
  });

  it('with its own subnet elsewhere: wrong-destination', () => {
    const node = { ...statusOf(2).node!, subnet: '10.244.5.0/24' };
    const hops = trace('10.244.1.5', '10.244.2.7', [look(A, statusOf(1)), look(B, statusOf(2, { node }))]);
    assert.deepEqual(broken(hops), ['ingress-destination']);
    assert.match(hopOf(hops, 'ingress-destination').detail, /outside node-2's own IPv4 subnet \(10\.244\.5\.0\/24\): dropped as wrong-destination/);
  });
});

describe('trace: the source sends to the wrong endpoint', () => {
  it('breaks at the peer entry, naming what it uses and what the lease says', () => {
    const hops = trace('10.244.1.5', '10.244.2.7', [look(A, statusOf(1, { peers: [peerOf(2, { endpoint: '198.18.0.9:8285' }), peerOf(3)] })), look(B, statusOf(2))]);
    assert.deepEqual(broken(hops), ['source-peer']);
    assert.equal(hopOf(hops, 'source-peer').detail, 'node-1 sends 10.244.2.0/24 to UDP 198.18.0.9:8285, but the lease of node-2 says 198.18.0.2:8285: a stale peer entry');
  });

  it('breaks at the peer entry when there is none, and says no-route', () => {
    const hops = trace('10.244.1.5', '10.244.2.7', [look(A, statusOf(1, { peers: [peerOf(3)] })), look(B, statusOf(2))]);
    assert.deepEqual(broken(hops), ['source-peer']);
    assert.match(hopOf(hops, 'source-peer').detail, /node-1 cannot send to 10\.244\.2\.7: it has no peer entry for 10\.244\.2\.0\/24 of node-2 \(counted as no-route\)/);
  });

  it('breaks at the peer entry of a lease the source skipped, with its reason', () => {
    const skippedLeases = [{ subnet: '10.244.2.0/24', node: 'node-2', reason: 'port 0 is invalid' }];
    const hops = trace('10.244.1.5', '10.244.2.7', [look(A, statusOf(1, { peers: [peerOf(3)], skippedLeases })), look(B, statusOf(2))]);
    assert.deepEqual(broken(hops), ['source-peer']);
    assert.equal(hopOf(hops, 'source-peer').detail, 'node-1 cannot send to 10.244.2.7: it left 10.244.2.0/24 of node-2 out: port 0 is invalid (counted as no-route)');
  });

  it('breaks at the route when no TUN route holds the destination', () => {
    const node = { ...statusOf(1).node!, routes: ['fd00:10:244::/56'] };
    const hops = trace('10.244.1.5', '10.244.2.7', [look(A, statusOf(1, { node })), look(B, statusOf(2))]);
    assert.deepEqual(broken(hops), ['source-route']);
    assert.match(hopOf(hops, 'source-route').detail, /node-1 has no route into flannel0 that holds 10\.244\.2\.7 \(its TUN routes: fd00:10:244::\/56\)/);
  });
});

describe('trace: the MTU on the way', () => {
  it("is the smaller of the two nodes' overlay MTUs", () => {
    const node = { ...statusOf(2).node!, mtu: 1400 };
    const hops = trace('10.244.1.5', '10.244.2.7', [look(A, statusOf(1)), look(B, statusOf(2, { node }))]);
    assert.equal(hopOf(hops, 'path-mtu').detail, 'overlay MTU 1472 on node-1, 1400 on node-2: the path carries packets of up to 1400 bytes');
  });
});

describe('trace: both pods on one node', () => {
  const hops = trace('10.244.1.5', '10.244.1.9');

  it('says the packet never leaves the bridge, and stops', () => {
    assert.deepEqual(hops.map((h) => h.hop), ['source-lease', 'destination-lease', 'same-node']);
    assert.deepEqual(broken(hops), []);
    assert.equal(hops[2]!.detail, 'both lie on node-1: the packet never leaves its bridge, and miniflannel does not carry it');
  });

  it('asks no daemon', () => {
    assert.deepEqual(nodesToAsk(locate(CONFIG, LEASES, parsePodAddress('10.244.1.5')!, parsePodAddress('10.244.1.9')!)), []);
  });
});

describe('trace: IPv6 pods', () => {
  it('follow the paired IPv6 subnets, each hop ok', () => {
    const hops = trace('fd00:10:244:1::5', 'fd00:10:244:2::7');
    assert.deepEqual(hops.map((h) => h.hop), ACROSS);
    assert.deepEqual(hops.filter((h) => h.status !== 'ok'), []);
    assert.equal(hopOf(hops, 'source-lease').detail, 'fd00:10:244:1::5 lies in fd00:10:244:1::/64, leased by node-1 (198.18.0.1)');
    assert.match(hopOf(hops, 'source-route').detail, /routes fd00:10:244:2::7 into flannel0 \(fd00:10:244::\/56\)/);
    assert.match(hopOf(hops, 'source-peer').detail, /sends fd00:10:244:2::\/64 to UDP 198\.18\.0\.2:8285 \(node-2\)/);
    assert.match(hopOf(hops, 'ingress-source').detail, /fd00:10:244:1::5 lies in fd00:10:244:1::\/64, the subnet node-2 holds for 198\.18\.0\.1:8285/);
    assert.match(hopOf(hops, 'ingress-destination').detail, /fd00:10:244:2::7 lies in node-2's own subnet fd00:10:244:2::\/64/);
  });

  it('break at the route when the node routes only IPv4 into its TUN', () => {
    const node = { ...statusOf(1).node!, routes: ['10.244.0.0/16'] };
    const hops = trace('fd00:10:244:1::5', 'fd00:10:244:2::7', [look(A, statusOf(1, { node })), look(B, statusOf(2))]);
    assert.deepEqual(broken(hops), ['source-route']);
  });
});

describe('trace: a daemon older than the fields it reads', () => {
  it('leaves the route and counters unknown, not broken', () => {
    const older = (k: number) => {
      const { routes: _routes, ...node } = statusOf(k).node!;
      const { version: _version, ...rest } = statusOf(k, { node, peers: [1, 2, 3].filter((n) => n !== k).map((n) => peerOf(n, { traffic: undefined })) });
      return rest as StatusDocument;
    };
    const hops = trace('10.244.1.5', '10.244.2.7', [look(A, older(1)), look(B, older(2))]);
    assert.deepEqual(broken(hops), []);
    assert.deepEqual(hops.filter((h) => h.status === 'unknown').map((h) => h.hop), ['source-route', 'source-counters', 'destination-counters']);
    assert.match(hopOf(hops, 'source-route').detail, /does not report its TUN routes/);
  });
});

describe('miniflannel trace: arguments', () => {
  it('refuses an address that is none, in one line, exit 2, before reading the store', async () => {
    const result = await runCli(['trace', '10.244.1.5', 'pod-b', '--redis-url', 'redis://127.0.0.1:1']);
    assert.equal(result.code, 2);
    assert.equal(oneLineError(result), 'miniflannel: DST_POD_IP "pod-b" is not an IPv4 or IPv6 address');
  });

  it('refuses two families, in one line, exit 2', async () => {
    const result = await runCli(['trace', '10.244.1.5', 'fd00:10:244:2::7', '--redis-url', 'redis://127.0.0.1:1']);
    assert.equal(result.code, 2);
    assert.match(oneLineError(result), /SRC_POD_IP 10\.244\.1\.5 is IPv4 and DST_POD_IP fd00:10:244:2::7 is IPv6/);
  });

  it('refuses a port out of range, exit 2', async () => {
    const result = await runCli(['trace', '10.244.1.5', '10.244.2.7', '--port', '70000']);
    assert.equal(result.code, 2);
    assert.match(oneLineError(result), /--port.*expected a port, 1 to 65535/);
  });
});
