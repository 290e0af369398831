// `miniflannel bench`: parses and checks the options, then hands the run to
// the lab (lab/bench/run.ts), loaded on demand: the image carries no lab.
import { constants } from 'node:fs';
import { access, stat } from 'node:fs/promises';
import path from 'node:path';
import { Command, InvalidArgumentError, Option } from 'commander';
import { examples, outputOf, positiveInteger, wholeNumber } from '../conventions.js';
import { UsageError } from '../errors.js';
import { DOCTOR_MAX_NODES, loadLab, type BenchContext, type ControlPlaneRequest, type DoctorRequest, type E2eRequest, type EncapRequest } from '../lab.js';
import { packageVersion } from '../../daemon/version.js';

const benchLab = () => loadLab('bench', 'miniflannel bench');

const context = (command: Command, files: BenchContext['files']): BenchContext => ({ out: outputOf(command), version: packageVersion(), files });

/** With --quick, options the user did not set take their quick values. */
function applyQuick<T extends { quick?: boolean }>(command: Command, opts: T, quick: Partial<T>): T {
  if (opts.quick !== true) return opts;
  const result = { ...opts };
  for (const key of Object.keys(quick) as Array<keyof T & string>) {
    if (command.getOptionValueSource(key) === 'default') result[key] = quick[key]!;
  }
  return result;
}

/** Checks that --out/--svg can be written before minutes of measuring. */
async function checkWritable(flag: string, file: string | undefined): Promise<void> {
  if (file === undefined) return;
  const dir = path.dirname(path.resolve(file));
  try {
    if (!(await stat(dir)).isDirectory()) throw new Error('not a directory');
    await access(dir, constants.W_OK);
  } catch {
    throw new UsageError(`${flag} ${file}: the directory ${dir} does not exist or is not writable`);
  }
}

function autoOrPositive(value: string): number | 'auto' {
  if (value === 'auto') return value;
  try {
    return positiveInteger(value);
  } catch {
    throw new InvalidArgumentError("expected 'auto' or a whole number of at least 1");
  }
}

/** The parsed flags: a bench's options, with --quick and where to write. */
type Flags<T> = { -readonly [K in keyof T]: T[K] } & { quick?: boolean; out?: string };
type EncapOpts = Flags<EncapRequest>;
type E2eOpts = Flags<E2eRequest> & { svg?: string };
type ControlPlaneOpts = Flags<ControlPlaneRequest>;
type DoctorOpts = Flags<DoctorRequest>;

