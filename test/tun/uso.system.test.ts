// UDP segmentation offload (USO) on a real TUN inside a test namespace
// (native/tun_device.cc, native/offload.cc): a UDP_SEGMENT send the kernel
// hands the TUN whole is read cut into its datagrams, and datagrams written
// in one batch are joined into one write the kernel delivers as the
// originals; on a kernel that refuses USO, neither happens and UDP still
// passes. The TUN's own packet counters tell a super-packet from its pieces.
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { internetChecksum } from '../../daemon/dataplane/ipv4-packet.js';
import { testNamespace } from '../harness/namespaces.js';
import { compiledTest } from '../harness/paths.js';
import type { Netns } from '../../lab/netns.js';
import { ENDS, FAR_PORT, SEGMENT, SENT_BYTES, TUN_PORT, pattern, udp4, udp6Packet, udpChecksumHolds, udpPayloadOf, type Family } from './udp-packets.js';

const probe = compiledTest('tun/uso-probe.js');

async function runProbe(ns: Netns, args: string[], prefix: string[] = []): Promise<any> {
  const out = await ns.exec([...prefix, process.execPath, probe, ...args]);
  return JSON.parse(out.trim().split('\n').pop()!);
}

/** The datagram sizes a SENT_BYTES buffer is cut into at SEGMENT bytes. */
const segmentSizes = Array.from({ length: Math.ceil(SENT_BYTES / SEGMENT) }, (_, i) => Math.min(SEGMENT, SENT_BYTES - i * SEGMENT));

/** Checks the datagrams the TUN reader got for one UDP_SEGMENT send: sizes, bytes, every header and checksum. */
function assertCutFromSend(family: Family, encoded: string[]): void {
  const packets = encoded.map((text) => Buffer.from(text, 'base64'));
  assert.deepEqual(packets.map((p) => udpPayloadOf(p).length), segmentSizes, 'one datagram per segment, the last shorter');
  assert.deepEqual(Buffer.concat(packets.map(udpPayloadOf)), pattern(SENT_BYTES, 1), 'the bytes sent, in order');
  packets.forEach((packet, i) => {
    const ip = family === 6 ? 40 : 20;
    assert.equal(packet.readUInt16BE(ip), TUN_PORT, `datagram ${i}: source port`);
    assert.equal(packet.readUInt16BE(ip + 2), FAR_PORT, `datagram ${i}: destination port`);
    assert.equal(packet.readUInt16BE(ip + 4), packet.length - ip, `datagram ${i}: UDP length`);
    assert.ok(udpChecksumHolds(packet), `datagram ${i}: UDP checksum`);
    if (family === 6) {
      assert.equal(packet.readUInt16BE(4), packet.length - 40, `datagram ${i}: payload length`);
    } else {
      assert.equal(packet.readUInt16BE(2), packet.length, `datagram ${i}: total length`);
      assert.equal(internetChecksum(packet, 0, 20), 0, `datagram ${i}: header checksum`);
      assert.equal(packet.readUInt16BE(4), (Buffer.from(encoded[0]!, 'base64').readUInt16BE(4) + i) & 0xffff, `datagram ${i}: id`);
    }
  });
}

/** Ten datagrams of one flow from the far end to the TUN's socket, the last shorter; base64 for the probe's command line. */
function flow(family: Family): { packets: string; payloads: string[] } {
  const payloads = segmentSizes.map((size, i) => pattern(size, i));
  const ends = { source: ENDS[family].far, destination: ENDS[family].tun, sourcePort: FAR_PORT, destinationPort: TUN_PORT };
  const packets = payloads.map((payload, i) => (family === 6 ? udp6Packet({ ...ends, payload }) : udp4({ ...ends, payload, id: 100 + i })));
  return { packets: packets.map((p) => p.toString('base64')).join(','), payloads: payloads.map((p) => p.toString('base64')) };
}

