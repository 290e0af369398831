// Runs inside a test namespace (a TUN device belongs to the namespace of
// the process that creates it) and prints one JSON line for the test to check.
import dgram from 'node:dgram';
import { readdirSync, readFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { openTun, type TunDevice } from '../../daemon/tun/index.js';
import type { PacketBatch } from '../../daemon/net/packet-batch.js';
import { ipv4Packet } from '../harness/packets.js';

const openFds = () => readdirSync('/proc/self/fd').length;
const report = (result: unknown) => process.stdout.write(`${JSON.stringify(result)}\n`);

function describeError(err: unknown) {
  const e = err as NodeJS.ErrnoException;
  return { code: e.code, message: e.message };
}

async function leak(): Promise<void> {
  const cycle = (i: number) => {
    const tun = openTun({ name: 'mfleak', mtu: 1400, address: '10.99.0.1', prefixLength: 32 });
    // Half the devices are closed while being read, so the poll handle is released too.
    if (i % 2 === 0) tun.start(() => undefined, () => undefined);
    tun.close();
  };
  // Node and libuv open some descriptors lazily at start-up; count once that has settled.
  cycle(0);
  await new Promise((resolve) => setTimeout(resolve, 50));
  const before = openFds();
  for (let i = 0; i < 200; i++) cycle(i);
  await new Promise((resolve) => setTimeout(resolve, 50));
  const after = openFds();
  const links = execFileSync('ip', ['-o', 'link', 'show']).toString();
  report({ before, after, linkRemains: links.includes('mfleak') });
}

const offload = process.argv[3] !== 'plain';

/** The kernel routes UDP packets into the device; they arrive in batches. */
async function read(): Promise<void> {
  const tun = openTun({ name: 'mfread', offload, mtu: 1400, address: '10.99.0.1', prefixLength: 24 });
  const socket = dgram.createSocket('udp4');
  const payloads: string[] = [];
  const batchSizes: number[] = [];
  const total = 200;
  await new Promise<void>((resolve) => {
    tun.start(
      (batch: PacketBatch) => {
        batchSizes.push(batch.count);
        for (let i = 0; i < batch.count; i++) {
          const at = batch.offsets[i]!;
          if (batch.buffer[at]! >> 4 === 4 && batch.buffer[at + 9] === 17) {
            payloads.push(batch.buffer.subarray(at + 28, at + batch.lengths[i]!).toString());
          }
        }
        if (payloads.length >= total) resolve();
      },
      () => undefined,
    );
    socket.bind(0, '10.99.0.1', () => {
      for (let i = 0; i < total; i++) socket.send(`packet-${i}`, 9, '10.99.0.2');
    });
  });
  socket.close();
  tun.close();
  report({ payloads, batchSizes, capacity: tun.batchCapacity });
}

/** Packets written in one call reach a socket on the node. */
async function write(): Promise<void> {
  const tun = openTun({ name: 'mfwrite', offload, mtu: 1400, address: '10.99.0.1', prefixLength: 24 });
  const socket = dgram.createSocket('udp4');
  await new Promise<void>((resolve) => socket.bind(7777, '10.99.0.1', () => resolve()));
  const received: string[] = [];
  const count = 10;
  const done = new Promise<void>((resolve) => {
    socket.on('message', (message) => {
      received.push(message.toString());
      if (received.length === count) resolve();
    });
  });
  const packets = Array.from({ length: count }, (_, i) => {
    const body = Buffer.from(`written-${i}`);
    const udp = Buffer.alloc(8 + body.length);
    udp.writeUInt16BE(5555, 0);
    udp.writeUInt16BE(7777, 2);
    udp.writeUInt16BE(udp.length, 4);
    body.copy(udp, 8); // checksum 0: none, which IPv4 allows
    return ipv4Packet({ source: '10.99.0.2', destination: '10.99.0.1', protocol: 17, payload: udp });
  });
  const buffer = Buffer.concat(packets);
  // One zero-length slot among them: dropped, not written, and not in the count written.
  const offsets = new Uint32Array(count + 1);
  const lengths = new Uint32Array(count + 1);
  let at = 0;
  packets.forEach((p, i) => {
    const slot = i < count / 2 ? i : i + 1;
    offsets[slot] = at;
    lengths[slot] = p.length;
    at += p.length;
  });
  offsets[count / 2] = 0;
  lengths[count / 2] = 0;
  const written = tun.write({ buffer, offsets, lengths, count: count + 1 });
  await done;
  socket.close();
  tun.close();
  report({ written, received });
}

/** What the interface looks like to the kernel after openTun. */
function setup(): void {
  const sysfs = (name: string, attribute: string) => Number(readFileSync(`/sys/class/net/${name}/${attribute}`, 'utf8'));
  const describe = (tun: TunDevice) => ({ mtu: sysfs(tun.name, 'mtu'), txQueueLength: sysfs(tun.name, 'tx_queue_len') });
  const byDefault = openTun({ name: 'mfdefault', mtu: 1400, address: '10.99.0.1', prefixLength: 32 });
  const chosen = openTun({ name: 'mfchosen', mtu: 1300, address: '10.99.1.1', prefixLength: 32, txQueueLength: 7000 });
  report({ byDefault: describe(byDefault), chosen: describe(chosen) });
  byDefault.close();
  chosen.close();
}

function errors(): void {
  const results: Record<string, unknown> = {};
  try {
    openTun({ name: 'x'.repeat(16), mtu: 1400, address: '10.99.0.1', prefixLength: 32 });
  } catch (err) {
    results.longName = describeError(err);
  }
  const first = openTun({ name: 'mfbusy', mtu: 1400, address: '10.99.0.1', prefixLength: 32 });
  try {
    openTun({ name: 'mfbusy', mtu: 1400, address: '10.99.0.1', prefixLength: 32 });
  } catch (err) {
    results.busy = describeError(err);
  }
  first.close();
  try {
    openTun({ name: 'mfaddr', mtu: 1400, address: '10.99.0.300', prefixLength: 32 });
  } catch (err) {
    results.badAddress = describeError(err);
  }
  const closed: TunDevice = openTun({ name: 'mfclosed', mtu: 1400, address: '10.99.0.1', prefixLength: 32 });
  closed.close();
  try {
    closed.write({ buffer: Buffer.alloc(20), offsets: new Uint32Array(1), lengths: new Uint32Array([20]), count: 1 });
  } catch (err) {
    results.writeAfterClose = describeError(err);
  }
  results.fdsLeft = openFds();
  report(results);
}

function noPermission(): void {
  try {
    openTun({ name: 'mfperm', mtu: 1400, address: '10.99.0.1', prefixLength: 32 });
    report({ opened: true });
  } catch (err) {
    report(describeError(err));
  }
}

/** Deleting the interface under a reader ends reading with an error, once. */
async function deleted(): Promise<void> {
  const tun = openTun({ name: 'mfgone', mtu: 1400, address: '10.99.0.1', prefixLength: 32 });
  const errors: string[] = [];
  tun.start(() => undefined, (err) => errors.push(err.message));
  execFileSync('ip', ['link', 'delete', 'mfgone']);
  await new Promise((resolve) => setTimeout(resolve, 200));
  tun.close();
  report({ errors });
}

const modes: Record<string, () => void | Promise<void>> = { leak, read, write, setup, errors, noPermission, deleted };
const mode = modes[process.argv[2] ?? ''];
if (!mode) {
  process.stderr.write(`usage: probe ${Object.keys(modes).join('|')}\n`);
  process.exit(2);
}
await mode();
