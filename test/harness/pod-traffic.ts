// Traffic between test pods, run from the test process into their namespaces.
import assert from 'node:assert/strict';
import { createInterface } from 'node:readline';
import type { Pod, SandboxNode } from '../../lab/cluster.js';
import { stopProcess } from '../../lab/exec.js';
import { compiledTest } from './paths.js';

export interface TransferEnd {
  bytes: number;
  sha256: string;
}

/**
 * Sends `bytes` pseudo-random bytes over TCP from one pod to another, to its
 * IPv4 address unless another of its addresses is given; returns what each
 * end counted and hashed.
 */
export async function tcpTransfer(from: Pod, to: Pod, bytes: number, port = 5001, address = to.ip): Promise<{ sent: TransferEnd; received: TransferEnd }> {
  const script = compiledTest('harness/tcp-transfer.js');
  const receiver = to.ns.spawn([process.execPath, script, 'receive', address, String(port)]);
  try {
    const lines = createInterface({ input: receiver.stdout! })[Symbol.asyncIterator]();
    assert.equal((await lines.next()).value, 'listening');
    const sent = JSON.parse(await from.ns.exec([process.execPath, script, 'send', address, String(port), String(bytes)], { timeoutMs: 60_000 }));
    const received = JSON.parse((await lines.next()).value);
    return { sent, received };
  } finally {
    await stopProcess(receiver);
  }
}

export interface UdpListener {
  /** Each datagram's payload, as text, in arrival order. */
  readonly received: string[];
  stop(): Promise<void>;
}

/** Listens on `port` of a pod's IPv4 address, or of another of its addresses (harness/udp-probe.js), and collects what arrives; resolves once it is bound. */
export async function listenUdp(pod: Pod, port: number, address = pod.ip): Promise<UdpListener> {
  const listener = pod.ns.spawn([process.execPath, compiledTest('harness/udp-probe.js'), 'listen', address, String(port)]);
  const received: string[] = [];
  try {
    const lines = createInterface({ input: listener.stdout! });
    const listening = new Promise((resolve, reject) => {
      lines.once('line', resolve);
      lines.once('close', () => reject(new Error(`the UDP listener in ${pod.ns.name} exited before it was bound to ${address} port ${port}`)));
    });
    lines.on('line', (line) => line !== 'listening' && received.push(JSON.parse(line)));
    await listening;
  } catch (err) {
    await stopProcess(listener);
    throw err;
  }
  return { received, stop: () => stopProcess(listener).then(() => undefined) };
}

/** Sends each hex payload as one datagram from a node's underlay address and `bindPort`, the way a peer's daemon would. */
export function sendDatagrams(from: SandboxNode, bindPort: number, to: { ip: string; port: number }, payloads: string[]): Promise<string> {
  return from.ns.exec([process.execPath, compiledTest('harness/udp-probe.js'), 'send', from.underlayIp, String(bindPort), to.ip, String(to.port), ...payloads]);
}
