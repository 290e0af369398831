// `miniflannel doctor`'s checks on fabricated status documents, the survey
// of a thousand silent daemons through a fake fetcher, the survey over real
// loopback HTTP, and the command's refusals that need no Redis.

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { parseNetworkConfig, type Lease, type NetworkConfig } from '../../daemon/lease/index.js';
import { authKey, createSealer } from '../../daemon/dataplane/sealing.js';
import { parseCidr, parseIPv4 } from '../../daemon/net/ipv4.js';
import type { PeerTrafficView } from '../../daemon/dataplane/index.js';
import { peerFromLease, type PeerView } from '../../daemon/node/peers.js';
import type { StatusDocument } from '../../daemon/node/status.js';
import { diagnose, isProblem, type CheckId, type Diagnosis, type Finding, type Look } from '../../cli/cluster/doctor.js';
import { lookAtNodes, statusUrl, type NodeLook } from '../../cli/cluster/survey.js';
import { defaultStatePath } from '../../cli/commands/doctor.js';
import { freePort } from '../../lab/redis.js';
import { oneLineError, runCli } from './helpers.js';
import { MemoryNetwork, meshed, memoryNode, podPacket, type MemoryNode } from '../dataplane/memory-plane.js';

const NETWORK: NetworkConfig = parseNetworkConfig({ Network: '10.244.0.0/16' });
const NOW = 1_800_000_000_000;
const HOUR = 3_600_000;
/** When every fixture daemon started, unless a case restarts one: a day before NOW. */
const STARTED = NOW - 24 * HOUR;
const TRAFFIC = { packetsSent: 10, bytesSent: 1000, packetsReceived: 10, bytesReceived: 1000, drops: 0, lastReceivedAt: NOW - 1000 };

function lease(k: number, changes: Partial<Lease> = {}): Lease {
  const subnet = `10.244.${k}.0/24`;
  return { subnet, cidr: parseCidr(subnet), publicIP: `198.18.0.${k}`, nodeName: `node-${k}`, backendType: 'udp', backendData: {}, expiresAt: NOW + 20 * HOUR, ...changes };
}

/** What node k's daemon reports at `now` when all is well among `all`: up since STARTED, renewing its lease an hour before expiry. */
function healthy(k: number, all: readonly Lease[], now: number): StatusDocument {
  const own = all.find((l) => l.subnet === `10.244.${k}.0/24`)!;
  const peers: PeerView[] = all.filter((l) => l !== own).map((l) => ({ subnet: l.subnet, endpoint: `${l.publicIP}:8285`, node: l.nodeName, traffic: TRAFFIC }));
  return {
    version: '0.2.0',
    state: 'running',
    node: { name: own.nodeName, publicIP: own.publicIP!, iface: 'eth0', subnet: own.subnet, network: '10.244.0.0/16', tun: 'flannel0', mtu: 1472, port: 8285 },
    lease: { subnet: own.subnet, publicIP: own.publicIP!, nodeName: own.nodeName, expiresAt: own.expiresAt, renewMarginMs: HOUR },
    store: { address: 'redis://198.18.0.254:6379', connected: true, resets: 0, leaseRestored: 0, resyncs: 0, leases: all.length },
    peers,
    skippedLeases: [],
    counters: { egressDrops: {}, ingressDrops: {} } as unknown as StatusDocument['counters'],
    uptimeSeconds: (now - STARTED) / 1000,
  };
}

/** Node k's entry for node `peer`, its traffic changed as given. */
const withTraffic = (peer: number, figures: Partial<PeerTrafficView>) => (s: StatusDocument): StatusDocument =>
  ({ ...s, peers: s.peers.map((p) => (p.subnet === `10.244.${peer}.0/24` ? { ...p, traffic: { ...p.traffic!, ...figures } } : p)) });

const withDrops = (status: StatusDocument, egress: Record<string, number>, ingress: Record<string, number> = {}): StatusDocument =>
  ({ ...status, counters: { egressDrops: egress, ingressDrops: ingress } as unknown as StatusDocument['counters'] });

/** Three healthy nodes read at `now`, each status changed by `change` (by node number) where given. */
function cluster(change: Record<number, (s: StatusDocument) => StatusDocument | undefined> = {}, leases = [1, 2, 3].map((k) => lease(k)), now = NOW): NodeLook[] {
  return leases.map((l, i) => {
    const status = (change[i + 1] ?? ((s) => s))(healthy(i + 1, leases, now));
    return status === undefined ? { lease: l, url: statusUrl(l, 8286), error: `daemon unreachable at ${statusUrl(l, 8286)}: ECONNREFUSED` } : { lease: l, url: statusUrl(l, 8286), status, readAt: now };
  });
}

/** Three nodes read `ms` after NOW, changed as given. */
const readAfter = (ms: number, change: Record<number, (s: StatusDocument) => StatusDocument | undefined> = {}): NodeLook[] => cluster(change, undefined, NOW + ms);

