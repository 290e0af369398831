// The socket transports over a real IPv6 underlay: two namespaces joined by
// a veth with 2001:2::1/64 and 2001:2::2/64 (RFC 5180's benchmarking range),
// an underlay-probe.ts in each end. The mmsg transport (recvmmsg/sendmmsg,
// UDP GSO and GRO) and the dgram one exchange datagrams both ways, trains of
// equal sizes included, and each reports every sender's IPv6 address and
// port. The IPv4 underlay on the same veth is the reference.
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { createInterface, type Interface } from 'node:readline';
import type { ChildProcess } from 'node:child_process';
import { stopProcess } from '../../lab/exec.js';
import type { Netns } from '../../lab/netns.js';
import { testNamespace } from '../harness/namespaces.js';
import { compiledTest } from '../harness/paths.js';
import type { Command, Datagram, Received } from './underlay-probe.js';

const probeScript = compiledTest('transport/underlay-probe.js');

/** One probe process: a transport in a namespace, answering one line per command. */
class Probe {
  private readonly lines: AsyncIterator<string>;

  private constructor(
    private readonly child: ChildProcess,
    reader: Interface,
  ) {
    this.lines = reader[Symbol.asyncIterator]();
  }

  /** Starts a probe, stopped when the current test ends. */
  static async open(ns: Netns, kind: 'mmsg' | 'dgram', bindAddress: string, port: number): Promise<{ probe: Probe; ready: { port?: number; family?: number; error?: string } }> {
    const child = ns.spawn([process.execPath, probeScript, kind, bindAddress, String(port)], { stdio: ['pipe', 'pipe', 'inherit'] });
    const probe = new Probe(child, createInterface({ input: child.stdout! }));
    after(() => probe.stop());
    return { probe, ready: await probe.next() };
  }

  async send(datagrams: Datagram[], tag: number): Promise<number> {
    const { refused } = await this.request({ op: 'send', datagrams, tag });
    return refused;
  }

  received(count: number): Promise<Received> {
    return this.request({ op: 'received', count });
  }

  stop(): Promise<unknown> {
    this.child.stdin?.end();
    return stopProcess(this.child);
  }

  private request(command: Command): Promise<any> {
    this.child.stdin!.write(`${JSON.stringify(command)}\n`);
    return this.next();
  }

  private async next(): Promise<any> {
    const { value, done } = await this.lines.next();
    if (done) throw new Error('the probe exited without answering');
    return JSON.parse(value);
  }
}

/** Joins two fresh namespaces with a veth carrying both underlays, addresses usable at once (nodad). */
async function underlay(): Promise<[Netns, Netns]> {
  const [one, two] = [await testNamespace(), await testNamespace()];
  await one.ip('link', 'add', 'under1', 'type', 'veth', 'peer', 'name', 'under2', 'netns', two.name);
  for (const [ns, device, n] of [[one, 'under1', 1], [two, 'under2', 2]] as const) {
    await ns.ip('-6', 'addr', 'add', `2001:2::${n}/64`, 'dev', device, 'nodad');
    await ns.ip('addr', 'add', `198.18.0.${n}/24`, 'dev', device);
    await ns.ip('link', 'set', device, 'up');
  }
  return [one, two];
}

async function opened(ns: Netns, kind: 'mmsg' | 'dgram', bindAddress: string, port: number, family: 4 | 6): Promise<Probe> {
  const { probe, ready } = await Probe.open(ns, kind, bindAddress, port);
  assert.deepEqual(ready, { ready: true, port, family }, `${kind} on ${bindAddress} port ${port}`);
  return probe;
}

/** Sends `sizes` from one probe and checks that the other got exactly them, in order, intact, from `from`:`fromPort`. */
async function exchange(sender: Probe, receiver: Probe, to: string, toPort: number, sizes: number[], tag: number, from: string, fromPort: number): Promise<Received> {
  assert.equal(await sender.send(sizes.map((size) => ({ to, port: toPort, size })), tag), 0, 'the sender refused none');
  const got = await receiver.received(sizes.length);
  assert.deepEqual(
    got.datagrams,
    sizes.map((length, index) => ({ from, port: fromPort, length, tag, index, intact: true })),
  );
  return got;
}

/** Packets the veth end in `ns` has sent. */
const sentPackets = async (ns: Netns) => Number(await ns.exec(['cat', '/sys/class/net/under1/statistics/tx_packets']));

const train = (count: number, size: number) => Array<number>(count).fill(size);

