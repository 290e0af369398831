// `miniflannel doctor`: the whole cluster at a glance. Reads the network
// config and the leases from Redis, asks every lease's daemon for its
// /status (cli/cluster/survey.ts), and prints one row per node and one line
// per finding (cli/cluster/doctor.ts decides them). Exits 1 when it finds a
// problem, so a script or a cron job can act on it.
//
// Drop rates, and whether a node accepts what its peers send, need two
// looks: each run keeps the counters it read in a state file, and the next
// run compares with them.

import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import path from 'node:path';
import { Command, Option } from 'commander';
import { diagnose, isProblem, type Diagnosis, type Finding, type Look, type NodeReport } from '../cluster/doctor.js';
import { DEFAULT_CONCURRENCY, isObject, lookAtNodes } from '../cluster/survey.js';
import { examples, healthPortOption, outputOf, positiveInteger, settingsOf } from '../conventions.js';
import { reasonOf } from '../errors.js';
import type { Cell, Output } from '../output.js';
import { withStore } from '../store.js';

/** doctor found something wrong: an operational failure (exit 1), reported after the table. */
export class ProblemsFoundError extends Error {
  override readonly name = 'ProblemsFoundError';
}

interface DoctorOptions {
  port: number;
  concurrency: number;
  state?: string;
}

/** The looks kept per cluster (its masked Redis address and key prefix), so one state file serves several clusters. */
interface StateFile {
  readonly looks: Record<string, Look>;
}

export function defaultStatePath(env: NodeJS.ProcessEnv = process.env): string {
  const base = env['XDG_STATE_HOME'] || path.join(homedir(), '.local', 'state');
  return path.join(base, 'miniflannel', 'doctor.json');
}

/** Whether a stored look has the shape diagnose reads; a look of another shape is ignored, as if there were none. */
function isLook(value: unknown): value is Look {
  return isObject(value) && isObject(value['nodes']) && Object.values(value['nodes']).every((n) => isObject(n) && typeof n['at'] === 'number' && isObject(n['drops']) && isObject(n['peers']));
}

/** The state file's looks; none when it does not exist yet, and a warning when it cannot be read. */
async function readState(file: string, out: Output): Promise<StateFile> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') out.warn(`cannot read the state file ${file} (${reasonOf(err)}): this look has no earlier one to compare with`);
    return { looks: {} };
  }
  try {
    const doc: unknown = JSON.parse(text);
    if (isObject(doc) && isObject(doc['looks'])) return { looks: Object.fromEntries(Object.entries(doc['looks']).filter(([, look]) => isLook(look))) as Record<string, Look> };
  } catch {
    // Reported below, as a file of the wrong shape is.
  }
  out.warn(`the state file ${file} is not doctor's: this look has no earlier one to compare with, and replaces it`);
  return { looks: {} };
}

/** Keeps this look for the next run; a state file that cannot be written costs the next run its rates, not this run its result. */
async function writeState(file: string, state: StateFile, out: Output): Promise<void> {
  try {
    await mkdir(path.dirname(file), { recursive: true });
    const temporary = `${file}.${process.pid}.tmp`;
    await writeFile(temporary, `${JSON.stringify(state)}\n`);
    await rename(temporary, file);
  } catch (err) {
    out.warn(`cannot keep this look in ${file} (${reasonOf(err)}; --state): the next run shows totals, not rates`);
  }
}

const STATE_STYLES: Readonly<Record<NodeReport['state'], 'green' | 'yellow' | 'red'>> = { running: 'green', waiting: 'yellow', starting: 'yellow', unreachable: 'red', unknown: 'red' };
const SEVERITY_STYLES: Readonly<Record<Finding['severity'], 'red' | 'yellow' | 'dim'>> = { error: 'red', warning: 'yellow', info: 'dim' };

function dropsCell(drops: NodeReport['drops']): Cell {
  if (drops === null) return '-';
  if (drops.perSecond === null) return `${drops.total} total`;
  return drops.total > 0 ? { text: drops.perSecond.toFixed(2), style: 'yellow' } : '0';
}