/** diagnose, by default at the time the looks were read. */
const run = (looks: NodeLook[], previous?: Look, now = looks.find((l) => l.readAt !== undefined)?.readAt ?? NOW, relisted?: Lease[]): Diagnosis =>
  diagnose({ network: NETWORK, looks, now, ...(previous ? { previous } : {}), ...(relisted ? { relisted } : {}) });
const problems = (d: Diagnosis): Finding[] => d.findings.filter(isProblem);
const only = (d: Diagnosis, check: CheckId): Finding => {
  const found = d.findings.filter((f) => f.check === check);
  assert.equal(found.length, 1, `one ${check} finding in ${JSON.stringify(d.findings, null, 2)}`);
  return found[0]!;
};

describe('doctor checks', () => {
  it('finds no problem in a healthy cluster, and every peer table complete', () => {
    const d = run(cluster());
    assert.deepEqual(problems(d), []);
    assert.deepEqual(d.nodes.map((n) => [n.node, n.state, n.version, n.storeConnected, n.peers]), [1, 2, 3].map((k) => [`node-${k}`, 'running', '0.2.0', true, { matching: 2, expected: 2 }]));
    assert.deepEqual(d.nodes[0]!.traffic, { '10.244.2.0/24': { sent: 10, received: 10, drops: 0 }, '10.244.3.0/24': { sent: 10, received: 10, drops: 0 } });
  });

  it('reports a daemon that does not answer, and one that is not running, as errors, and judges no peer table of the one not running', () => {
    // What a daemon waiting for the store reports: no node, lease, store, counters or peers yet.
    const waiting = (s: StatusDocument): StatusDocument => ({ ...s, state: 'waiting', reason: 'lease store unreachable', node: null, lease: null, store: null, peers: [], counters: null });
    const d = run(cluster({ 2: () => undefined, 3: waiting }));
    assert.equal(only(d, 'daemon-unreachable').message, 'node-2: daemon unreachable at http://198.18.0.2:8286/status: ECONNREFUSED');
    assert.deepEqual(only(d, 'daemon-unreachable').nodes, ['node-2']);
    assert.equal(only(d, 'daemon-not-running').message, 'node-3 is waiting: lease store unreachable');
    assert.deepEqual(problems(d).map((f) => f.check), ['daemon-unreachable', 'daemon-not-running']);
    assert.equal(d.nodes[1]!.state, 'unreachable');
    assert.equal(d.nodes[1]!.peers, null);
    assert.equal(d.nodes[2]!.peers, null);
  });

  it('says an unclaimed reservation has no daemon without calling it a problem; a claimed one is', () => {
    const leases = [lease(1), lease(2), lease(3, { expiresAt: null, nodeName: '' })];
    const unclaimed = run(cluster({ 3: () => undefined }, leases));
    assert.deepEqual(problems(unclaimed), []);
    assert.match(only(unclaimed, 'reservation-unclaimed').message, /^the reservation 10\.244\.3\.0\/24 for 198\.18\.0\.3 has no daemon answering/);
    const claimed = [lease(1), lease(2), lease(3, { expiresAt: null })];
    assert.deepEqual(only(run(cluster({ 3: () => undefined }, claimed)), 'daemon-unreachable').nodes, ['node-3']);
  });

  it('names a missing peer, a stale one, and a wrong endpoint seen by two nodes as one finding', () => {
    const d = run(cluster({
      1: (s) => ({ ...s, peers: [...s.peers.filter((p) => p.subnet !== '10.244.2.0/24'), { subnet: '10.244.9.0/24', endpoint: '198.18.0.9:8285', node: 'node-9' }] }),
      2: (s) => ({ ...s, peers: s.peers.map((p) => (p.subnet === '10.244.3.0/24' ? { ...p, endpoint: '198.18.0.3:9999' } : p)) }),
      3: (s) => s,
    }, [lease(1), lease(2), lease(3, { backendData: { Port: 9999 } })]));
    assert.equal(only(d, 'peer-missing').message, 'node-1: no peer entry for node-2 (10.244.2.0/24)');
    assert.equal(only(d, 'peer-stale').message, 'node-1: a peer entry for node-9 (10.244.9.0/24) at 198.18.0.9:8285, which the store has no lease for');
    assert.equal(only(d, 'peer-stale').severity, 'error');
    // node-2 already sends to the new port; node-1 still sends to the old one, as node-3's own daemon listens on it.
    assert.equal(only(d, 'peer-endpoint').message, 'node-1: send to node-3 (10.244.3.0/24) at 198.18.0.3:8285, but its lease says 198.18.0.3:9999');
    assert.equal(only(d, 'config-mismatch').message, 'node-3 runs with port 8285 (its lease tells peers 9999)');
    assert.deepEqual(d.nodes.map((n) => n.peers), [{ matching: 0, expected: 2 }, { matching: 2, expected: 2 }, { matching: 2, expected: 2 }]);
  });

  it('merges one cause seen by many nodes into one finding listing them', () => {
    const leases = [lease(1), lease(2), lease(3, { backendData: { Port: 9999 } })];
    const d = run(cluster({ 3: (s) => ({ ...s, node: { ...s.node!, port: 9999 } }) }, leases));
    const endpoint = only(d, 'peer-endpoint');
    assert.deepEqual(endpoint.nodes, ['node-1', 'node-2']);
    assert.equal(endpoint.message, 'node-1, node-2: send to node-3 (10.244.3.0/24) at 198.18.0.3:8285, but its lease says 198.18.0.3:9999');
  });

  it('calls an entry stale whose lease makes no peer, and one kept while its node re-asserts a lost lease only a warning', () => {
    const d = run(cluster({
      1: (s) => ({ ...s, peers: [...s.peers, { subnet: '10.244.9.0/24', endpoint: '198.18.0.9:8285', node: 'node-9', unconfirmedSince: NOW - 5000 }] }),
    }, [lease(1), lease(2), lease(3, { backendType: 'vxlan' })]));
    const stale = d.findings.filter((f) => f.check === 'peer-stale').map((f) => [f.severity, f.message]);
    assert.deepEqual(stale, [
      ['error', 'node-1, node-2: a peer entry for node-3 (10.244.3.0/24) at 198.18.0.3:8285, which its stored lease does not make a peer: backend vxlan is not udp'],
      ['warning', `node-1: a peer entry for node-9 (10.244.9.0/24) at 198.18.0.9:8285, kept since ${new Date(NOW - 5000).toISOString()} while its node re-asserts the lease the store lost (miniflanneld --peer-grace)`],
    ]);
  });

  it('faults no daemon for a node that joins, leaves or moves while the survey runs, only for what disagrees with both listings', () => {
    const joined = lease(4);
    const moved = lease(3, { backendData: { Port: 9999 } });
    const entryFor = (l: Lease, port = 8285): PeerView => ({ subnet: l.subnet, endpoint: `${l.publicIP}:${port}`, node: l.nodeName, traffic: TRAFFIC });
    // Listed before the survey: nodes 1, 2, 3. After: node 2 gone, node 4 joined, node 3 on port 9999.
    const d = run(cluster({
      1: (s) => ({ ...s, peers: [...s.peers, entryFor(joined)] }),
      2: () => undefined,
      3: (s) => ({ ...s, peers: s.peers.filter((p) => p.subnet !== '10.244.2.0/24'), node: { ...s.node!, port: 9999 } }),
    }), undefined, NOW, [lease(1), moved, joined]);
    assert.deepEqual(problems(d), []);
    assert.equal(only(d, 'daemon-unreachable').message, 'node-2: daemon unreachable at http://198.18.0.2:8286/status: ECONNREFUSED; its lease is gone since, so the node has left');
    assert.equal(only(d, 'daemon-unreachable').severity, 'info');
    assert.deepEqual(d.nodes.map((n) => n.peers), [{ matching: 3, expected: 3 }, null, { matching: 1, expected: 1 }]);

    // An entry both listings disagree with is still wrong.
    const wrong = run(cluster({ 1: (s) => ({ ...s, peers: s.peers.map((p) => (p.subnet === moved.subnet ? entryFor(moved, 7777) : p)) }) }), undefined, NOW, [lease(1), lease(2), moved]);
    assert.equal(only(wrong, 'peer-endpoint').message, 'node-1: send to node-3 (10.244.3.0/24) at 198.18.0.3:7777, but its lease says 198.18.0.3:9999');
  });

  it("shows a lease the daemon left out with the daemon's reason, not as missing", () => {
    const d = run(cluster({ 1: (s) => ({ ...s, peers: s.peers.filter((p) => p.subnet !== '10.244.3.0/24'), skippedLeases: [{ subnet: '10.244.3.0/24', node: 'node-3', reason: 'it shares no underlay family with this node' }] }) }));
    assert.equal(only(d, 'peer-skipped').message, 'node-1: left out node-3 (10.244.3.0/24): it shares no underlay family with this node');
    assert.equal(only(d, 'peer-skipped').severity, 'warning');
    assert.equal(d.findings.filter((f) => f.check === 'peer-missing').length, 0);
  });

  it('says why a node of a mixed-underlay cluster leaves out a lease by design, as info: the daemon skips it, and its lease makes no peer of it for doctor either', () => {
    const { publicIP: _, ...overIPv6 } = lease(3, { publicIPv6: '2001:2::3', backendData: { Port: 8285, Underlay: 'ipv6' } });
    const leases = [lease(1), lease(2), overIPv6];
    // Each daemon's reasons, as its peer feed gives them: the lease's peer for its own underlay.
    const skipping = (k: number, underlay: 4 | 6) => (s: StatusDocument): StatusDocument => {
      const refused = leases.filter((l) => l.subnet !== `10.244.${k}.0/24`).flatMap((l) => {
        const peer = peerFromLease(l, NETWORK, underlay);
        return typeof peer === 'string' ? [{ subnet: l.subnet, node: l.nodeName, reason: peer }] : [];
      });
      return { ...s, peers: s.peers.filter((p) => !refused.some((r) => r.subnet === p.subnet)), skippedLeases: refused };
    };
    const d = run(cluster({ 1: skipping(1, 4), 2: skipping(2, 4), 3: skipping(3, 6) }, leases));
    assert.deepEqual(problems(d), []);
    assert.deepEqual(d.findings.filter((f) => f.check === 'peer-skipped-by-design').map((f) => [f.severity, f.nodes, f.message]), [
      ['info', ['node-1', 'node-2'], 'node-1, node-2: leaves out node-3 (10.244.3.0/24), as its lease makes no peer of it: its node publishes no PublicIP, and this node sends over an IPv4 underlay'],
      ['info', ['node-3'], 'node-3: leaves out node-1 (10.244.1.0/24), as its lease makes no peer of it: its node publishes no PublicIPv6, and this node sends over an IPv6 underlay (--underlay ipv6)'],
      ['info', ['node-3'], 'node-3: leaves out node-2 (10.244.2.0/24), as its lease makes no peer of it: its node publishes no PublicIPv6, and this node sends over an IPv6 underlay (--underlay ipv6)'],
    ]);
    assert.deepEqual(d.nodes.map((n) => n.peers), [{ matching: 1, expected: 1 }, { matching: 1, expected: 1 }, { matching: 0, expected: 0 }]);
  });

  it('reports a daemon running with another network than the stored one', () => {
    const d = run(cluster({ 2: (s) => ({ ...s, node: { ...s.node!, network: '10.245.0.0/16', ipv6Network: 'fd00::/56' } }) }));
    assert.equal(only(d, 'config-mismatch').message, 'node-2 runs with Network 10.245.0.0/16 (stored: 10.244.0.0/16), IPv6Network fd00::/56 (stored: none)');
  });

  it('reports version skew, naming the nodes off the most common version, an older daemon among them', () => {
    const d = run(cluster({ 2: (s) => ({ ...s, version: '0.1.9' }), 3: ({ version: _, ...s }) => s }));
    const skew = only(d, 'version-skew');
    assert.equal(skew.severity, 'warning');
    assert.equal(skew.message, 'daemons run 3 versions: 0.2.0 on 1 (node-1); 0.1.9 on 1 (node-2); unknown (an older daemon) on 1 (node-3)');
    assert.deepEqual(skew.nodes, ['node-2', 'node-3']);
    assert.deepEqual(run(cluster()).findings.filter((f) => f.check === 'version-skew'), []);
  });

  it('reports a failing renewal as a warning, and as an error once the lease is inside the renew margin', () => {
    const failing = (s: StatusDocument): StatusDocument => ({ ...s, lease: { ...s.lease!, renewalFailure: { since: NOW - 60_000, attempts: 7, error: 'Redis unreachable' } } });
    const early = only(run(cluster({ 1: failing })), 'lease-renewal');
    assert.equal(early.severity, 'warning');
    assert.match(early.message, /^node-1 has failed to renew its lease 10\.244\.1\.0\/24 7 times since \S+ \(Redis unreachable\); it expires in 20h00m$/);
    const late = only(run(cluster({ 1: failing }, [lease(1, { expiresAt: NOW + 10 * 60_000 }), lease(2), lease(3)])), 'lease-renewal');
    assert.equal(late.severity, 'error');
    assert.match(late.message, /it expires in 10m00s, though its node renews it 1h00m before expiry \(its --lease-renew-margin\)$/);
  });

  it('warns of a lease past its renewal time even when no daemon says why, and never of a reservation', () => {
    const d = run(cluster({ 2: () => undefined }, [lease(1), lease(2, { expiresAt: NOW + 5 * 60_000 }), lease(3, { expiresAt: null })]));
    assert.equal(only(d, 'lease-expiring').message, 'the lease 10.244.2.0/24 of node-2 expires in 5m00s, though its node renews it 1h00m before expiry, the default --lease-renew-margin (its daemon does not report its own)');
    assert.deepEqual(only(d, 'lease-expiring').nodes, ['node-2']);
  });

  it("judges a lease's time left by its node's own renew margin: 20 minutes left is on time for a node renewing 10 minutes before", () => {
    const margin = (ms: number) => (s: StatusDocument): StatusDocument => ({ ...s, lease: { ...s.lease!, renewMarginMs: ms } });
    const leases = [lease(1, { expiresAt: NOW + 20 * 60_000 }), lease(2), lease(3)];
    assert.deepEqual(problems(run(cluster({ 1: margin(10 * 60_000) }, leases))), []);
    assert.equal(only(run(cluster({ 1: margin(30 * 60_000) }, leases)), 'lease-expiring').message, 'the lease 10.244.1.0/24 of node-1 expires in 20m00s, though its node renews it 30m00s before expiry (its --lease-renew-margin)');
  });

  it('judges the time left by the lease as listed after the survey, which a renewal meanwhile extended', () => {
    const d = run(cluster({}, [lease(1, { expiresAt: NOW + 5 * 60_000 }), lease(2), lease(3)]), undefined, NOW, [lease(1), lease(2), lease(3)]);
    assert.deepEqual(problems(d), []);
    assert.equal(d.nodes[0]!.expiresAt, NOW + 20 * HOUR);
  });

  it('reports a daemon that cannot reach the lease store', () => {
    const d = run(cluster({ 3: (s) => ({ ...s, store: { ...s.store!, connected: false } }) }));
    assert.equal(only(d, 'store-unreachable').message, 'node-3 cannot reach the lease store at redis://198.18.0.254:6379');
    assert.equal(d.nodes[2]!.storeConnected, false);
  });

  it('shows drop totals on the first look, and rates by reason since the previous look after it', () => {
    const first = run(cluster({ 1: (s) => withDrops(s, { 'no-route': 4, 'too-big': 0 }, { 'unknown-sender': 2 }) }));
    assert.deepEqual(problems(first), []);
    assert.match(only(first, 'first-look').message, /^no earlier look at this cluster/);
    assert.equal(only(first, 'drops').message, 'node-1 has dropped 6 packets since it started: egress no-route 4, ingress unknown-sender 2');
    assert.deepEqual(first.nodes[0]!.drops, { total: 6, seconds: null, perSecond: null, byReason: { 'egress no-route': 4, 'ingress unknown-sender': 2 } });

    const later = run(readAfter(60_000, { 1: (s) => withDrops(s, { 'no-route': 34, 'too-big': 0 }, { 'unknown-sender': 2 }), 3: (s) => withDrops(s, { 'no-route': 1 }) }), first.look);
    assert.equal(later.findings.filter((f) => f.check === 'first-look').length, 0);
    const drops = later.findings.filter((f) => f.check === 'drops');
    assert.deepEqual(drops.map((f) => [f.severity, f.message]), [
      ['info', 'node-1 dropped 30 packets in the last 1m00s (0.50/s): egress no-route 30'],
      ['info', 'node-3 dropped 1 packets in the last 1m00s (0.02/s): egress no-route 1'],
    ]);
    assert.deepEqual(later.nodes[1]!.drops, { total: 0, seconds: 60, perSecond: 0, byReason: {} });
    assert.deepEqual(problems(later), []);
  });

  it('calls drops a problem once one reason passes 10 a second, as the drops alert does', () => {
    const first = run(cluster({ 2: (s) => withDrops(s, { 'no-route': 100 }, { 'unknown-sender': 100 }) }));
    const just = run(readAfter(60_000, { 2: (s) => withDrops(s, { 'no-route': 700 }, { 'unknown-sender': 700 }) }), first.look);
    assert.equal(only(just, 'drops').severity, 'info', '10 a second of each reason');
    const over = run(readAfter(60_000, { 2: (s) => withDrops(s, { 'no-route': 100 }, { 'unknown-sender': 701 }) }), first.look);
    assert.equal(only(over, 'drops').severity, 'warning');
    assert.equal(only(over, 'drops').message, 'node-2 dropped 601 packets in the last 1m00s (10.02/s): ingress unknown-sender 601');
  });

  it('counts all of a counter that went back (the entry or the daemon was reset) as new', () => {
    const first = run(cluster({ 1: (s) => withDrops(s, { 'no-route': 50 }) }));
    const later = run(readAfter(10_000, { 1: (s) => withDrops(s, { 'no-route': 3 }) }), first.look);
    assert.equal(later.nodes[0]!.drops?.total, 3);
  });

  it('counts all drops of a daemon that restarted since the last look as new, over its uptime, even past the count before', () => {
    const first = run(cluster({ 1: (s) => withDrops(s, { 'no-route': 50 }) }));
    const later = run(readAfter(60_000, { 1: (s) => ({ ...withDrops(s, { 'no-route': 80 }), uptimeSeconds: 40 }) }), first.look);
    assert.deepEqual(later.nodes[0]!.drops, { total: 80, seconds: 40, perSecond: 2, byReason: { 'egress no-route': 80 } });
  });

  it("takes a daemon whose start is more than 2 s later than at the last look to have restarted, and no sooner: each start is off by its uptime's rounding", () => {
    const first = run(cluster({ 1: (s) => withDrops(s, { 'no-route': 50 }) }));
    const uptime = (seconds: number) => run(readAfter(60_000, { 1: (s) => ({ ...withDrops(s, { 'no-route': 80 }), uptimeSeconds: (NOW - STARTED) / 1000 + seconds }) }), first.look).nodes[0]!.drops;
    assert.deepEqual(uptime(58), { total: 30, seconds: 60, perSecond: 0.5, byReason: { 'egress no-route': 30 } });
    assert.deepEqual(uptime(57), { total: 80, seconds: 60, perSecond: 80 / 60, byReason: { 'egress no-route': 80 } });
  });

  it('counts the drops of a daemon that reports no uptime since it started, without a rate: whether it restarted is unknown', () => {
    const first = run(cluster({ 1: (s) => withDrops(s, { 'no-route': 400 }) }));
    // A status without uptime, as a daemon of another build may send it.
    const withoutUptime = ({ uptimeSeconds: _, ...s }: StatusDocument): StatusDocument => s as StatusDocument;
    const later = run(readAfter(60_000, { 1: (s) => withDrops(withoutUptime(s), { 'no-route': 500 }) }), first.look);
    assert.deepEqual(problems(later), []);
    assert.equal(only(later, 'drops').message, 'node-1 has dropped 500 packets since it started: egress no-route 500; its daemon reports no uptime, so how many are since the last look is unknown');
    assert.deepEqual(later.nodes[0]!.drops, { total: 500, seconds: null, perSecond: null, byReason: { 'egress no-route': 500 } });
  });

  it('keeps the counters of a node that did not answer for the look after', () => {
    const first = run(cluster({ 1: (s) => withDrops(s, { 'no-route': 5 }) }));
    const missed = run(readAfter(10_000, { 1: () => undefined }), first.look);
    const back = run(readAfter(20_000, { 1: (s) => withDrops(s, { 'no-route': 8 }) }), missed.look);
    assert.deepEqual(back.nodes[0]!.drops, { total: 3, seconds: 20, perSecond: 0.15, byReason: { 'egress no-route': 3 } });
  });

  describe('"node A accepts nothing from node B"', () => {
    // Node 2 sends 30 to node 1 a minute after the first look; what node 1 counts of them varies.
    const first = run(cluster());
    const later = (receiver: (s: StatusDocument) => StatusDocument, sender: (s: StatusDocument) => StatusDocument = withTraffic(1, { packetsSent: 40 })): Diagnosis =>
      run(readAfter(60_000, { 1: receiver, 2: sender }), first.look);
    const silences = (d: Diagnosis) => d.findings.filter((f) => f.check === 'peer-silent');

    it('is said when A received none of what B sent since the last look', () => {
      const finding = only(later(withTraffic(2, {})), 'peer-silent');
      assert.equal(finding.message, 'node-1 accepted nothing from node-2: node-2 sent 30 since the last look; node-1 received 0 and dropped 0');
      assert.equal(finding.severity, 'error');
      assert.deepEqual(finding.nodes, ['node-1', 'node-2']);
    });

    it('is said when A received what B sent and dropped all of it, as under another cluster key', () => {
      assert.equal(only(later(withTraffic(2, { packetsReceived: 40, drops: 30 })), 'peer-silent').message, 'node-1 accepted nothing from node-2: node-2 sent 30 since the last look; node-1 received 30 and dropped 30');
    });

    it('is said of real data planes under two cluster keys, the receiver counting what it refused as received and dropped', () => {
      const network = new MemoryNetwork();
      const keyed = (k: number): MemoryNode => {
        const ip = parseIPv4(`198.18.0.${k}`);
        return memoryNode(network, { subnet: `10.244.${k}.0/24`, ip, sealer: createSealer({ mode: 'mac', localIp: ip, keys: [authKey(randomBytes(32))] }) });
      };
      const [a, b] = [keyed(1), keyed(2)];
      meshed(a, b);
      const reported = (node: MemoryNode, peer: MemoryNode, k: number) => {
        const { packetsSent, packetsReceived, drops } = node.plane.peerTable.get(peer.subnet!)!;
        return withTraffic(k, { packetsSent, packetsReceived, drops });
      };
      const look = (previous?: Look, now = NOW) => run(cluster({ 1: reported(a, b, 2), 2: reported(b, a, 1) }, undefined, now), previous);
      const before = look();
      b.tun.send(Array.from({ length: 12 }, (_, i) => podPacket(4, false, i)));
      assert.equal(a.tun.takeWritten().length, 0);
      assert.equal(only(look(before.look, NOW + 60_000), 'peer-silent').message, 'node-1 accepted nothing from node-2: node-2 sent 12 since the last look; node-1 received 12 and dropped 12');
    });

    it('is not said when A accepted any of it', () => {
      assert.deepEqual(silences(later(withTraffic(2, { packetsReceived: 40, drops: 29 }))), []);
    });

    it('is not said of one datagram sent between the reads of the two daemons, nor of nine', () => {
      assert.deepEqual(silences(later(withTraffic(2, {}), withTraffic(1, { packetsSent: 11 }))), []);
      assert.deepEqual(silences(later(withTraffic(2, {}), withTraffic(1, { packetsSent: 19 }))), []);
      assert.equal(silences(later(withTraffic(2, {}), withTraffic(1, { packetsSent: 20 }))).length, 1);
    });

    it('is not said when either daemon restarted since the last look, its counts having started again', () => {
      const restarted = (change: (s: StatusDocument) => StatusDocument) => (s: StatusDocument): StatusDocument => ({ ...change(s), uptimeSeconds: 30 });
      // node 1 came back 30 s ago and has received nothing yet: its counts are from zero, node 2's reach back before the restart.
      assert.deepEqual(silences(later(restarted(withTraffic(2, { packetsSent: 0, packetsReceived: 0 })))), []);
      // node 2 came back 30 s ago and counts 25 sent, past its count at the last look: only its uptime tells that the count started again.
      assert.deepEqual(silences(later(withTraffic(2, {}), restarted(withTraffic(1, { packetsSent: 25, packetsReceived: 0 })))), []);
    });

    it('is said of a daemon that had run only 2 s at the last look: its start is the same, so it has not restarted since', () => {
      const young = run(cluster({ 2: (s) => ({ ...s, uptimeSeconds: 2 }) }));
      const d = run(readAfter(60_000, { 1: withTraffic(2, {}), 2: (s) => withTraffic(1, { packetsSent: 40 })({ ...s, uptimeSeconds: 62 }) }), young.look);
      assert.equal(only(d, 'peer-silent').message, 'node-1 accepted nothing from node-2: node-2 sent 30 since the last look; node-1 received 0 and dropped 0');
    });

    it('is not said when the two daemons were read more than 2 s apart, at this look or at the last', () => {
      const readAt = (looks: NodeLook[], k: number, at: number): NodeLook[] => looks.map((l, i) => (i === k - 1 ? { ...l, readAt: at } : l));
      const now = readAfter(60_000, { 1: withTraffic(2, {}), 2: withTraffic(1, { packetsSent: 40 }) });
      // The sender's uptime goes with its read: a daemon read later has run longer.
      const senderReadLater = (ms: number) => readAt(readAfter(60_000, { 1: withTraffic(2, {}), 2: (s) => withTraffic(1, { packetsSent: 40 })({ ...s, uptimeSeconds: (60_000 + ms + NOW - STARTED) / 1000 }) }), 2, NOW + 60_000 + ms);
      assert.equal(silences(run(senderReadLater(2_000), first.look, NOW + 62_000)).length, 1);
      assert.deepEqual(silences(run(senderReadLater(2_001), first.look, NOW + 62_001)), []);
      const apartBefore = run(readAt(cluster(), 1, NOW - 2_001), undefined, NOW);
      assert.deepEqual(silences(run(now, apartBefore.look)), []);
    });

    it("is not said when the sender's own node refused at send what it counts as sent to the receiver (its own firewall): its drops name it", () => {
      const refusing = (n: number) => (s: StatusDocument): StatusDocument => withDrops(withTraffic(1, { packetsSent: 40 })(s), { 'send-queue-full': n });
      const d = run(readAfter(60_000, { 1: withTraffic(2, {}), 2: refusing(30) }), first.look);
      assert.deepEqual(silences(d), []);
      assert.equal(only(d, 'drops').message, 'node-2 dropped 30 packets in the last 1m00s (0.50/s): egress send-queue-full 30');
      assert.deepEqual(silences(run(readAfter(60_000, { 1: withTraffic(2, {}), 2: refusing(21) }), first.look)), []);
      assert.equal(only(run(readAfter(60_000, { 1: withTraffic(2, {}), 2: refusing(20) }), first.look), 'peer-silent').message,
        'node-1 accepted nothing from node-2: node-2 sent 30 since the last look (its own node refused 20 datagrams at send, to any peer); node-1 received 0 and dropped 0');
    });

    it('is not said on a first look, nor of an entry made anew since the last one (its peer moved)', () => {
      assert.deepEqual(silences(run(cluster({ 1: withTraffic(2, { packetsReceived: 0 }) }))), []);
      const node1 = first.look.nodes['10.244.1.0/24']!;
      const moved: Look = { nodes: { ...first.look.nodes, '10.244.1.0/24': { ...node1, peers: { ...node1.peers, '10.244.2.0/24': { ...node1.peers['10.244.2.0/24']!, endpoint: '198.18.0.2:9999' } } } } };
      assert.deepEqual(silences(run(readAfter(60_000, { 1: withTraffic(2, {}), 2: withTraffic(1, { packetsSent: 40 }) }), moved)), []);
    });

    it('is not judged from a state file of an older doctor, which kept no per-peer drops or endpoints', () => {
      const old: Look = JSON.parse(JSON.stringify(first.look, (key, value: unknown) => (key === 'drops' && typeof value === 'number') || key === 'endpoint' ? undefined : value)) as Look;
      assert.deepEqual(old.nodes['10.244.1.0/24']!.peers['10.244.2.0/24'], { sent: 10, received: 10 });
      assert.deepEqual(silences(run(readAfter(60_000, { 1: withTraffic(2, {}), 2: withTraffic(1, { packetsSent: 40 }) }), old)), []);
    });
  });

  it('judges no traffic from a daemon that reports none (an older one)', () => {
    const old = (s: StatusDocument): StatusDocument => ({ ...s, peers: s.peers.map(({ traffic: _, ...p }) => p) });
    const d = run(cluster({ 1: old, 2: (s) => ({ ...s, peers: s.peers.map((p) => ({ ...p, traffic: { ...TRAFFIC, packetsSent: 99 } })) }) }));
    assert.deepEqual(problems(d), []);
    assert.equal(d.nodes[0]!.traffic, null);
  });
});