test('mmsg and dgram transports exchange datagrams over an IPv6 underlay, each sender its IPv6 address and port', async (t) => {
  const [one, two] = await underlay();
  const mmsgA = await opened(one, 'mmsg', '2001:2::1', 8285, 6);
  const dgramB = await opened(two, 'dgram', '2001:2::2', 8285, 6);
  const mmsgC = await opened(two, 'mmsg', '2001:2::2', 8286, 6);

  await t.test('mmsg to dgram: a GSO train, then odd sizes, arrive in order from [2001:2::1]:8285', async () => {
    const before = await sentPackets(one);
    await exchange(mmsgA, dgramB, '2001:2::2', 8285, [...train(40, 1200), 1199, 77, 1400, 5], 1, '2001:2::1', 8285);
    // A veth counts a GSO message as one packet: 44 datagrams in 5 messages. The margin is for what a
    // fresh IPv6 link sends meanwhile (neighbour discovery, MLD reports, router solicitations), which
    // a busy machine can delay into this window; one packet per datagram would still be 44 or more.
    const sent = (await sentPackets(one)) - before;
    assert.ok(sent < 22, `the train left as UDP GSO messages, not one packet per datagram: ${sent} packets for 44 datagrams`);
  });

  await t.test('dgram to mmsg: datagrams arrive from [2001:2::2]:8285', async () => {
    await exchange(dgramB, mmsgA, '2001:2::1', 8285, [...train(30, 1000), 1300, 9], 2, '2001:2::2', 8285);
  });

  await t.test('mmsg to mmsg both ways: trains longer than one GSO message (64 segments, 65000 bytes), split per datagram on receipt', async () => {
    await exchange(mmsgA, mmsgC, '2001:2::2', 8286, [...train(100, 1400), 600], 3, '2001:2::1', 8285);
    await exchange(mmsgC, mmsgA, '2001:2::1', 8285, [...train(64, 900), ...train(64, 20)], 4, '2001:2::2', 8286);
  });

  await t.test('one flush to two ports of one address keeps them apart: the same address with another port is another endpoint', async () => {
    // Runs to B, C, B, C in one sendmmsg: GSO groups only equal destinations, address and port.
    const runs = [[8285, 3], [8286, 4], [8285, 5], [8286, 2]] as const;
    const datagrams = runs.flatMap(([port, count]) => train(count, 300).map((size) => ({ to: '2001:2::2', port, size })));
    assert.equal(await mmsgA.send(datagrams, 5), 0);
    const expected = (port: number) => datagrams.flatMap((d, index) => (d.port === port ? [{ from: '2001:2::1', port: 8285, length: 300, tag: 5, index, intact: true }] : []));
    assert.deepEqual((await dgramB.received(8)).datagrams, expected(8285));
    assert.deepEqual((await mmsgC.received(6)).datagrams, expected(8286));
  });
});

test('an IPv4 mmsg and dgram pair still exchange trains both ways, each sender a dotted quad and port', async () => {
  const [one, two] = await underlay();
  const mmsg4 = await opened(one, 'mmsg', '198.18.0.1', 8285, 4);
  const dgram4 = await opened(two, 'dgram', '198.18.0.2', 8285, 4);
  await exchange(mmsg4, dgram4, '198.18.0.2', 8285, [...train(40, 1200), 50], 7, '198.18.0.1', 8285);
  await exchange(dgram4, mmsg4, '198.18.0.1', 8285, [...train(20, 1000), 60], 8, '198.18.0.2', 8285);
});

for (const [kind6, kind4] of [['mmsg', 'dgram'], ['dgram', 'mmsg']] as const) {
  test(`${kind6} on [::] is IPv6-only: ${kind4} binds 0.0.0.0 on the same port and gets the IPv4 datagrams`, async () => {
    const [one, two] = await underlay();
    const six = await opened(two, kind6, '::', 8300, 6);
    const four = await opened(two, kind4, '0.0.0.0', 8300, 4);
    const sender6 = await opened(one, 'mmsg', '2001:2::1', 8300, 6);
    const sender4 = await opened(one, 'mmsg', '198.18.0.1', 8300, 4);
    await exchange(sender4, four, '198.18.0.2', 8300, [100, 100], 9, '198.18.0.1', 8300);
    await exchange(sender6, six, '2001:2::2', 8300, [200, 200], 10, '2001:2::1', 8300);
  });
}

test('binding an IPv6 address the namespace lacks fails in one line naming it', async () => {
  const [one] = await underlay();
  const { ready } = await Probe.open(one, 'mmsg', '2001:2::77', 8285);
  assert.deepEqual(ready, { error: 'EADDRNOTAVAIL: binding UDP [2001:2::77]:8285 (Cannot assign requested address)' });
});
