// `miniflannel trace SRC_POD_IP DST_POD_IP`: the path a packet from one pod
// to another takes, hop by hop, from the leases and network config in the
// store and the live /status of the two nodes' daemons (cli/cluster/trace.ts
// decides each hop). Exit 0 when no hop is broken, 1 when one is.

import { Command } from 'commander';
import { locate, nodesToAsk, parsePodAddress, tracePath, type HopName, type HopStatus, type PodAddress } from '../cluster/trace.js';
import { lookAtNodes } from '../cluster/survey.js';
import { examples, healthPortOption, outputOf, settingsOf } from '../conventions.js';
import { UsageError } from '../errors.js';
import type { Cell } from '../output.js';
import { withStore } from '../store.js';

/** The path has a broken hop: the hops were printed, and this is the one line that says which. */
class BrokenPathError extends Error {
  override readonly name = 'BrokenPathError';
}

const LABELS: Readonly<Record<HopName, string>> = {
  'source-lease': 'source pod',
  'destination-lease': 'destination pod',
  'same-node': 'bridge',
  'source-daemon': 'source daemon',
  'source-route': 'route into TUN',
  'source-peer': 'peer entry (UDP)',
  'path-mtu': 'MTU',
  'source-counters': 'sent',
  'destination-daemon': 'destination daemon',
  'ingress-sender': 'ingress: sender',
  'ingress-source': 'ingress: source',
  'ingress-destination': 'ingress: destination',
  'destination-counters': 'received',
};

const STYLES: Readonly<Record<HopStatus, 'green' | 'red' | 'yellow'>> = { ok: 'green', broken: 'red', unknown: 'yellow' };

function podAddress(name: string, text: string): PodAddress {
  const address = parsePodAddress(text);
  if (address === undefined) throw new UsageError(`${name} "${text}" is not an IPv4 or IPv6 address`);
  return address;
}

async function trace(command: Command, srcText: string, dstText: string, opts: { port: number }): Promise<void> {
  const out = outputOf(command);
  const settings = settingsOf(command);
  const src = podAddress('SRC_POD_IP', srcText);
  const dst = podAddress('DST_POD_IP', dstText);
  if (src.family !== dst.family) throw new UsageError(`SRC_POD_IP ${src.text} is IPv${src.family} and DST_POD_IP ${dst.text} is IPv${dst.family}: a packet keeps its family, give two of one`);
  const { config, leases } = await withStore(settings, async (store) => ({ config: await store.getNetworkConfig(), leases: (await store.listLeases()).leases }));
  const ends = locate(config, leases, src, dst);
  const looks = await lookAtNodes(nodesToAsk(ends), { port: opts.port, timeoutMs: settings.timeoutMs, concurrency: 2 });
  const hops = tracePath({ config, src, dst, ends, looks, now: Date.now() });
  if (out.json) out.document({ source: src.text, destination: dst.text, hops });
  else out.line(out.table(['HOP', 'STATUS', 'DETAIL'], hops.map((hop): Cell[] => [LABELS[hop.hop], { text: hop.status, style: STYLES[hop.status] }, hop.detail])));
  const broken = hops.filter((hop) => hop.status === 'broken');
  if (broken.length > 0) throw new BrokenPathError(`the path from ${src.text} to ${dst.text} is broken at ${broken.map((hop) => LABELS[hop.hop]).join(', ')}`);
}

export function traceCommand(): Command {
  return new Command('trace')
    .description("the path of a packet from one pod to another, hop by hop, from the leases and both nodes' daemons; exit 1 if a hop is broken")
    .argument('<SRC_POD_IP>', 'the sending pod\'s address, IPv4 or IPv6')
    .argument('<DST_POD_IP>', 'the receiving pod\'s address, of the same family')
    .addOption(healthPortOption("asked at each lease's public IP"))
    .addHelpText('after', examples('miniflannel trace 10.244.1.2 10.244.2.2', 'miniflannel trace fd00:10:244:1::2 fd00:10:244:2::2 --json --redis-url redis://10.0.0.5:6379'))
    .action((src: string, dst: string, opts: { port: number }, command: Command) => trace(command, src, dst, opts));
}