describe('the survey', () => {
  it('reports every one of 1,000 silent daemons as unreachable, asking at most `concurrency` at once and more than one', async () => {
    const leases = Array.from({ length: 1000 }, (_, i) => lease(i % 256, { subnet: `10.${Math.floor(i / 256)}.${i % 256}.0/24`, publicIP: `198.18.${Math.floor(i / 256)}.${i % 256}` }));
    let inFlight = 0;
    let most = 0;
    let aborted = 0;
    const looks = await lookAtNodes(leases, {
      port: 8286,
      timeoutMs: 20,
      concurrency: 50,
      // Never answers, and ignores its signal: the survey's own deadline must end the wait.
      fetchStatus: (_url, signal) => {
        inFlight++;
        most = Math.max(most, inFlight);
        signal.addEventListener('abort', () => {
          inFlight--;
          aborted++;
        });
        return new Promise(() => undefined);
      },
    });
    assert.equal(looks.length, 1000);
    assert.deepEqual(looks.map((l) => l.lease), leases);
    assert.ok(looks.every((l) => l.status === undefined && l.error === `daemon at ${l.url} did not answer within 20 ms (--timeout)`), 'every node reported unreachable');
    assert.equal(aborted, 1000);
    assert.ok(most <= 50, `at most 50 in flight, saw ${most}`);
    assert.ok(most > 1, `more than one in flight, saw ${most}`);
  });

  describe('over loopback HTTP', () => {
    let server: http.Server;
    let port: number;
    before(async () => {
      server = http.createServer((req, res) => {
        const answer = req.headers.host?.startsWith('127.0.0.1') ? JSON.stringify({ state: 'running', node: 'not an object', peers: [{ subnet: '10.244.2.0/24' }, 7] }) : 'not json';
        res.writeHead(200, { 'content-type': 'application/json' }).end(answer);
      });
      await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
      port = (server.address() as AddressInfo).port;
    });
    after(() => new Promise<void>((resolve) => server.close(() => resolve())));

    it('reads a status, leaves misshapen sections out, and says why a node gave none', async () => {
      const looks = await lookAtNodes([lease(1, { publicIP: '127.0.0.1' }), lease(2, { publicIP: '127.0.0.2' })], { port, timeoutMs: 2000, concurrency: 4 });
      assert.deepEqual(looks[0]!.status, { state: 'running', peers: [{ subnet: '10.244.2.0/24' }] });
      assert.equal(looks[1]!.error, `daemon unreachable at http://127.0.0.2:${port}/status: ECONNREFUSED`);
    });
  });

  it("asks a node without a PublicIP at its bracketed PublicIPv6", () => {
    const { publicIP: _, ...v6 } = lease(1, { publicIPv6: '2001:2::1' });
    assert.equal(statusUrl(v6, 8286), 'http://[2001:2::1]:8286/status');
    assert.equal(statusUrl(lease(1, { publicIPv6: '2001:2::1' }), 9000), 'http://198.18.0.1:9000/status');
  });
});

