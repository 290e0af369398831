// The kernel is the judge of a Packet Too Big: written into a real TUN for a
// datagram a local socket sent, it must pass the kernel's checksum and
// RFC 4443 checks and teach the route the smaller path MTU. A TUN belongs to
// the namespace of the process that opens it, so this file runs itself as the
// probe inside a test namespace.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { ICMP6_ERROR_MAX, writePacketTooBig } from '../../daemon/dataplane/icmp6.js';
import { openTun } from '../../daemon/tun/index.js';
import type { PacketBatch } from '../../daemon/net/packet-batch.js';
import { testNamespace } from '../harness/namespaces.js';

const PROBE = 'packet-too-big-probe';
const LOCAL = 'fd00:99::1';
const PEER = 'fd00:99::2';

const routeToPeer = () => execFileSync('ip', ['-6', 'route', 'get', PEER]).toString();

async function probe(): Promise<void> {
  const tun = openTun({ name: 'mfptb', offload: false, mtu: 1500, address: '10.99.0.1', prefixLength: 24 });
  execFileSync('ip', ['-6', 'addr', 'add', `${LOCAL}/64`, 'dev', 'mfptb', 'nodad']);
  const socket = dgram.createSocket('udp6');
  await new Promise<void>((resolve) => socket.bind(0, LOCAL, () => resolve()));

  const sent = await new Promise<Buffer>((resolve) => {
    tun.start(
      (batch: PacketBatch) => {
        for (let i = 0; i < batch.count; i++) {
          const at = batch.offsets[i]!;
          const isUdp6 = batch.buffer[at]! >> 4 === 6 && batch.buffer[at + 6] === 17;
          if (isUdp6) resolve(Buffer.from(batch.buffer.subarray(at, at + batch.lengths[i]!)));
        }
      },
      () => undefined,
    );
    socket.send(Buffer.alloc(1400, 1), 9999, PEER);
  });

  const router = Buffer.alloc(16);
  router.writeUInt32BE(0xfd000099, 0);
  router[15] = 0xfe;
  const writeTooBig = (mtu: number, corrupt: boolean) => {
    const buffer = Buffer.alloc(ICMP6_ERROR_MAX);
    const length = writePacketTooBig(buffer, 0, sent, 0, sent.length, mtu, router);
    if (corrupt) buffer.writeUInt16BE(buffer.readUInt16BE(42) ^ 1, 42);
    return tun.write({ buffer, offsets: Uint32Array.of(0), lengths: Uint32Array.of(length), count: 1 });
  };
  const settle = () => new Promise((resolve) => setTimeout(resolve, 200));

  const before = routeToPeer();
  const corruptWritten = writeTooBig(1350, true);
  await settle();
  const afterCorrupt = routeToPeer();
  const written = writeTooBig(1300, false);
  await settle();
  const afterValid = routeToPeer();

  socket.close();
  tun.close();
  process.stdout.write(`${JSON.stringify({ sentLength: sent.length, before, corruptWritten, afterCorrupt, written, afterValid })}\n`);
}

if (process.argv[2] === PROBE) {
  await probe();
} else {
  test('the kernel learns the path MTU from our Packet Too Big, and ignores one with a broken checksum', async () => {
    const ns = await testNamespace();
    const out = await ns.exec([process.execPath, fileURLToPath(import.meta.url), PROBE], { timeoutMs: 20_000 });
    const result = JSON.parse(out.trim().split('\n').pop()!);
    assert.equal(result.sentLength, 40 + 8 + 1400, 'the datagram went out whole');
    assert.doesNotMatch(result.before, /mtu/);
    assert.equal(result.corruptWritten, 1);
    assert.doesNotMatch(result.afterCorrupt, /mtu/, 'a bad checksum teaches nothing');
    assert.equal(result.written, 1);
    assert.match(result.afterValid, /\bmtu 1300\b/);
  });
}
