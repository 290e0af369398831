// A sender on the same host has its UDP GSO train delivered whole to a
// socket with UDP_GRO: up to UDP_MAX_SEGMENTS segments, where GRO coalesces
// 64. The kernel refuses a longer train, and UDP_MAX_SEGMENTS is 128 since
// Linux 6.11 and 64 before; it is probed once, and the trains here are as
// long as the running kernel allows. A real data plane reads such trains
// through the mmsg transport on loopback (a MemoryTun stands in for the TUN,
// which plays no part here) from a Python sender that sets UDP_SEGMENT, one
// sendto per train. The trains wait in the socket until the plane starts,
// so its first read takes as many as it may at once. Every segment ends
// delivered or counted: the default room (128 datagrams a message) holds a
// read of whole trains, so 'segments-overflow' is a safeguard, and a read
// given less room counts the rest as received and as 'segments-overflow'.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { release } from 'node:os';
import { createInterface } from 'node:readline';
import pino from 'pino';
import { exited, run, start, stopProcess } from '../../lab/exec.js';
import { waitFor } from '../../lab/daemon.js';
import { DataPlane, type CountersSnapshot } from '../../daemon/dataplane/index.js';
import { parseCidr } from '../../daemon/net/ipv4.js';
import { parseEndpoint } from '../../daemon/transport/index.js';
import { openMmsgTransport, type MmsgTransportOptions } from '../../daemon/transport/mmsg.js';
import { MemoryTun } from '../../daemon/tun/memory.js';
import { ipv4Packet } from '../harness/packets.js';
import { unaccounted } from '../dataplane/memory-plane.js';

/** The socket option that makes one send a GSO train of segments of the given size. */
const UDP_SEGMENT = 103;
/** Bytes of every segment but a train's last. */
const SEGMENT = 100;

/** Binds 127.0.0.1, prints its port, then sends each stdin line "SIZE HEX" as one GSO message of SIZE-byte segments. */
const SENDER = `
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1], flush=True)
for line in sys.stdin:
    size, train = line.split()
    s.setsockopt(socket.SOL_UDP, ${UDP_SEGMENT}, int(size))
    s.sendto(bytes.fromhex(train), ("127.0.0.1", int(sys.argv[1])))
`;

/** Sends one GSO train of argv[1] segments to its own socket and prints what the kernel said: "sent" or the errno's name. */
const PROBE = `
import errno, socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", 0))
s.setsockopt(socket.SOL_UDP, ${UDP_SEGMENT}, ${SEGMENT})
try:
    s.sendto(bytes(${SEGMENT} * int(sys.argv[1])), s.getsockname())
    print("sent")
except OSError as e:
    print(errno.errorcode[e.errno])
`;

const sendTrainOf = async (segments: number) => (await run(['python3', '-c', PROBE, String(segments)])).trim();

/** The most segments a read has room for in one message by default (segmentsPerMessage). */
const DEFAULT_ROOM = 128;
/** What a 128-segment train gets from this kernel: "sent" since Linux 6.11, EINVAL before. */
const longTrainAnswer = await sendTrainOf(DEFAULT_ROOM);
/** The running kernel's UDP_MAX_SEGMENTS, and the length of every train here. */
const SEGMENTS = longTrainAnswer === 'sent' ? DEFAULT_ROOM : 64;
const kernel = `Linux ${release()} sends GSO trains of up to ${SEGMENTS} segments (a 128-segment send: ${longTrainAnswer})`;
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

test('the kernel refuses a GSO train longer than its UDP_MAX_SEGMENTS, which a read of the default room holds whole, so no local train can overflow', async (t) => {
  t.diagnostic(kernel);
  if (SEGMENTS < DEFAULT_ROOM) {
    t.diagnostic('a kernel before 6.11: its trains are of 64 segments at most, and the cases below run with trains of 64, not 128');
    assert.equal(longTrainAnswer, 'EINVAL');
  } else {
    t.diagnostic('Linux 6.11 or later: the cases below run with trains of 128 segments');
  }
  assert.equal(await sendTrainOf(SEGMENTS), 'sent');
  assert.equal(await sendTrainOf(SEGMENTS + 1), 'EINVAL');
});

test(`trains of ${SEGMENTS} segments reach the data plane whole with the default room, no segment lost or counted as overflow`, async (t) => {
  t.diagnostic(kernel);
  const { trains, written, counters } = await receiveTrains({});
  assert.deepEqual(written, trains.flat());
  assert.equal(counters.udpPacketsReceived, TRAINS * SEGMENTS);
  assert.equal(counters.ingressDrops['segments-overflow'], 0);
  assert.deepEqual(unaccounted(counters), { egress: 0, ingress: 0 });
});

const HALF = SEGMENTS / 2;

test(`with room for ${HALF} datagrams per read, the first ${HALF} of each train are delivered and the rest counted as received and as segments-overflow`, async (t) => {
  t.diagnostic(kernel);
  const { trains, written, counters } = await receiveTrains({ messagesPerRead: 1, segmentsPerMessage: HALF });
  assert.deepEqual(written, trains.flatMap((packets) => packets.slice(0, HALF)));
  assert.equal(counters.udpPacketsReceived, TRAINS * SEGMENTS);
  assert.equal(counters.tunPacketsWritten, TRAINS * HALF);
  assert.equal(counters.ingressDrops['segments-overflow'], TRAINS * (SEGMENTS - HALF));
  assert.deepEqual(unaccounted(counters), { egress: 0, ingress: 0 });
});
