// Runs inside a test namespace (a TUN device and rtnetlink changes belong to
// the namespace of the process that makes them) and prints one JSON line for
// ipv6.system.test.ts to check. Addresses, routes and counters are read back
// with `ip` and sysfs, so the checks do not trust the code they check.
import dgram from 'node:dgram';
import net from 'node:net';
import { createHash, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { openTun, type TunDevice } from '../../daemon/tun/index.js';
import { loadNative } from '../../daemon/native.js';
import { IPV6_DESTINATION_OFFSET, IPV6_SOURCE_OFFSET } from '../../daemon/dataplane/ipv6-packet.js';
import type { PacketBatch } from '../../daemon/net/packet-batch.js';

const report = (result: unknown) => process.stdout.write(`${JSON.stringify(result)}\n`);
const native = loadNative();
const NETWORK = 'fd00:10::';
const openDevice = (name: string, offload = false) => openTun({ name, offload, mtu: 1400, address: '10.98.9.1', prefixLength: 32 });

/** `ip -o` lines, the interface index and line continuations dropped, whitespace collapsed. */
const ipLines = (...args: string[]) =>
  execFileSync('ip', ['-o', ...args])
    .toString()
    .split('\n')
    .filter((line) => line !== '')
    .map((line) => line.replace(/^\d+: /, '').replace(/\\/g, ' ').replace(/\s+/g, ' ').trim());
const globalAddresses = (device: string) => ipLines('-6', 'addr', 'show', 'dev', device, 'scope', 'global');
const clusterRoutes = () => ipLines('-6', 'route', 'show', 'exact', `${NETWORK}/48`);

function refusal(change: () => void) {
  try {
    change();
    return { refused: false };
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    return { code: e.code, message: e.message };
  }
}

/** A datagram sent to an address of the IPv6 cluster network arrives in the TUN. */
async function arrivesInTun(tun: TunDevice): Promise<boolean> {
  const destination = Buffer.from([0xfd, 0, 0, 0x10, 0, 0, 0, 5, 0, 0, 0, 0, 0, 0, 0, 1]);
  const socket = dgram.createSocket('udp6');
  const arrived = await new Promise<boolean>((resolve) => {
    const timer = setTimeout(() => resolve(false), 2000);
    tun.start(
      (batch) => {
        for (let i = 0; i < batch.count; i++) {
          const at = batch.offsets[i]!;
          const packet = batch.buffer.subarray(at, at + batch.lengths[i]!);
          if (packet[0]! >> 4 === 6 && packet.subarray(IPV6_DESTINATION_OFFSET, IPV6_DESTINATION_OFFSET + 16).equals(destination)) {
            clearTimeout(timer);
            resolve(true);
          }
        }
      },
      () => undefined,
    );
    socket.send('into the tun', 9, 'fd00:10:0:5::1');
  });
  socket.close();
  return arrived;
}

async function rtnetlink(): Promise<void> {
  const other = openDevice('mfother6');
  const tun = openDevice('mfroute6');
  native.addAddress6(tun.name, 'fd00:10:0:1::1', 64);
  const address = globalAddresses(tun.name);
  // A restart adds the same address again.
  native.addAddress6(tun.name, 'fd00:10:0:1::1', 64);
  const addressAgain = globalAddresses(tun.name);

  native.replaceRoute6(other.name, NETWORK, 48);
  const first = clusterRoutes();
  // A restart routes the same network again, into what may be another device.
  native.replaceRoute6(tun.name, NETWORK, 48);
  const replaced = clusterRoutes();
  native.replaceRoute6(tun.name, NETWORK, 48);
  const again = clusterRoutes();
  const arrived = await arrivesInTun(tun);
  other.close();
  tun.close();
  const afterClose = clusterRoutes();

  const missingDevice = refusal(() => native.replaceRoute6('mfnone', NETWORK, 48));
  const missingAddressDevice = refusal(() => native.addAddress6('mfnone', 'fd00:10:0:1::1', 64));
  const notAnAddress = refusal(() => native.replaceRoute6('lo', 'fd00:10::x', 48));
  const prefixTooLong = refusal(() => native.addAddress6('lo', 'fd00:10::1', 129));
  // The kernel's own words come through: a device that is not up cannot carry a route.
  const down = new native.TunDevice('mfdown6', false);
  const deviceDown = refusal(() => native.replaceRoute6(down.name, NETWORK, 48));
  down.close();
  const small = openTun({ name: 'mfsmall6', offload: false, mtu: 1000, address: '10.98.8.1', prefixLength: 32 });
  const mtuTooSmall = refusal(() => native.addAddress6(small.name, 'fd00:10:0:2::1', 64));
  small.close();
  const disabled = openDevice('mfnov6');
  execFileSync('sysctl', ['-qw', `net.ipv6.conf.${disabled.name}.disable_ipv6=1`]);
  const ipv6Disabled = refusal(() => native.addAddress6(disabled.name, 'fd00:10:0:3::1', 64));
  disabled.close();

  report({
    address, addressAgain, first, replaced, again, arrived, afterClose,
    missingDevice, missingAddressDevice, notAnAddress, prefixTooLong, deviceDown, mtuTooSmall, ipv6Disabled,
  });
}

/** Run without CAP_NET_ADMIN; `lo` exists in every namespace. */
function noPermission(): void {
  report({
    route: refusal(() => native.replaceRoute6('lo', NETWORK, 48)),
    address: refusal(() => native.addAddress6('lo', 'fd00:10::1', 64)),
    routes: clusterRoutes(),
    addresses: globalAddresses('lo'),
  });
}

/**
 * A TUN that hands the kernel's packets back to it, so one namespace holds
 * both ends of a TCP connection through the device. The client at LOCAL[0]
 * talks to MAPPED[1], which is routed into the TUN; the reflector moves both
 * addresses between the LOCAL and MAPPED blocks (one byte, 0x21 <-> 0x22: 10.33 <-> 10.34, fd00:21 <-> fd00:22),
 * so the kernel receives it from MAPPED[0] for LOCAL[1], where the server
 * listens, and the replies go back the same way. The two changes cancel out
 * in every checksum.
 */
const reflection = {
  4: { local: ['10.33.0.1', '10.33.0.2'], mapped: ['10.34.0.1', '10.34.0.2'], swapAt: [12 + 1, 16 + 1] },
  6: { local: ['fd00:21::1', 'fd00:21::2'], mapped: ['fd00:22::1', 'fd00:22::2'], swapAt: [IPV6_SOURCE_OFFSET + 3, IPV6_DESTINATION_OFFSET + 3] },
} as const;
const LOCAL_BYTE = 0x21;
const MAPPED_BYTE = 0x22;

/** Moves a packet's addresses between the blocks in place; false (left alone) if it is not one to reflect. */
function reflect(packet: Buffer, family: 4 | 6): boolean {
  if (packet.length === 0 || packet[0]! >> 4 !== family) return false;
  const [source, destination] = reflection[family].swapAt;
  if (packet[source] !== LOCAL_BYTE || packet[destination] !== MAPPED_BYTE) return false;
  packet[source] = MAPPED_BYTE;
  packet[destination] = LOCAL_BYTE;
  return true;
}

const counter = (device: string, name: string) => Number(readFileSync(`/sys/class/net/${device}/statistics/${name}`, 'utf8'));

/**
 * Sends `bytes` over TCP through the reflecting TUN and reports what the
 * reader and the writer handled next to what the kernel counted on the
 * device: tx_packets counts the frames the reader took (a super-packet is
 * one), rx_packets the frames the writer gave (a joined run is one).
 */
async function reflectTcp(family: 4 | 6, offload: boolean): Promise<void> {
  const bytes = 8 * 1024 * 1024;
  const { local, mapped } = reflection[family];
  const tun = openTun({ name: 'mfreflect', offload, mtu: 1400, address: family === 4 ? local[0] : '10.98.9.1', prefixLength: 32 });
  if (family === 4) {
    execFileSync('ip', ['addr', 'add', `${local[1]}/32`, 'dev', tun.name]);
    execFileSync('ip', ['route', 'add', `${mapped[0].replace(/\.\d+$/, '.0')}/24`, 'dev', tun.name]);
  } else {
    for (const address of local) native.addAddress6(tun.name, address, 128);
    native.replaceRoute6(tun.name, mapped[0].replace(/::1$/, '::'), 64);
  }

  const counts = { packetsRead: 0, refusedReads: 0, packetsWritten: 0, framesRead: 0, framesWritten: 0 };
  tun.start(
    (batch: PacketBatch) => {
      counts.packetsRead += batch.count;
      for (let i = 0; i < batch.count; i++) {
        const at = batch.offsets[i]!;
        const length = batch.lengths[i]!;
        if (length === 0) counts.refusedReads++;
        // Not ours to reflect (router solicitations, say): a zero length is left unwritten.
        if (!reflect(batch.buffer.subarray(at, at + length), family)) batch.lengths[i] = 0;
      }
      counts.packetsWritten += tun.write(batch);
    },
    (err) => {
      throw err;
    },
  );

  const data = randomBytes(bytes);
  const received = await new Promise<Buffer>((resolve, reject) => {
    const server = net.createServer((connection) => {
      const chunks: Buffer[] = [];
      connection.on('data', (chunk) => chunks.push(chunk));
      connection.on('end', () => {
        server.close();
        resolve(Buffer.concat(chunks));
      });
    });
    server.on('error', reject);
    server.listen(5201, local[1], () => {
      const client = net.connect({ host: mapped[1], port: 5201, localAddress: local[0] }, () => client.end(data));
      client.on('error', reject);
    });
  });
  // Let the last ACKs and FINs through before counting.
  await new Promise((resolve) => setTimeout(resolve, 200));
  counts.framesRead = counter(tun.name, 'tx_packets');
  counts.framesWritten = counter(tun.name, 'rx_packets');
  tun.close();
  const digest = (buffer: Buffer) => createHash('sha256').update(buffer).digest('hex');
  report({ ...counts, intact: received.length === bytes && digest(received) === digest(data) });
}

const modes: Record<string, () => void | Promise<void>> = {
  rtnetlink,
  noPermission,
  reflect4: () => reflectTcp(4, process.argv[3] === 'offload'),
  reflect6: () => reflectTcp(6, process.argv[3] === 'offload'),
};
const mode = modes[process.argv[2] ?? ''];
if (!mode) {
  process.stderr.write(`usage: ipv6-probe ${Object.keys(modes).join('|')}\n`);
  process.exit(2);
}
await mode();
