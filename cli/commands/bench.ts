import { Command, Option } from 'commander';
import { benchE2e } from '../bench/e2e.js';
import { gbps } from '../bench/stats.js';
import { positiveInteger as positiveInt } from '../conventions.js';

export function benchCommand(): Command {
  const bench = new Command('bench').description('measure encapsulation throughput');
  bench
    .command('e2e')
    .description('pod-to-pod TCP throughput through miniflannel and kernel VXLAN, in namespaces (needs root, iperf3)')
    .addOption(new Option('--repeats <n>', 'measurements per path; medians are reported').default(3).argParser(positiveInt))
    .addOption(new Option('--seconds <n>', 'length of each iperf3 run').default(10).argParser(positiveInt))
    .addOption(new Option('--streams <n>', 'parallel TCP streams').default(1).argParser(positiveInt))
    .option('--ablation', 'also measure miniflannel with node:dgram and without TUN offloads')
    .addHelpText('after', '\nExample:\n  sudo miniflannel bench e2e --repeats 5 --seconds 10')
    .action(async (opts: { repeats: number; seconds: number; streams: number; ablation?: boolean }) => {
      const result = await benchE2e({ ...opts, ablation: opts.ablation ?? false, log: (line) => process.stderr.write(`${line}\n`) });
      process.stdout.write(`\npod-to-pod TCP, ${opts.streams} stream(s), median of ${opts.repeats} x ${opts.seconds} s\n`);
      const vxlan = result.paths.find((p) => p.name === 'kernel VXLAN')!.medianBitsPerSecond;
      for (const p of result.paths) {
        const ratio = (p.medianBitsPerSecond / vxlan).toFixed(3);
        process.stdout.write(`  ${p.name.padEnd(14)} ${gbps(p.medianBitsPerSecond).padStart(7)} Gbit/s  ${ratio} x VXLAN   runs: ${p.runsBitsPerSecond.map(gbps).join(', ')}\n`);
      }
      process.stdout.write(`  miniflannel / kernel VXLAN = ${result.ratioToVxlan.toFixed(3)}\n`);
    });
  return bench;
}
