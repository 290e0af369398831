// Authenticated encapsulation between real daemons: two nodes with a
// cluster key file carry pod traffic; a third namespace plays a keyed peer
// and an attacker with hand-made datagrams; the key is rolled over live.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { IngressDropReason } from '../../daemon/dataplane/index.js';
import { cniConflist } from '../../daemon/node/cni.js';
import { authKey, createSealer, SEAL_OVERHEAD, type AuthKey } from '../../daemon/dataplane/sealing.js';
import { parseIPv4 } from '../../daemon/net/ipv4.js';
import type { Pod, Sandbox, SandboxNode } from '../../lab/cluster.js';
import { startDaemon, waitFor, type RunningDaemon } from '../../lab/daemon.js';
import { createTestSandbox, destroyTestSandbox } from '../harness/namespaces.js';
import { ipv4Packet, udpPayload } from '../harness/packets.js';
import { compiledTest } from '../harness/paths.js';
import { listenUdp, sendDatagrams, tcpTransfer } from '../harness/pod-traffic.js';

const NETWORK = '10.244.0.0/16';
const MTU = 1500 - 28 - SEAL_OVERHEAD;
const subnetOf = (node: SandboxNode) => `10.244.${node.index}.0/24`;

function distinctKeys(count: number): AuthKey[] {
  const keys: AuthKey[] = [];
  while (keys.length < count) {
    const key = authKey(randomBytes(32));
    if (!keys.some((k) => k.id === key.id)) keys.push(key);
  }
  return keys;
}

