// iperf3 between two pods: the server is started per measurement (-1: one
// test, then exit), the client reports JSON.
import { createInterface } from 'node:readline';
import type { Pod } from '../sandbox/cluster.js';
import { stopProcess } from '../sandbox/exec.js';

export interface TcpResult {
  bitsPerSecond: number;
  retransmits: number;
}

export async function iperfTcp(client: Pod, server: Pod, options: { seconds: number; streams: number }): Promise<TcpResult> {
  const daemon = server.ns.spawn(['iperf3', '--server', '--one-off', '--forceflush', '--bind', server.ip]);
  try {
    await new Promise<void>((resolve, reject) => {
      const lines = createInterface({ input: daemon.stdout! });
      lines.on('line', (line) => line.includes('Server listening') && resolve());
      daemon.once('exit', (code) => reject(new Error(`iperf3 server in ${server.ns.name} exited with ${code}`)));
    });
    const out = await client.ns.exec(
      ['iperf3', '--client', server.ip, '--time', String(options.seconds), '--parallel', String(options.streams), '--json'],
      { timeoutMs: (options.seconds + 30) * 1000 },
    );
    const report = JSON.parse(out);
    if (report.error) throw new Error(`iperf3: ${report.error}`);
    return { bitsPerSecond: report.end.sum_received.bits_per_second, retransmits: report.end.sum_sent.retransmits ?? 0 };
  } finally {
    await stopProcess(daemon);
  }
}
