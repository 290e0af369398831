// Datagrams a transport received but had no room to hand on: the data plane
// counts them as received and as 'segments-overflow', so the ingress
// identity holds. The in-memory transport models the overflow as the native
// socket has it (a wake-up bringing more than the read's room); the native
// socket's own count, on a real GSO train, is test/transport/gso-train.system.test.ts.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Counters } from '../../daemon/dataplane/counters.js';
import { parseIPv4 } from '../../daemon/net/ipv4.js';
import { parseIPv6 } from '../../daemon/net/ipv6.js';
import { DualTransport } from '../../daemon/transport/dual.js';
import { ipv4Packet } from '../harness/packets.js';
import { datagramBatch, memoryNode, meshed, MemoryNetwork, PORT, unaccounted } from './memory-plane.js';

const ipA = parseIPv4('198.18.0.1');
const ipB = parseIPv4('198.18.0.2');

test('a wake-up beyond the batch capacity: what fits is delivered, the rest counted as received and as segments-overflow', () => {
  const network = new MemoryNetwork();
  const a = memoryNode(network, { subnet: '10.244.1.0/24', ip: ipA });
  const b = memoryNode(network, { subnet: '10.244.2.0/24', ip: ipB, transportBatchCapacity: 4 });
  meshed(a, b);
  const packets = Array.from({ length: 6 }, (_, i) => ipv4Packet({ source: '10.244.1.7', destination: '10.244.2.9', payload: Buffer.of(i) }));
  b.transport.receive(datagramBatch(packets.map((data) => ({ data, ip: ipA, port: PORT }))));

  assert.deepEqual(b.tun.takeWritten(), packets.slice(0, 4));
  assert.equal(b.transport.segmentsOverflowed, 2);
  const counters = b.plane.snapshot();
  assert.equal(counters.udpPacketsReceived, 6);
  assert.equal(counters.tunPacketsWritten, 4);
  assert.equal(counters.ingressDrops['segments-overflow'], 2);
  assert.deepEqual(unaccounted(counters), { egress: 0, ingress: 0 });
});

test('a dual transport reports what both of its sockets could not hand on, and a snapshot counts it', () => {
  const network = new MemoryNetwork();
  const ipv4 = network.open({ ip: ipB, port: PORT }, { batchCapacity: 2 });
  const ipv6 = network.open({ ip6: parseIPv6('2001:2::2'), port: PORT }, { batchCapacity: 1 });
  const dual = new DualTransport(ipv4, ipv6);
  dual.start(() => undefined, (err) => assert.fail(err));
  const data = Buffer.from('x');
  ipv4.receive(datagramBatch([1, 2, 3].map(() => ({ data, ip: ipA, port: PORT }))));
  ipv6.receive(datagramBatch([1, 2, 3].map(() => ({ data, ip6: '2001:2::1', port: PORT }))));

  assert.equal(dual.segmentsOverflowed, 1 + 2);
  const counters = new Counters().snapshot(dual);
  assert.equal(counters.udpPacketsReceived, 3);
  assert.equal(counters.ingressDrops['segments-overflow'], 3);
});
