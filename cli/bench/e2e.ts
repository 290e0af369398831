/**
 * Pod-to-pod TCP throughput through miniflannel and through kernel VXLAN
 * (flannel's vxlan backend), on the same underlay, in one run. Both
 * topologies stay up for the whole run and their measurements alternate,
 * so drift on a shared machine hits both alike.
 */
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { removeStaleNamespaces, runPrefix } from '../sandbox/netns.js';
import { miniflannelOverlay, vxlanOverlay, type Overlay } from '../sandbox/overlays.js';
import { iperfTcp } from './iperf.js';
import { gbps, median } from './stats.js';

export interface E2eOptions {
  repeats: number;
  seconds: number;
  streams: number;
  /** Also measure miniflannel with its speed-ups turned off, one at a time. */
  ablation: boolean;
  log: (line: string) => void;
}

/** miniflannel configurations beside the default one, slowest first. */
const ABLATIONS: Array<{ name: string; args: string[] }> = [
  { name: 'mf dgram', args: ['--transport', 'dgram', '--tun-offload', 'off'] },
  { name: 'mf mmsg', args: ['--transport', 'mmsg', '--tun-offload', 'off'] },
];

export interface PathFigures {
  name: string;
  runsBitsPerSecond: number[];
  medianBitsPerSecond: number;
}

export interface E2eResult {
  paths: PathFigures[];
  /** miniflannel's median over kernel VXLAN's. */
  ratioToVxlan: number;
}

export async function benchE2e(options: E2eOptions): Promise<E2eResult> {
  await removeStaleNamespaces();
  const root = await mkdtemp(path.join(tmpdir(), 'miniflannel-bench-'));
  const overlays: Overlay[] = [];
  try {
    options.log('building the two-node topologies (namespaces on a 198.18.0.0/24 underlay)');
    overlays.push(await miniflannelOverlay({ workDir: path.join(root, 'mf'), prefix: `${runPrefix()}b` }));
    overlays.push(await vxlanOverlay({ workDir: path.join(root, 'vx'), prefix: `${runPrefix()}v` }));
    if (options.ablation) {
      for (const [i, variant] of ABLATIONS.entries()) {
        overlays.push({
          ...(await miniflannelOverlay({ workDir: path.join(root, `a${i}`), prefix: `${runPrefix()}a${i}`, extraArgs: variant.args })),
          name: variant.name,
        });
      }
    }
    const runs = new Map<string, number[]>(overlays.map((o) => [o.name, []]));
    for (let round = 1; round <= options.repeats; round++) {
      for (const overlay of overlays) {
        const [client, server] = overlay.pods as [NonNullable<Overlay['pods'][0]>, NonNullable<Overlay['pods'][1]>];
        const result = await iperfTcp(client, server, { seconds: options.seconds, streams: options.streams });
        runs.get(overlay.name)!.push(result.bitsPerSecond);
        options.log(`run ${round}/${options.repeats}  ${overlay.name.padEnd(12)} ${gbps(result.bitsPerSecond)} Gbit/s (${result.retransmits} retransmits)`);
      }
    }
    const paths = overlays.map((o) => ({ name: o.name, runsBitsPerSecond: runs.get(o.name)!, medianBitsPerSecond: median(runs.get(o.name)!) }));
    return { paths, ratioToVxlan: paths[0]!.medianBitsPerSecond / paths[1]!.medianBitsPerSecond };
  } finally {
    for (const overlay of overlays) await overlay.destroy();
  }
}