describe('authenticated encapsulation between daemons', () => {
  const [k1, k2] = distinctKeys(2) as [AuthKey, AuthKey];
  let sandbox: Sandbox;
  let player: SandboxNode; // node 3: a static peer of node 2 with no daemon; the test speaks for it
  const daemons: RunningDaemon[] = [];
  const pods: Pod[] = [];
  const keyFile = (node: SandboxNode) => path.join(node.workDir, 'auth-keys');
  const writeKeys = (node: SandboxNode, keys: AuthKey[]) => writeFile(keyFile(node), `# miniflannel cluster keys, sealing key first\n${keys.map((k) => k.secret.toString('base64')).join('\n')}\n`);
  const ping = (from: Pod, to: Pod) => from.ns.exec(['ping', '-c', '2', '-i', '0.2', '-W', '2', to.ip]);
  const reloads = async (daemon: RunningDaemon) => ((await readFile(daemon.logFile, 'utf8')).match(/auth keys reloaded/g) ?? []).length;

  before(async () => {
    sandbox = await createTestSandbox(3);
    const [n1, n2, n3] = sandbox.nodes as [SandboxNode, SandboxNode, SandboxNode];
    player = n3;
    for (const node of [n1, n2]) {
      await writeKeys(node, [k1]);
      const peers = sandbox.nodes.filter((n) => n !== node).flatMap((n) => ['--static-peer', `${subnetOf(n)}=${n.underlayIp}`]);
      daemons.push(await startDaemon(node, ['--iface', 'eth0', '--auth-key-file', keyFile(node), '--static-network', NETWORK, '--static-subnet', subnetOf(node), ...peers]));
      pods.push(await sandbox.addPod(node, cniConflist({ ipv4: { subnet: subnetOf(node), network: NETWORK }, mtu: MTU, ipamDataDir: `${node.workDir}/ipam` }) as never));
    }
  });

  after(async () => {
    for (const daemon of daemons) await daemon.stop();
    if (!sandbox) return;
    await destroyTestSandbox(sandbox);
  });

  it('carries pod traffic, with the MTU lowered by the seal', async () => {
    const [p1, p2] = pods as [Pod, Pod];
    await ping(p1, p2);
    await p1.ns.exec(['ping', '-c', '1', '-W', '2', '-M', 'do', '-s', String(MTU - 28), p2.ip]);
    const tun = await sandbox.nodes[0]!.ns.ip('link', 'show', 'flannel0');
    assert.match(tun, new RegExp(`mtu ${MTU} `));
    // TCP through the offloads: super-packets cut, sealed one by one, opened and joined again.
    const { sent, received } = await tcpTransfer(p1, p2, 32 * 1024 * 1024);
    assert.equal(received.bytes, sent.bytes);
    assert.equal(received.sha256, sent.sha256);
    const counters = (await daemons[1]!.status()).counters!;
    assert.ok(counters.tunPacketsWritten > (32 * 1024 * 1024) / MTU);
    assert.equal(counters.ingressDrops.unauthenticated, 0);
  });

  it('delivers a keyed peer once, and drops bare, forged, replayed and strangers\' datagrams, counting each', async () => {
    const target = pods[1]!;
    const listener = await listenUdp(target, 6000);
    try {
      const inner = (text: string) => ipv4Packet({ source: '10.244.3.5', destination: target.ip, payload: udpPayload(text, 4000, 6000) });
      const sealWith = (key: AuthKey, text: string) => {
        const packet = inner(text);
        const out = Buffer.alloc(packet.length + SEAL_OVERHEAD);
        createSealer({ mode: 'mac', localIp: parseIPv4(player.underlayIp), keys: [key] }).seal(packet, 0, packet.length, out, 0);
        return out.toString('hex');
      };
      const send = (bindPort: number, ...payloads: string[]) => sendDatagrams(player, bindPort, { ip: '198.18.0.2', port: 8285 }, payloads);
      const before = (await daemons[1]!.status()).counters!;

      const legitimate = sealWith(k1, 'sealed-by-a-peer');
      const forged = Buffer.from(sealWith(k1, 'forged-payload'), 'hex');
      forged[forged.length - SEAL_OVERHEAD + 10 - 1]! ^= 0xff; // the packet's last byte: the tag no longer matches
      await send(8285, inner('bare-flannel-format').toString('hex'), sealWith(k2, 'unknown-key'), forged.toString('hex'));
      await send(9999, sealWith(k1, 'right-key-wrong-port'));
      await send(8285, legitimate, legitimate);
      await waitFor('the sealed datagram', async () => listener.received.includes('sealed-by-a-peer'));
      const counters = await waitFor('every datagram to be counted', async () => {
        const now = (await daemons[1]!.status()).counters!;
        return now.udpPacketsReceived - before.udpPacketsReceived >= 6 && now;
      });
      assert.deepEqual(listener.received, ['sealed-by-a-peer']);
      const delta = (reason: IngressDropReason) => counters.ingressDrops[reason] - before.ingressDrops[reason];
      assert.equal(delta('unauthenticated'), 3, 'bare, unknown key, forged');
      assert.equal(delta('unknown-sender'), 1);
      assert.equal(delta('replayed'), 1);
      assert.equal(counters.tunPacketsWritten - before.tunPacketsWritten, 1);
    } finally {
      await listener.stop();
    }
  });

  it('rolls the key over without a restart and without losing traffic', async () => {
    const [n1, n2] = sandbox.nodes as [SandboxNode, SandboxNode];
    const [d1, d2] = daemons as [RunningDaemon, RunningDaemon];
    const [p1, p2] = pods as [Pod, Pod];
    const pids = daemons.map((d) => d.process.pid);
    const step = async (keys1: AuthKey[], keys2: AuthKey[]) => {
      const [r1, r2] = [await reloads(d1), await reloads(d2)];
      await writeKeys(n1, keys1);
      await writeKeys(n2, keys2);
      await waitFor('both daemons to reload their keys', async () => (await reloads(d1)) > r1 && (await reloads(d2)) > r2);
      await ping(p1, p2);
      await ping(p2, p1);
    };
    await step([k1, k2], [k1, k2]); // every node accepts the new key
    await step([k2, k1], [k2, k1]); // every node seals with it
    await step([k2], [k2]); // the old key is retired
    assert.deepEqual(daemons.map((d) => d.process.pid), pids);
    // A node still sealing with the retired key is now refused.
    const before = (await d2.status()).counters!.ingressDrops.unauthenticated;
    await writeKeys(n1, [k1]);
    await waitFor('node 1 to reload', async () => (await reloads(d1)) >= 4);
    const outcome = await p1.ns.execForOutcome(['ping', '-c', '2', '-i', '0.2', '-W', '1', p2.ip]);
    assert.notEqual(outcome.exitCode, 0);
    assert.ok((await d2.status()).counters!.ingressDrops.unauthenticated >= before + 2);
  });

  it('keeps the keys in use when the file becomes unusable, and says so', async () => {
    const [n1] = sandbox.nodes as [SandboxNode];
    const d1 = daemons[0]!;
    await writeFile(keyFile(n1), 'not a key\n');
    await waitFor('the complaint', async () => /auth key file changed but is unusable/.test(await readFile(d1.logFile, 'utf8')));
    assert.equal(d1.process.exitCode, null);
    assert.doesNotMatch(await readFile(d1.logFile, 'utf8'), new RegExp(k1.secret.toString('base64').replace(/[+/=]/g, '\\$&')), 'no key in the log');
  });
});

describe('a bad --auth-key-file', () => {
  it('is one line naming the file and line, exit 1, before anything is created', async () => {
    const sandbox = await createTestSandbox(1);
    try {
      const node = sandbox.nodes[0]!;
      const file = path.join(node.workDir, 'keys');
      await writeFile(file, 'c2hvcnQ=\n');
      const outcome = await node.ns.execForOutcome([process.execPath, compiledTest('../daemon/main.js'), '--iface', 'eth0', '--auth-key-file', file, '--static-network', NETWORK, '--static-subnet', '10.244.1.0/24', '--healthz-port', '0']);
      assert.equal(outcome.exitCode, 1, outcome.stderr);
      const lines = outcome.stderr.trim().split('\n');
      assert.equal(lines.length, 1, outcome.stderr);
      assert.match(lines[0]!, new RegExp(`${file.replace(/[./]/g, '\\$&')}:1: not a 32-byte key`));
      assert.doesNotMatch(await node.ns.ip('link', 'show'), /flannel0/);
    } finally {
      await sandbox.destroy();
    }
  });
});