/** "120s", "2m", "1h", "500ms": a duration with its unit, in ms. */
function durationArg(value: string): number {
  const match = /^(\d+)(ms|s|m|h)$/.exec(value.trim());
  if (!match) throw new InvalidArgumentError(`'${value}' is not a duration with a unit, such as 120s, 2m or 1h`);
  const ms = Number(match[1]) * { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[match[2] as 'ms' | 's' | 'm' | 'h'];
  if (ms <= 0) throw new InvalidArgumentError('the duration must be above zero');
  return ms;
}

/** The control-plane options that only make sense together, checked before anything starts. */
function checkControlPlane(opts: ControlPlaneOpts): void {
  if (opts.leaseRenewMargin >= opts.leaseTtl) {
    throw new UsageError(`--lease-renew-margin (${opts.leaseRenewMargin / 1000} s) must be below --lease-ttl (${opts.leaseTtl / 1000} s)`);
  }
  if (opts.idleSeconds * 1000 > opts.leaseRenewMargin / 2) {
    throw new UsageError(
      `--idle-seconds (${opts.idleSeconds}) must be at most half of --lease-renew-margin (${opts.leaseRenewMargin / 1000} s): the keepers are paused that long, and no lease may lapse`,
    );
  }
  if (opts.kill * 2 > opts.nodes) throw new UsageError(`--kill (${opts.kill}) must be at most half of --nodes (${opts.nodes})`);
  if (opts.leaseTtl < 10_000) throw new UsageError(`--lease-ttl must be at least 10s (got ${opts.leaseTtl / 1000} s)`);
}

const CONTROL_PLANE_QUICK: Partial<ControlPlaneOpts> = { changes: 10, steadySeconds: 20, idleSeconds: 4, leaseTtl: 20_000, leaseRenewMargin: 10_000, kill: 2 };

const CONTROL_PLANE_DEFAULTS: Omit<ControlPlaneOpts, 'nodes'> = { workers: 4, changes: 50, steadySeconds: 120, idleSeconds: 20, leaseTtl: 120_000, leaseRenewMargin: 60_000, kill: 5 };

/** `bench all`'s control-plane part: the defaults (or the quick ones), with at most half the nodes killed. */
function controlPlaneForAll(nodes: number, quick: boolean): ControlPlaneRequest {
  const opts: ControlPlaneRequest = { nodes, ...CONTROL_PLANE_DEFAULTS, ...(quick ? CONTROL_PLANE_QUICK : {}) };
  return { ...opts, kill: Math.min(opts.kill, Math.floor(nodes / 2)) };
}

const outOption = () => new Option('--out <file>', 'also write the result document (JSON) to this file');
const quickOption = (what: string) => new Option('--quick', `a short run (${what}) to check that everything works; figures are rough`);

export function benchCommand(): Command {
  const bench = new Command('bench').description('measure encapsulation throughput, the data paths side by side, and the control plane at scale');

  bench
    .command('encap')
    .description('the hot path in process: the data plane\'s egress and ingress loops over an in-memory TUN and network, at 64/512/1400 B and 10/1000/10000 peers (no root)')
    .addOption(new Option('--repeats <n>', 'repeats per case; medians are reported').default(5).argParser(positiveInteger))
    .addOption(new Option('--millis <ms>', 'length of each repeat').default(1000).argParser(positiveInteger))
    .addOption(quickOption('3 repeats of 200 ms, a few seconds'))
    .addOption(outOption())
    .addHelpText('after', examples('miniflannel bench encap', 'miniflannel bench encap --quick --json'))
    .action(async (raw: EncapOpts, command: Command) => {
      const opts = applyQuick(command, raw, { repeats: 3, millis: 200 });
      await checkWritable('--out', opts.out);
      await (await benchLab()).encap(opts, context(command, { out: opts.out }));
    });

  bench
    .command('e2e')
    .description('pod-to-pod through miniflannel, kernel VXLAN, the bare underlay and OpenVPN, side by side in namespaces (root, iperf3)')
    .addOption(new Option('--repeats <n>', 'rounds over all paths; medians are reported').default(3).argParser(positiveInteger))
    .addOption(new Option('--seconds <n>', 'length of each TCP and UDP run').default(10).argParser(positiveInteger))
    .addOption(
      new Option('--udp-pps <n>', "offered UDP load in packets per second, the same on every path; 'auto': what the bench's UDP generator sends unthrottled over the underlay, the fastest path")
        .default('auto')
        .argParser(autoOrPositive),
    )
    .addOption(new Option('--pings <n>', 'pings per RTT measurement, 10 ms apart').default(200).argParser(positiveInteger))
    .option('--ablation', 'also measure miniflannel with node:dgram, without TUN offloads, and with a 100-packet TUN queue')
    .option('--auth', 'also measure miniflannel with authenticated encapsulation (mac and encrypt modes)')
    .option('--ipv6', 'also measure IPv6 between dual-stack pods, through miniflannel and through kernel VXLAN')
    .addOption(quickOption('1 round of 2 s runs, about a minute'))
    .addOption(outOption())
    .addOption(new Option('--svg <file>', 'write the comparison chart here (default: next to --out, .svg)'))
    .addHelpText('after', examples('sudo miniflannel bench e2e', 'sudo miniflannel bench e2e --repeats 5 --out e2e.json', 'sudo miniflannel bench e2e --quick --json'))
    .action(async (raw: E2eOpts, command: Command) => {
      const opts = applyQuick(command, raw, { repeats: 1, seconds: 2, pings: 50 });
      await checkWritable('--out', opts.out);
      await checkWritable('--svg', opts.svg);
      await (await benchLab()).e2e(opts, context(command, { out: opts.out, svg: opts.svg }));
    });

  bench
    .command('control-plane')
    .description('up to 10,000 simulated daemons (lease store, keeper and watch; no TUN) in worker processes, against one redis-server started on loopback, restarted with and without persistence')
    .addOption(new Option('--nodes <n>', 'simulated daemons').default(1000).argParser(positiveInteger))
    .addOption(new Option('--workers <n>', 'worker processes the daemons are spread over').default(CONTROL_PLANE_DEFAULTS.workers).argParser(positiveInteger))
    .addOption(new Option('--changes <n>', 'lease changes to time for watch convergence').default(CONTROL_PLANE_DEFAULTS.changes).argParser(positiveInteger))
    .addOption(new Option('--steady-seconds <n>', 'window for counting Redis commands and CPU in steady state').default(CONTROL_PLANE_DEFAULTS.steadySeconds).argParser(positiveInteger))
    .addOption(new Option('--idle-seconds <n>', 'window with every keeper paused: the cost of idle watches (at most half the renew margin)').default(CONTROL_PLANE_DEFAULTS.idleSeconds).argParser(positiveInteger))
    .addOption(new Option('--lease-ttl <duration>', "the daemons' lease TTL, short so renewals and expiries fall in the window").default(CONTROL_PLANE_DEFAULTS.leaseTtl, '120s').argParser(durationArg))
    .addOption(new Option('--lease-renew-margin <duration>', 'renew this long before expiry').default(CONTROL_PLANE_DEFAULTS.leaseRenewMargin, '60s').argParser(durationArg))
    .addOption(new Option('--kill <n>', 'daemons stopped without revoking before the window, whose leases expire in it').default(CONTROL_PLANE_DEFAULTS.kill).argParser(wholeNumber))
    .addOption(quickOption('10 changes, a 20 s window, lease TTL 20 s, under a minute at 50 nodes'))
    .addOption(outOption())
    .addHelpText('after', examples('miniflannel bench control-plane --nodes 1000', 'miniflannel bench control-plane --nodes 10000 --out cp.json', 'miniflannel bench control-plane --nodes 50 --quick --json'))
    .action(async (raw: ControlPlaneOpts, command: Command) => {
      const opts = applyQuick(command, raw, CONTROL_PLANE_QUICK);
      checkControlPlane(opts);
      await checkWritable('--out', opts.out);
      await (await benchLab()).controlPlane(opts, context(command, { out: opts.out }));
    });

  bench
    .command('doctor')
    .description("what one look of `miniflannel doctor` costs the CLI at N nodes of N-1 peers each: the survey's parsing of every /status and the checks, the network left out (no root)")
    .addOption(new Option('--nodes <n>', `simulated nodes, at most ${DOCTOR_MAX_NODES.toLocaleString('en')}`).default(1000).argParser(positiveInteger))
    .addOption(new Option('--looks <n>', 'looks in a row, each after the first against the one before').default(4).argParser(positiveInteger))
    .addOption(quickOption('100 nodes, 2 looks, a second'))
    .addOption(outOption())
    .addHelpText('after', examples('miniflannel bench doctor', 'miniflannel bench doctor --nodes 500 --looks 6 --out doctor.json', 'miniflannel bench doctor --quick --json'))
    .action(async (raw: DoctorOpts, command: Command) => {
      const opts = applyQuick(command, raw, { nodes: 100, looks: 2 });
      if (opts.nodes > DOCTOR_MAX_NODES) throw new UsageError(`--nodes ${opts.nodes}: the simulated cluster's 10.0.0.0/8 holds at most ${DOCTOR_MAX_NODES.toLocaleString('en')} /24 subnets`);
      await checkWritable('--out', opts.out);
      await (await benchLab()).doctor(opts, context(command, { out: opts.out }));
    });

  bench
    .command('all')
    .description('encap, then e2e, then control-plane, into one result document (what `npm run bench` runs)')
    .addOption(new Option('--repeats <n>', 'e2e rounds').default(3).argParser(positiveInteger))
    .addOption(new Option('--seconds <n>', 'length of each e2e TCP and UDP run').default(10).argParser(positiveInteger))
    .addOption(new Option('--nodes <n>', 'control-plane simulated daemons').default(1000).argParser(positiveInteger))
    .option('--ablation', 'also measure miniflannel with node:dgram, without TUN offloads, and with a 100-packet TUN queue')
    .option('--auth', 'also measure miniflannel with authenticated encapsulation (mac and encrypt modes)')
    .option('--ipv6', 'also measure IPv6 between dual-stack pods, through miniflannel and through kernel VXLAN')
    .addOption(quickOption('each part quick'))
    .addOption(outOption())
    .addOption(new Option('--svg <file>', 'write the e2e chart here (default: next to --out, .svg)'))
    .addHelpText('after', examples('sudo miniflannel bench all --out bench.json'))
    .action(async (raw: { repeats: number; seconds: number; nodes: number; ablation?: boolean; auth?: boolean; ipv6?: boolean; quick?: boolean; out?: string; svg?: string }, command: Command) => {
      const opts = applyQuick(command, raw, { repeats: 1, seconds: 2 });
      await checkWritable('--out', opts.out);
      await checkWritable('--svg', opts.svg);
      const quick = opts.quick === true;
      const encap: EncapRequest = quick ? { repeats: 3, millis: 200 } : { repeats: 5, millis: 1000 };
      const e2e = { repeats: opts.repeats, seconds: opts.seconds, udpPps: 'auto' as const, pings: quick ? 50 : 200, ablation: opts.ablation, auth: opts.auth, ipv6: opts.ipv6 };
      await (await benchLab()).all({ encap, e2e, controlPlane: controlPlaneForAll(opts.nodes, quick) }, context(command, { out: opts.out, svg: opts.svg }));
    });

  return bench;
}
