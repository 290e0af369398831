// Directed broadcasts into the cluster network (no root):
// the kernel routes a peer subnet's broadcast (10.244.2.255) into the TUN as
// unicast, but the node that leases that subnet would take it as a broadcast
// on its pod bridge, reaching every socket there. Neither direction carries it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PeerTable, type Peer } from '../../daemon/dataplane/peer-table.js';
import { routeEgress } from '../../daemon/dataplane/send.js';
import { isSubnetBroadcast } from '../../daemon/dataplane/ipv4-packet.js';
import { parseCidr, parseIPv4 } from '../../daemon/net/ipv4.js';
import { ipv4Packet } from '../harness/packets.js';
import { ingressVerdict, MemoryNetwork, memoryNode } from './memory-plane.js';
import { asPeer } from './peer-entries.js';

const peer: Peer = { subnet: parseCidr('10.244.2.0/24'), endpoint: { address: '198.18.0.2', ip: parseIPv4('198.18.0.2'), port: 8285 } };
const table = new PeerTable(24, [peer]);
const node = memoryNode(new MemoryNetwork(), { subnet: '10.244.1.0/24', ip: parseIPv4('198.18.0.1') });
node.plane.setPeers([peer]);

test('egress: a peer subnet broadcast and the network broadcast are non-unicast; the peer TUN address is not', () => {
  for (const destination of ['10.244.2.255', '10.244.255.255', '10.244.9.255']) {
    const p = ipv4Packet({ source: '10.244.1.2', destination });
    assert.deepEqual(asPeer(routeEgress(p, 0, p.length, table, 1472)), 'non-unicast', destination);
  }
  for (const destination of ['10.244.2.0', '10.244.2.254']) {
    const p = ipv4Packet({ source: '10.244.1.2', destination });
    assert.deepEqual(asPeer(routeEgress(p, 0, p.length, table, 1472)), peer, destination);
  }
});

test('ingress: a peer may not send to our subnet broadcast', () => {
  const broadcast = ipv4Packet({ source: '10.244.2.9', destination: '10.244.1.255' });
  assert.equal(ingressVerdict(node, broadcast, peer.endpoint.ip, 8285).verdict, 'wrong-destination');
  const tunAddress = ipv4Packet({ source: '10.244.2.9', destination: '10.244.1.0' });
  assert.equal(ingressVerdict(node, tunAddress, peer.endpoint.ip, 8285).verdict, null);
});

test('subnets of /31 and /32 have no broadcast address', () => {
  assert.equal(isSubnetBroadcast(parseIPv4('10.0.0.255'), 24), true);
  assert.equal(isSubnetBroadcast(parseIPv4('10.0.0.254'), 24), false);
  assert.equal(isSubnetBroadcast(parseIPv4('10.0.0.1'), 31), false);
  assert.equal(isSubnetBroadcast(parseIPv4('10.0.0.1'), 32), false);
  assert.equal(isSubnetBroadcast(parseIPv4('10.0.0.3'), 30), true);
});
