// Runs inside a test namespace and prints one JSON line for
// uso.system.test.ts to check: UDP through a real TUN with offload, over
// IPv4 or IPv6. The packets are reported whole and judged by the test, and
// the kernel's side is read from sysfs and /proc, so the checks do not trust
// the code they check.
import dgram from 'node:dgram';
import { readFileSync, writeFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { openTun, type TunDevice } from '../../daemon/tun/index.js';
import { loadNative } from '../../daemon/native.js';
import type { PacketBatch } from '../../daemon/net/packet-batch.js';
import { ENDS, FAR_PORT, SEGMENT, SENT_BYTES, TUN_PORT, pattern, type Family } from './udp-packets.js';

const report = (result: unknown) => process.stdout.write(`${JSON.stringify(result)}\n`);
const counter = (device: string, name: string) => Number(readFileSync(`/sys/class/net/${device}/statistics/${name}`, 'utf8'));

function open(name: string, family: Family): TunDevice {
  // The kernel would send a router solicitation from the new device a moment after it comes
  // up, which the packet counters would count; this namespace's devices send none.
  writeFileSync('/proc/sys/net/ipv6/conf/default/router_solicitations', '0');
  const tun = openTun({ name, offload: true, mtu: 1400, address: ENDS[4].tun, prefixLength: 24 });
  if (family === 6) {
    loadNative().addAddress6(tun.name, ENDS[6].tun, 128);
    loadNative().replaceRoute6(tun.name, 'fd00:99::', 64);
  }
  return tun;
}

/** One sendmsg of SENT_BYTES with UDP_SEGMENT (Node's dgram cannot set it): a UDP super-packet from the kernel's view. */
function sendSuperPacket(family: Family, payload: Buffer): void {
  const script = `
import socket, sys
s = socket.socket(socket.AF_INET6 if ${family} == 6 else socket.AF_INET, socket.SOCK_DGRAM)
s.bind((sys.argv[1], ${TUN_PORT}))
s.setsockopt(socket.IPPROTO_UDP, 103, ${SEGMENT})  # UDP_SEGMENT
s.sendto(sys.stdin.buffer.read(), (sys.argv[2], ${FAR_PORT}))
`;
  const env = { ...process.env };
  delete env.LD_PRELOAD;
  execFileSync('python3', ['-c', script, ENDS[family].tun, ENDS[family].far], { input: payload, env });
}

/** The kernel sends one UDP_SEGMENT buffer into the TUN; what the reader gets. */
async function cut(family: Family): Promise<void> {
  const tun = open('mfusocut', family);
  const sentBefore = counter(tun.name, 'tx_packets');
  const packets: string[] = [];
  // Frames not of the flow under test, such as the MLD report of a newly
  // joined group: the device counts them too.
  let strays = 0;
  const expected = Math.ceil(SENT_BYTES / SEGMENT);
  const done = new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`only ${packets.length} of ${expected} datagrams arrived`)), 5000);
    tun.start(
      (batch: PacketBatch) => {
        for (let i = 0; i < batch.count; i++) {
          const packet = batch.buffer.subarray(batch.offsets[i]!, batch.offsets[i]! + batch.lengths[i]!);
          const transport = packet[0]! >> 4 === 6 ? 40 : 20;
          const udp = packet[0]! >> 4 === 6 ? packet[6] === 17 : packet[9] === 17;
          if (udp && packet.readUInt16BE(transport + 2) === FAR_PORT) packets.push(packet.toString('base64'));
          else strays++;
        }
        if (packets.length >= expected) {
          clearTimeout(timer);
          resolve();
        }
      },
      reject,
    );
  });
  sendSuperPacket(family, pattern(SENT_BYTES, 1));
  await done;
  // Exact: the binding hands every frame it reads to the callback in the same turn, so none is read but not yet seen here.
  const sent = counter(tun.name, 'tx_packets') - sentBefore - strays;
  tun.close();
  report({ udpSegmentation: tun.udpSegmentation, sent, packets });
}

/** The UDP counters of this namespace's kernel (Udp: of /proc/net/snmp, or Udp6 of /proc/net/snmp6). */
function udpCounters(family: Family): { inDatagrams: number; inCsumErrors: number } {
  if (family === 6) {
    const lines = readFileSync('/proc/net/snmp6', 'utf8').split('\n').map((line) => line.trim().split(/\s+/));
    const value = (name: string) => Number(lines.find(([key]) => key === name)![1]);
    return { inDatagrams: value('Udp6InDatagrams'), inCsumErrors: value('Udp6InCsumErrors') };
  }
  const [names, values] = readFileSync('/proc/net/snmp', 'utf8').split('\n').filter((line) => line.startsWith('Udp:')).map((line) => line.split(/\s+/));
  const value = (name: string) => Number(values![names!.indexOf(name)]);
  return { inDatagrams: value('InDatagrams'), inCsumErrors: value('InCsumErrors') };
}

/**
 * Datagrams of one flow written to the TUN in one batch; what a socket on
 * the node receives. `packets` (base64) are the datagrams to write, built by
 * the test.
 */
async function join(family: Family, packets: Buffer[]): Promise<void> {
  const tun = open('mfusojoin', family);
  const socket = dgram.createSocket(family === 6 ? 'udp6' : 'udp4');
  await new Promise<void>((resolve) => socket.bind(TUN_PORT, ENDS[family].tun, () => resolve()));
  const received: string[] = [];
  const done = new Promise<void>((resolve) => {
    const timer = setTimeout(resolve, 3000);
    socket.on('message', (message) => {
      received.push(message.toString('base64'));
      if (received.length === packets.length) {
        clearTimeout(timer);
        resolve();
      }
    });
  });
  const before = udpCounters(family);
  const takenBefore = counter(tun.name, 'rx_packets');
  const buffer = Buffer.concat(packets);
  const offsets = new Uint32Array(packets.length);
  const lengths = new Uint32Array(packets.length);
  packets.forEach((packet, i) => {
    offsets[i] = i === 0 ? 0 : offsets[i - 1]! + lengths[i - 1]!;
    lengths[i] = packet.length;
  });
  const written = tun.write({ buffer, offsets, lengths, count: packets.length });
  await done;
  // A datagram with a bad checksum is counted, not delivered: give a straggler time to be counted too.
  await new Promise((resolve) => setTimeout(resolve, 100));
  const after = udpCounters(family);
  const taken = counter(tun.name, 'rx_packets') - takenBefore;
  socket.close();
  tun.close();
  report({
    udpSegmentation: tun.udpSegmentation,
    written,
    taken,
    received,
    inDatagrams: after.inDatagrams - before.inDatagrams,
    inCsumErrors: after.inCsumErrors - before.inCsumErrors,
  });
}

const [mode, familyText, input] = process.argv.slice(2);
const family = Number(familyText) as Family;
if (!(family in ENDS) || (mode !== 'cut' && mode !== 'join')) {
  process.stderr.write('usage: uso-probe cut|join 4|6 [base64 packets, comma-separated]\n');
  process.exit(2);
}
if (mode === 'cut') await cut(family);
else await join(family, (input ?? '').split(',').map((text) => Buffer.from(text, 'base64')));
