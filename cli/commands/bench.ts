// `miniflannel bench`: encap (the hot path in process), e2e (every data path
// side by side in namespaces), control-plane (N simulated daemons against
// one Redis), and all three in a row. Progress goes to stderr, the tables
// (or with --json the result document) to stdout, and --out writes the
// document to a file, with the e2e chart next to it.
import { constants } from 'node:fs';
import { access, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { Command, InvalidArgumentError, Option } from 'commander';
import { benchControlPlane, type ControlPlaneResult } from '../../lab/bench/control-plane.js';
import { benchE2e, type E2eResult } from '../../lab/bench/e2e.js';
import { benchEncap, type EncapFigure } from '../../lab/bench/encap.js';
import { interruptible, InterruptedError } from '../../lab/bench/interrupt.js';
import { requireBinaries, requireRoot, which, PrerequisiteError } from '../../lab/bench/prerequisites.js';
import { MeasurementProcesses } from '../../lab/bench/processes.js';
import { controlPlaneReport, e2eReport, encapReport } from '../../lab/bench/report.js';
import { document, writeJson, type BenchDocument } from '../../lab/bench/result.js';
import { e2eChart } from '../../lab/bench/svg.js';
import { examples, outputOf, positiveInteger } from '../conventions.js';
import { UsageError } from '../errors.js';
import type { Output } from '../output.js';
import { packageVersion } from './version.js';

const CNI_BRIDGE = '/usr/lib/cni/bridge';

/** A part of `bench all` failed; the figures of the others were still printed and written. */
class BenchFailedError extends Error {
  override readonly name = 'BenchFailedError';
}

/** Progress on stderr, each line stamped with the time since the start. */
function progress(): (line: string) => void {
  const started = Date.now();
  return (line) => {
    const s = Math.floor((Date.now() - started) / 1000);
    process.stderr.write(`[${String(Math.floor(s / 60)).padStart(2, '0')}:${String(s % 60).padStart(2, '0')}] ${line}\n`);
  };
}

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

const svgNextTo = (json: string) => `${json.replace(/\.json$/i, '')}.svg`;

async function e2ePrerequisites(command: string): Promise<{ openvpn: boolean }> {
  requireRoot(command);
  await requireBinaries(command, [
    { binary: 'iperf3', pkg: 'iperf3' },
    { binary: 'ping', pkg: 'iputils-ping' },
    { binary: 'ip', pkg: 'iproute2' },
    { binary: 'bridge', pkg: 'iproute2' },
  ]);
  try {
    await access(CNI_BRIDGE, constants.X_OK);
  } catch {
    throw new PrerequisiteError(`${command} needs the CNI bridge plugin at ${CNI_BRIDGE}; install it (apt-get install containernetworking-plugins)`);
  }
  const openvpn = (await which('openvpn')) !== undefined;
  if (!openvpn) process.stderr.write(`${command}: openvpn is not installed, so the OpenVPN path is skipped (apt-get install openvpn to compare)\n`);
  return { openvpn };
}

async function controlPlanePrerequisites(command: string): Promise<void> {
  await requireBinaries(command, [{ binary: 'redis-server', pkg: 'redis-server' }]);
}

function subtitle(doc: BenchDocument<unknown>): string {
  const m = doc.machine;
  return [
    doc.startedAt.slice(0, 10),
    `${m.cpus} × ${m.cpuModel}`,
    `Linux ${m.kernel.split('-')[0]}`,
    `Node ${m.node.replace(/^v/, '')}`,
    m.iperf3 ? `iperf3 ${m.iperf3.split(' ')[0]}` : undefined,
    m.openvpn ?? undefined,
    `load ${m.loadAverageAtStart[0]} at start`,
  ]
    .filter((s) => s !== undefined)
    .join(', ');
}

/** Prints the document (JSON) or the report (text), and writes the files asked for. */
async function finish(out: Output, doc: BenchDocument<unknown>, report: string, files: { out?: string; svg?: string; e2e?: E2eResult }): Promise<void> {
  if (out.json) out.document(doc);
  else out.line(report);
  if (files.out !== undefined) {
    await writeJson(files.out, doc);
    out.note(`wrote ${files.out}`);
  }
  const svg = files.svg ?? (files.out !== undefined && files.e2e ? svgNextTo(files.out) : undefined);
  if (svg !== undefined && files.e2e) {
    await writeFile(svg, e2eChart(files.e2e, subtitle(doc)));
    out.note(`wrote ${svg}`);
  }
}

interface EncapOpts {
  repeats: number;
  millis: number;
  quick?: boolean;
  out?: string;
}
interface E2eOpts {
  repeats: number;
  seconds: number;
  udpPps: number | 'auto';
  pings: number;
  ablation?: boolean;
  auth?: boolean;
  quick?: boolean;
  out?: string;
  svg?: string;
}
interface ControlPlaneOpts {
  nodes: number;
  workers: number;
  changes: number;
  steadySeconds: number;
  idleSeconds: number;
  leaseTtl: number;
  leaseRenewMargin: number;
  kill: number;
  quick?: boolean;
  out?: string;
}

/** "120s", "2m", "1h", "500ms": a duration with its unit, in ms. */
function durationArg(value: string): number {
  const match = /^(\d+)(ms|s|m|h)$/.exec(value.trim());
  if (!match) throw new InvalidArgumentError(`'${value}' is not a duration with a unit, such as 120s, 2m or 1h`);
  const ms = Number(match[1]) * { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[match[2] as 'ms' | 's' | 'm' | 'h'];
  if (ms <= 0) throw new InvalidArgumentError('the duration must be above zero');
  return ms;
}

function wholeNumberArg(value: string): number {
  const n = Number(value);
  if (!/^\d+$/.test(value) || !Number.isSafeInteger(n)) throw new InvalidArgumentError('expected a whole number (0 or more)');
  return n;
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

const ENCAP_SIZES = [64, 512, 1400];
const ENCAP_PEERS = [10, 1000, 10000];

function runEncap(opts: Pick<EncapOpts, 'repeats' | 'millis'>, log: (line: string) => void): { options: object; figures: EncapFigure[] } {
  const figures = benchEncap({ sizes: ENCAP_SIZES, peerCounts: ENCAP_PEERS, repeats: opts.repeats, millisPerRepeat: opts.millis, log });
  return { options: { sizes: ENCAP_SIZES, peerCounts: ENCAP_PEERS, repeats: opts.repeats, millisPerRepeat: opts.millis }, figures };
}

function runE2e(opts: E2eOpts, openvpn: boolean, log: (line: string) => void): Promise<E2eResult> {
  const processes = new MeasurementProcesses();
  return interruptible(processes, log, (signal) =>
    benchE2e({ repeats: opts.repeats, seconds: opts.seconds, udpPps: opts.udpPps, pings: opts.pings, ablation: opts.ablation === true, auth: opts.auth === true, openvpn, log, signal, processes }),
  );
}

function runControlPlane(opts: ControlPlaneOpts, log: (line: string) => void): Promise<ControlPlaneResult> {
  const { nodes, workers, changes, steadySeconds, idleSeconds, kill } = opts;
  return interruptible(undefined, log, (signal) =>
    benchControlPlane({ nodes, workers, changes, steadySeconds, idleSeconds, kill, leaseTtlMs: opts.leaseTtl, renewMarginMs: opts.leaseRenewMargin, log, signal }),
  );
}

const CONTROL_PLANE_DEFAULTS: Omit<ControlPlaneOpts, 'nodes'> = { workers: 4, changes: 50, steadySeconds: 120, idleSeconds: 20, leaseTtl: 120_000, leaseRenewMargin: 60_000, kill: 5 };

/** `bench all`'s control-plane part: the defaults (or the quick ones), with at most half the nodes killed. */
function controlPlaneForAll(nodes: number, quick: boolean): ControlPlaneOpts {
  const opts: ControlPlaneOpts = { nodes, ...CONTROL_PLANE_DEFAULTS, ...(quick ? CONTROL_PLANE_QUICK : {}) };
  return { ...opts, kill: Math.min(opts.kill, Math.floor(nodes / 2)) };
}

const outOption = () => new Option('--out <file>', 'also write the result document (JSON) to this file');
const quickOption = (what: string) => new Option('--quick', `a short run (${what}) to check that everything works; figures are rough`);

export function benchCommand(): Command {
  const bench = new Command('bench').description('measure encapsulation throughput, the data paths side by side, and the control plane at scale');

  bench
    .command('encap')
    .description('the hot path in process: egress checks, peer lookup, framing and ingress checks, at 64/512/1400 B and 10/1000/10000 peers (no root)')
    .addOption(new Option('--repeats <n>', 'repeats per case; medians are reported').default(5).argParser(positiveInteger))
    .addOption(new Option('--millis <ms>', 'length of each repeat').default(1000).argParser(positiveInteger))
    .addOption(quickOption('3 repeats of 200 ms, a few seconds'))
    .addOption(outOption())
    .addHelpText('after', examples('miniflannel bench encap', 'miniflannel bench encap --quick --json'))
    .action(async (raw: EncapOpts, command: Command) => {
      const opts = applyQuick(command, raw, { repeats: 3, millis: 200 });
      await checkWritable('--out', opts.out);
      const out = outputOf(command);
      const log = progress();
      const doc = await document('encap', packageVersion(), async () => runEncap(opts, log));
      await finish(out, doc, encapReport(out, doc.result.figures, opts.repeats), { out: opts.out });
    });

  bench
    .command('e2e')
    .description('pod-to-pod through miniflannel, kernel VXLAN, the bare underlay and OpenVPN, side by side in namespaces (root, iperf3)')
    .addOption(new Option('--repeats <n>', 'rounds over all paths; medians are reported').default(3).argParser(positiveInteger))
    .addOption(new Option('--seconds <n>', 'length of each iperf3 run').default(10).argParser(positiveInteger))
    .addOption(
      new Option('--udp-pps <n>', "offered UDP load in packets per second, the same on every path; 'auto': 80 % of what iperf3 sends unthrottled over the underlay")
        .default('auto')
        .argParser(autoOrPositive),
    )
    .addOption(new Option('--pings <n>', 'pings per RTT measurement, 10 ms apart').default(200).argParser(positiveInteger))
    .option('--ablation', 'also measure miniflannel with node:dgram and without TUN offloads')
    .option('--auth', 'also measure miniflannel with authenticated encapsulation (mac and encrypt modes)')
    .addOption(quickOption('1 round of 2 s runs, about a minute'))
    .addOption(outOption())
    .addOption(new Option('--svg <file>', 'write the comparison chart here (default: next to --out, .svg)'))
    .addHelpText('after', examples('sudo miniflannel bench e2e', 'sudo miniflannel bench e2e --repeats 5 --out e2e.json', 'sudo miniflannel bench e2e --quick --json'))
    .action(async (raw: E2eOpts, command: Command) => {
      const opts = applyQuick(command, raw, { repeats: 1, seconds: 2, pings: 50 });
      await checkWritable('--out', opts.out);
      await checkWritable('--svg', opts.svg);
      const { openvpn } = await e2ePrerequisites('bench e2e');
      const out = outputOf(command);
      const log = progress();
      const doc = await document('e2e', packageVersion(), () => runE2e(opts, openvpn, log));
      await finish(out, doc, e2eReport(out, doc.result), { out: opts.out, svg: opts.svg, e2e: doc.result });
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
    .addOption(new Option('--kill <n>', 'daemons stopped without revoking before the window, whose leases expire in it').default(CONTROL_PLANE_DEFAULTS.kill).argParser(wholeNumberArg))
    .addOption(quickOption('10 changes, a 20 s window, lease TTL 20 s, under a minute at 50 nodes'))
    .addOption(outOption())
    .addHelpText('after', examples('miniflannel bench control-plane --nodes 1000', 'miniflannel bench control-plane --nodes 10000 --out cp.json', 'miniflannel bench control-plane --nodes 50 --quick --json'))
    .action(async (raw: ControlPlaneOpts, command: Command) => {
      const opts = applyQuick(command, raw, CONTROL_PLANE_QUICK);
      checkControlPlane(opts);
      await checkWritable('--out', opts.out);
      await controlPlanePrerequisites('bench control-plane');
      const out = outputOf(command);
      const log = progress();
      const doc = await document('control-plane', packageVersion(), () => runControlPlane(opts, log));
      await finish(out, doc, controlPlaneReport(out, doc.result), { out: opts.out });
    });

  bench
    .command('all')
    .description('encap, then e2e, then control-plane, into one result document (what `npm run bench` runs)')
    .addOption(new Option('--repeats <n>', 'e2e rounds').default(3).argParser(positiveInteger))
    .addOption(new Option('--seconds <n>', 'length of each e2e iperf3 run').default(10).argParser(positiveInteger))
    .addOption(new Option('--nodes <n>', 'control-plane simulated daemons').default(1000).argParser(positiveInteger))
    .option('--ablation', 'also measure miniflannel with node:dgram and without TUN offloads')
    .option('--auth', 'also measure miniflannel with authenticated encapsulation (mac and encrypt modes)')
    .addOption(quickOption('each part quick'))
    .addOption(outOption())
    .addOption(new Option('--svg <file>', 'write the e2e chart here (default: next to --out, .svg)'))
    .addHelpText('after', examples('sudo miniflannel bench all --out bench.json'))
    .action(async (raw: { repeats: number; seconds: number; nodes: number; ablation?: boolean; auth?: boolean; quick?: boolean; out?: string; svg?: string }, command: Command) => {
      const opts = applyQuick(command, raw, { repeats: 1, seconds: 2 });
      await checkWritable('--out', opts.out);
      await checkWritable('--svg', opts.svg);
      const { openvpn } = await e2ePrerequisites('bench all');
      await controlPlanePrerequisites('bench all');
      const quick = opts.quick === true;
      const out = outputOf(command);
      const log = progress();
      // A part that fails does not take the others' figures with it: it is recorded, and the run exits 1 at the end.
      const failures: string[] = [];
      const part = async <T>(name: string, run: () => Promise<T>): Promise<T | { error: string }> => {
        log(name);
        try {
          return await run();
        } catch (err) {
          if (err instanceof InterruptedError) throw err;
          const message = err instanceof Error ? err.message : String(err);
          failures.push(`${name.split(':')[0]}: ${message}`);
          log(`${name.split(':')[0]} failed: ${message}`);
          return { error: message };
        }
      };
      const doc = await document('all', packageVersion(), async () => {
        const encap = await part('encap: the hot path in process', async () => runEncap(quick ? { repeats: 3, millis: 200 } : { repeats: 5, millis: 1000 }, log));
        const e2e = await part('e2e: the data paths side by side', () =>
          runE2e({ repeats: opts.repeats, seconds: opts.seconds, udpPps: 'auto', pings: quick ? 50 : 200, ablation: opts.ablation, auth: opts.auth }, openvpn, log),
        );
        const controlPlane = await part('control-plane: simulated daemons against one Redis', () =>
          runControlPlane(controlPlaneForAll(opts.nodes, quick), log),
        );
        return { encap, e2e, controlPlane };
      });
      const r = doc.result;
      const failed = (value: object): value is { error: string } => 'error' in value;
      const report = [
        failed(r.encap) ? `encap failed: ${r.encap.error}` : encapReport(out, r.encap.figures, quick ? 3 : 5),
        failed(r.e2e) ? `e2e failed: ${r.e2e.error}` : e2eReport(out, r.e2e),
        failed(r.controlPlane) ? `control-plane failed: ${r.controlPlane.error}` : controlPlaneReport(out, r.controlPlane),
      ].join('\n\n');
      await finish(out, doc, report, { out: opts.out, svg: opts.svg, ...(failed(r.e2e) ? {} : { e2e: r.e2e }) });
      if (failures.length > 0) throw new BenchFailedError(`bench all: ${failures.join('; ')}`);
    });

  return bench;
}
