// The benchmarks behind `miniflannel bench`: encap (the hot path in
// process), e2e (every data path side by side in namespaces), control-plane
// (N simulated daemons against one Redis), all three in a row, and doctor
// (what a look at N nodes costs the CLI). Progress
// goes to stderr, the tables (or with --json the result document) to stdout,
// and --out writes the document to a file, with the e2e chart next to it.
// The CLI has parsed and checked the options; prerequisites are checked
// here, before minutes of measuring.
import { constants } from 'node:fs';
import { access, writeFile } from 'node:fs/promises';
import { benchControlPlane, type ControlPlaneResult } from './control-plane.js';
import { benchDoctor } from './doctor.js';
import { benchE2e, type E2eResult } from './e2e.js';
import { benchEncap, type EncapFigure, type Family } from './encap.js';
import { interruptible, InterruptedError } from './interrupt.js';
import { requireBinaries, requireRoot, which, PrerequisiteError } from './prerequisites.js';
import { MeasurementProcesses } from './processes.js';
import { controlPlaneReport, doctorReport, e2eReport, encapReport } from './report.js';
import { document, writeJson, type BenchDocument } from './result.js';
import { e2eChart } from './svg.js';
import type { AllRequest, BenchContext, BenchLab, ControlPlaneRequest, DoctorRequest, E2eRequest, EncapRequest } from '../../cli/lab.js';
import type { Output } from '../../cli/output.js';

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

const svgNextTo = (json: string) => `${json.replace(/\.json$/i, '')}.svg`;

async function e2ePrerequisites(command: string): Promise<{ openvpn: boolean }> {
  requireRoot(command);
  await requireBinaries(command, [
    { binary: 'iperf3', pkg: 'iperf3' },
    { binary: 'ping', pkg: 'iputils-ping' },
    { binary: 'ip', pkg: 'iproute2' },
    { binary: 'bridge', pkg: 'iproute2' },
    // The UDP generator is compiled on first use (udp-load.ts).
    { binary: 'cc', pkg: 'gcc' },
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

const ENCAP_FAMILIES: Family[] = [4, 6];
const ENCAP_SIZES = [64, 512, 1400];
const ENCAP_PEERS = [10, 1000, 10000];

function runEncap(opts: EncapRequest, log: (line: string) => void): { options: object; figures: EncapFigure[] } {
  const figures = benchEncap({ families: ENCAP_FAMILIES, sizes: ENCAP_SIZES, peerCounts: ENCAP_PEERS, repeats: opts.repeats, millisPerRepeat: opts.millis, log });
  return { options: { sizes: ENCAP_SIZES, peerCounts: ENCAP_PEERS, repeats: opts.repeats, millisPerRepeat: opts.millis }, figures };
}

function runE2e(opts: E2eRequest, openvpn: boolean, log: (line: string) => void): Promise<E2eResult> {
  const processes = new MeasurementProcesses();
  return interruptible(processes, log, (signal) =>
    benchE2e({ repeats: opts.repeats, seconds: opts.seconds, udpPps: opts.udpPps, pings: opts.pings, ablation: opts.ablation === true, auth: opts.auth === true, ipv6: opts.ipv6 === true, openvpn, log, signal, processes }),
  );
}

function runControlPlane(opts: ControlPlaneRequest, log: (line: string) => void): Promise<ControlPlaneResult> {
  const { nodes, workers, changes, steadySeconds, idleSeconds, kill } = opts;
  return interruptible(undefined, log, (signal) =>
    benchControlPlane({ nodes, workers, changes, steadySeconds, idleSeconds, kill, leaseTtlMs: opts.leaseTtl, renewMarginMs: opts.leaseRenewMargin, log, signal }),
  );
}

async function encap(opts: EncapRequest, { out, version, files }: BenchContext): Promise<void> {
  const log = progress();
  const doc = await document('encap', version, async () => runEncap(opts, log));
  await finish(out, doc, encapReport(out, doc.result.figures, opts.repeats), files);
}

async function e2e(opts: E2eRequest, { out, version, files }: BenchContext): Promise<void> {
  const { openvpn } = await e2ePrerequisites('bench e2e');
  const log = progress();
  const doc = await document('e2e', version, () => runE2e(opts, openvpn, log));
  await finish(out, doc, e2eReport(out, doc.result), { ...files, e2e: doc.result });
}

async function controlPlane(opts: ControlPlaneRequest, { out, version, files }: BenchContext): Promise<void> {
  await controlPlanePrerequisites('bench control-plane');
  const log = progress();
  const doc = await document('control-plane', version, () => runControlPlane(opts, log));
  await finish(out, doc, controlPlaneReport(out, doc.result), files);
}

async function doctor(opts: DoctorRequest, { out, version, files }: BenchContext): Promise<void> {
  const log = progress();
  const doc = await document('doctor', version, () => benchDoctor({ nodes: opts.nodes, looks: opts.looks, log }));
  await finish(out, doc, doctorReport(out, doc.result), files);
}

async function all(opts: AllRequest, { out, version, files }: BenchContext): Promise<void> {
  const { openvpn } = await e2ePrerequisites('bench all');
  await controlPlanePrerequisites('bench all');
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
  const doc = await document('all', version, async () => {
    const encap = await part('encap: the hot path in process', async () => runEncap(opts.encap, log));
    const e2e = await part('e2e: the data paths side by side', () => runE2e(opts.e2e, openvpn, log));
    const controlPlane = await part('control-plane: simulated daemons against one Redis', () => runControlPlane(opts.controlPlane, log));
    return { encap, e2e, controlPlane };
  });
  const r = doc.result;
  const failed = (value: object): value is { error: string } => 'error' in value;
  const report = [
    failed(r.encap) ? `encap failed: ${r.encap.error}` : encapReport(out, r.encap.figures, opts.encap.repeats),
    failed(r.e2e) ? `e2e failed: ${r.e2e.error}` : e2eReport(out, r.e2e),
    failed(r.controlPlane) ? `control-plane failed: ${r.controlPlane.error}` : controlPlaneReport(out, r.controlPlane),
  ].join('\n\n');
  await finish(out, doc, report, { ...files, ...(failed(r.e2e) ? {} : { e2e: r.e2e }) });
  if (failures.length > 0) throw new BenchFailedError(`bench all: ${failures.join('; ')}`);
}

export const lab: BenchLab = { encap, e2e, controlPlane, doctor, all };