for (const family of [4, 6] as const) {
  test(`IPv${family}: one UDP_SEGMENT send reaches the TUN whole and is read cut into its datagrams, checksums complete`, async () => {
    const ns = await testNamespace();
    const result = await runProbe(ns, ['cut', String(family)]);
    assert.equal(result.udpSegmentation, true, 'USO is on (Linux 6.2+)');
    assert.equal(result.sent, 1, 'the TUN transmitted one packet: the super-packet, not its pieces');
    assertCutFromSend(family, result.packets);
  });

  test(`IPv${family}: datagrams of one flow written in one batch go to the kernel as one packet and reach a socket as the originals`, async () => {
    const ns = await testNamespace();
    const { packets, payloads } = flow(family);
    const result = await runProbe(ns, ['join', String(family), packets]);
    assert.equal(result.udpSegmentation, true, 'USO is on (Linux 6.2+)');
    assert.equal(result.written, payloads.length, 'every datagram counted as written');
    assert.equal(result.taken, 1, 'the TUN received one packet: the joined one');
    assert.deepEqual(result.received, payloads, 'the datagrams, whole and in order');
    assert.equal(result.inDatagrams, payloads.length);
    assert.equal(result.inCsumErrors, 0, 'no UDP checksum errors');
  });
}

/**
 * A kernel before 6.2, as far as the TUN can tell: an LD_PRELOAD shim
 * refuses TUNSETOFFLOAD with USO4 or USO6 as it does, and logs each
 * TUNSETOFFLOAD asked for and its answer.
 */
function olderKernelShim(): { library: string; log: string } {
  const dir = mkdtempSync(path.join(tmpdir(), 'miniflannel-uso-'));
  after(() => rmSync(dir, { recursive: true, force: true }));
  const source = path.join(dir, 'no-uso.c');
  const library = path.join(dir, 'no-uso.so');
  const log = path.join(dir, 'offloads.log');
  writeFileSync(
    source,
    `#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <sys/ioctl.h>
#include <linux/if_tun.h>

int ioctl(int fd, unsigned long request, ...) {
  va_list args;
  va_start(args, request);
  void *arg = va_arg(args, void *);
  va_end(args);
  int (*next)(int, unsigned long, ...) = (int (*)(int, unsigned long, ...))dlsym(RTLD_NEXT, "ioctl");
  if (request != TUNSETOFFLOAD) return next(fd, request, arg);
  int refused = ((unsigned long)arg & 0x60) != 0;
  int result = refused ? -1 : next(fd, request, arg);
  FILE *log = fopen("${log}", "a");
  fprintf(log, "0x%lx %s\\n", (unsigned long)arg, refused ? "refused" : result == 0 ? "taken" : "failed");
  fclose(log);
  if (refused) errno = EINVAL;
  return result;
}
`,
  );
  execFileSync('cc', ['-shared', '-fPIC', '-o', library, source, '-ldl']);
  return { library, log };
}

test('on a kernel that refuses USO the TUN keeps TCP offload alone: UDP is read as the kernel cut it, and written unjoined', async (t) => {
  const ns = await testNamespace();
  const shim = olderKernelShim();
  const preload = ['env', `LD_PRELOAD=${shim.library}`];
  const cut = await runProbe(ns, ['cut', '4'], preload);
  const { packets, payloads } = flow(4);
  const joined = await runProbe(ns, ['join', '4', packets], preload);

  await t.test('each device asked for TCP and UDP offload, was refused, and took TCP offload alone', () => {
    const once = ['0x6f refused', '0xf taken']; // CSUM|TSO4|TSO6|TSO_ECN with USO4|USO6, then without
    assert.deepEqual(readFileSync(shim.log, 'utf8').trim().split('\n'), [...once, ...once]);
  });
  await t.test('USO is reported off', () => {
    assert.equal(cut.udpSegmentation, false);
    assert.equal(joined.udpSegmentation, false);
  });
  await t.test('the kernel cut the send itself, and the reader gets the same datagrams', () => {
    assert.equal(cut.sent, segmentSizes.length, 'the TUN transmitted each datagram');
    assertCutFromSend(4, cut.packets);
  });
  await t.test('the datagrams are written one by one and all arrive', () => {
    assert.equal(joined.written, payloads.length);
    assert.equal(joined.taken, payloads.length, 'one packet per datagram');
    assert.deepEqual(joined.received, payloads);
    assert.equal(joined.inCsumErrors, 0);
  });
});