describe('miniflannel doctor without a cluster', () => {
  it('keeps its looks under $XDG_STATE_HOME, else ~/.local/state', () => {
    assert.equal(defaultStatePath({ XDG_STATE_HOME: '/var/state' }), '/var/state/miniflannel/doctor.json');
    assert.match(defaultStatePath({}), /\/\.local\/state\/miniflannel\/doctor\.json$/);
  });

  it('refuses a bad --port or --concurrency with exit 2', async () => {
    for (const args of [['--port', '0'], ['--port', '70000'], ['--concurrency', '0']]) {
      const result = await runCli(['doctor', ...args]);
      assert.equal(result.code, 2, args.join(' '));
      assert.match(oneLineError(result), /^miniflannel: option '--(port|concurrency) <\w+>' argument '\d+' is invalid/);
    }
  });

  it('says in one line that Redis is unreachable, with exit 1 and nothing on stdout, with --json too', async () => {
    const redisUrl = `redis://127.0.0.1:${await freePort()}`;
    for (const json of [[], ['--json']]) {
      const result = await runCli(['doctor', ...json, '--redis-url', redisUrl, '--timeout', '500']);
      assert.equal(result.code, 1);
      assert.match(oneLineError(result), /^miniflannel: Redis unreachable at /);
      assert.equal(result.stdout, '');
    }
  });
});
