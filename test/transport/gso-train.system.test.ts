// A sender on the same host has its UDP GSO train delivered whole to a
// socket with UDP_GRO: up to 128 segments since Linux 6.11, where GRO
// coalesces 64. A real data plane reads such trains through the mmsg
// transport on loopback (a MemoryTun stands in for the TUN, which plays no
// part here) from a Python sender that sets UDP_SEGMENT, one sendto per
// train. The trains wait in the socket until the plane starts, so its first
// read takes as many as it may at once. Every segment ends delivered or
// counted: the default room holds a read of whole trains, and a read with
// less room counts the rest as received and as 'segments-overflow'.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createInterface } from 'node:readline';
import pino from 'pino';
import { exited, start, stopProcess } from '../../lab/exec.js';
import { waitFor } from '../../lab/daemon.js';
import { DataPlane, type CountersSnapshot } from '../../daemon/dataplane/index.js';
import { parseCidr } from '../../daemon/net/ipv4.js';
import { parseEndpoint } from '../../daemon/transport/index.js';
import { openMmsgTransport, type MmsgTransportOptions } from '../../daemon/transport/mmsg.js';
import { MemoryTun } from '../../daemon/tun/memory.js';
import { ipv4Packet } from '../harness/packets.js';
import { unaccounted } from '../dataplane/memory-plane.js';

/** Binds 127.0.0.1, prints its port, then sends each stdin line "SIZE HEX" as one GSO message of SIZE-byte segments. */
const SENDER = `
import socket, sys
UDP_SEGMENT = 103
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1], flush=True)
for line in sys.stdin:
    size, train = line.split()
    s.setsockopt(socket.SOL_UDP, UDP_SEGMENT, int(size))
    s.sendto(bytes.fromhex(train), ("127.0.0.1", int(sys.argv[1])))
`;

const SEGMENT = 100;
const SEGMENTS = 128;
/** More than one read takes (16 messages by default). */
const TRAINS = 20;

/** Train t's packets, pod to pod: equal-sized but the last, each numbered in its payload. */
function train(t: number): Buffer[] {
  return Array.from({ length: SEGMENTS }, (_, i) => {
    const payload = Buffer.alloc(i === SEGMENTS - 1 ? 37 : SEGMENT - 20, i);
    payload.writeUInt16BE((t << 8) | i, 0);
    return ipv4Packet({ source: '10.244.1.7', destination: '10.244.2.9', payload });
  });
}

/**
 * Sends TRAINS trains from a peer on loopback to a data plane whose transport
 * is opened with `options`, then starts the plane; returns the packets it
 * wrote and its counters.
 */
async function receiveTrains(options: Partial<MmsgTransportOptions>): Promise<{ trains: Buffer[][]; written: Buffer[]; counters: CountersSnapshot }> {
  const transport = openMmsgTransport({ bindAddress: '127.0.0.1', port: 0, ...options });
  const tun = new MemoryTun();
  const subnet = parseCidr('10.244.2.0/24');
  const plane = new DataPlane({ tun, transport, localSubnet: subnet, overlayAddress: subnet.network, maxPacket: 1472, logger: pino({ level: 'silent' }) });
  const sender = start(['python3', '-c', SENDER, String(transport.port)], { stdio: ['pipe', 'pipe', 'inherit'] });
  try {
    const senderPort = Number((await createInterface({ input: sender.stdout! })[Symbol.asyncIterator]().next()).value);
    plane.setPeers([{ subnet: parseCidr('10.244.1.0/24'), endpoint: parseEndpoint('127.0.0.1', senderPort) }]);
    const trains = Array.from({ length: TRAINS }, (_, t) => train(t));
    sender.stdin!.end(trains.map((packets) => `${SEGMENT} ${Buffer.concat(packets).toString('hex')}\n`).join(''));
    assert.equal(await exited(sender), 0, 'the sender sent every train');
    plane.start((err) => assert.fail(err));
    const all = TRAINS * SEGMENTS;
    await waitFor(`${all} datagrams counted as received`, async () => plane.snapshot().udpPacketsReceived >= all, 10_000);
    return { trains, written: tun.takeWritten(), counters: plane.snapshot() };
  } finally {
    await stopProcess(sender);
    await plane.stop();
  }
}

test(`trains of ${SEGMENTS} segments reach the data plane whole with the default room, no segment lost or counted as overflow`, async () => {
  const { trains, written, counters } = await receiveTrains({});
  assert.deepEqual(written, trains.flat());
  assert.equal(counters.udpPacketsReceived, TRAINS * SEGMENTS);
  assert.equal(counters.ingressDrops['segments-overflow'], 0);
  assert.deepEqual(unaccounted(counters), { egress: 0, ingress: 0 });
});

test('with room for 64 datagrams per read, the first 64 of each train are delivered and the rest counted as received and as segments-overflow', async () => {
  const { trains, written, counters } = await receiveTrains({ messagesPerRead: 1, segmentsPerMessage: 64 });
  assert.deepEqual(written, trains.flatMap((packets) => packets.slice(0, 64)));
  assert.equal(counters.udpPacketsReceived, TRAINS * SEGMENTS);
  assert.equal(counters.tunPacketsWritten, TRAINS * 64);
  assert.equal(counters.ingressDrops['segments-overflow'], TRAINS * (SEGMENTS - 64));
  assert.deepEqual(unaccounted(counters), { egress: 0, ingress: 0 });
});