function row(node: NodeReport): Cell[] {
  const peers = node.peers === null ? '-' : { text: `${node.peers.matching}/${node.peers.expected}`, style: node.peers.matching === node.peers.expected ? ('green' as const) : ('red' as const) };
  const store: Cell = node.storeConnected === null ? '-' : node.storeConnected ? { text: 'ok', style: 'green' } : { text: 'unreachable', style: 'red' };
  return [
    node.node,
    node.subnet,
    node.publicIP ?? node.publicIPv6 ?? '-',
    node.version ?? '-',
    { text: node.reserved && node.state === 'unreachable' ? 'unreachable (reserved)' : node.state, style: STATE_STYLES[node.state] },
    store,
    peers,
    dropsCell(node.drops),
  ];
}

function render(out: Output, diagnosis: Diagnosis): void {
  out.line(out.table(['NODE', 'SUBNET', 'PUBLIC IP', 'VERSION', 'STATE', 'STORE', 'PEERS', 'DROPS/S'], diagnosis.nodes.map(row)));
  out.line();
  if (diagnosis.findings.length === 0) return out.line(`No problems found on ${diagnosis.nodes.length} nodes.`);
  out.line(out.table(['SEVERITY', 'CHECK', 'FINDING'], diagnosis.findings.map((f) => [{ text: f.severity, style: SEVERITY_STYLES[f.severity] }, f.check, f.message])));
}

async function doctor(command: Command, opts: DoctorOptions): Promise<void> {
  const out = outputOf(command);
  const settings = settingsOf(command);
  // The leases are listed again after the survey: a node that joins or leaves meanwhile is no daemon's fault (diagnose).
  // Each status is read at its own time, and the leases' time left is judged by the clock at the second listing.
  const { network, looks, relisted, now, cluster } = await withStore(settings, async (store) => {
    const [listing, config] = await Promise.all([store.listLeases(), store.getNetworkConfig()]);
    const clock = (): number => Math.floor(store.serverNow());
    const looks = await lookAtNodes(listing.leases, { port: opts.port, timeoutMs: settings.timeoutMs, concurrency: opts.concurrency, clock });
    const relisted = (await store.listLeases()).leases;
    return { network: config, looks, relisted, now: clock(), cluster: `${store.address} ${settings.prefix}` };
  });
  const stateFile = opts.state ?? defaultStatePath();
  const state = await readState(stateFile, out);
  const previous = state.looks[cluster];
  const diagnosis = diagnose({ network, looks, relisted, now, ...(previous ? { previous } : {}) });
  await writeState(stateFile, { looks: { ...state.looks, [cluster]: diagnosis.look } }, out);

  const problems = diagnosis.findings.filter(isProblem);
  if (out.json) out.document({ at: now, problems: problems.length, nodes: diagnosis.nodes, findings: diagnosis.findings });
  else if (looks.length === 0) out.note('no leases in the store: no daemon has joined yet');
  else render(out, diagnosis);
  if (problems.length > 0) {
    const errors = problems.filter((f) => f.severity === 'error').length;
    throw new ProblemsFoundError(`doctor found ${problems.length} problem${problems.length === 1 ? '' : 's'} (${errors} error${errors === 1 ? '' : 's'}, ${problems.length - errors} warning${problems.length - errors === 1 ? '' : 's'})`);
  }
}

export function doctorCommand(): Command {
  return new Command('doctor')
    .description("check the whole cluster: every lease's daemon answers and runs, its peers match the leases, its config matches the stored one, versions agree, leases renew, and drops since the last look; exit 1 on a problem")
    .addOption(healthPortOption('each asked within --timeout'))
    .addOption(new Option('--concurrency <n>', 'daemons asked at once').default(DEFAULT_CONCURRENCY).argParser(positiveInteger))
    .addOption(new Option('--state <file>', 'where each look is kept for the next one, which turns drop counts into rates (default: $XDG_STATE_HOME/miniflannel/doctor.json, else ~/.local/state/miniflannel/doctor.json)'))
    .addHelpText('after', examples('miniflannel doctor --redis-url redis://10.0.0.5:6379', 'miniflannel doctor --json --timeout 1000 --state /var/lib/miniflannel/doctor.json'))
    .action((opts: DoctorOptions, command: Command) => doctor(command, opts));
}
