// Traffic between test pods, run from the test process into their namespaces.
import assert from 'node:assert/strict';
import { createInterface } from 'node:readline';
import type { Pod } from '../../cli/sandbox/cluster.js';
import { stopProcess } from '../../cli/sandbox/exec.js';
import { compiledTest } from './paths.js';

export interface TransferEnd {
  bytes: number;
  sha256: string;
}

/** Sends `bytes` pseudo-random bytes over TCP from one pod to another; returns what each end counted and hashed. */
export async function tcpTransfer(from: Pod, to: Pod, bytes: number, port = 5001): Promise<{ sent: TransferEnd; received: TransferEnd }> {
  const script = compiledTest('harness/tcp-transfer.js');
  const receiver = to.ns.spawn([process.execPath, script, 'receive', to.ip, String(port)]);
  try {
    const lines = createInterface({ input: receiver.stdout! })[Symbol.asyncIterator]();
    assert.equal((await lines.next()).value, 'listening');
    const sent = JSON.parse(await from.ns.exec([process.execPath, script, 'send', to.ip, String(port), String(bytes)], { timeoutMs: 60_000 }));
    const received = JSON.parse((await lines.next()).value);
    return { sent, received };
  } finally {
    await stopProcess(receiver);
  }
}
