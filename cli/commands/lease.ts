// `miniflannel lease`: list (and watch), show, reserve and revoke the subnet
// leases in the lease store. Times to expiry are computed against the Redis
// clock (redisNow(store)), the clock the expiries are written with.

import { createInterface } from 'node:readline';
import { Command } from 'commander';
import { ConfigError, ConfigMissingError, holderOf, misfitOf, type Lease, type NetworkConfig, type SubnetManager, type WatchEvent } from '../../daemon/lease/index.js';
import { formatCidr, InvalidAddressError, parseCidr, tryParseIPv4, type Cidr } from '../../daemon/net/ipv4.js';
import { examples, outputOf, settingsOf } from '../conventions.js';
import { NotFoundError, RefusedError, UsageError } from '../errors.js';
import { humanDuration, isoTime, textOf, type Cell, type Output } from '../output.js';
import { withStore } from '../store.js';

/** Below this time to expiry a lease is shown as a warning: its node should have renewed it an hour before. */
const LOW_TTL_MS = 60 * 60 * 1000;

/** The JSON form of a lease: the store's fields, then the expiry as ISO text and as time left. */
function leaseDocument(lease: Lease, now: number) {
  return {
    subnet: lease.subnet,
    publicIP: lease.publicIP,
    nodeName: lease.nodeName,
    backendType: lease.backendType,
    backendData: lease.backendData,
    reserved: lease.expiresAt === null,
    expiresAt: lease.expiresAt,
    expires: lease.expiresAt === null ? null : isoTime(lease.expiresAt),
    expiresInMs: lease.expiresAt === null ? null : Math.max(0, lease.expiresAt - now),
  };
}

/** The Redis clock in whole ms (the store's estimate carries fractions), so JSON times and durations agree exactly. */
function redisNow(store: SubnetManager): number {
  return Math.floor(store.serverNow());
}

function backendOf(lease: Lease): string {
  const port = lease.backendData['Port'];
  return typeof port === 'number' ? `${lease.backendType}:${port}` : lease.backendType;
}

function expiryCell(lease: Lease, now: number): Cell {
  if (lease.expiresAt === null) return { text: 'reserved', style: 'cyan' };
  const left = lease.expiresAt - now;
  return left < LOW_TTL_MS ? { text: humanDuration(left), style: 'yellow' } : humanDuration(left);
}

/** By subnet address (10.244.20.0/24 before 10.244.100.0/24), as every listing is shown. */
function bySubnet(leases: readonly Lease[]): Lease[] {
  return [...leases].sort((a, b) => a.cidr.network - b.cidr.network);
}

const LEASE_COLUMNS = ['SUBNET', 'PUBLIC IP', 'NODE', 'BACKEND', 'EXPIRES IN'];

function leaseRow(lease: Lease, now: number): Cell[] {
  return [lease.subnet, lease.publicIP, lease.nodeName || '-', backendOf(lease), expiryCell(lease, now)];
}

// ---- subnet arguments ----------------------------------------------------

/** Parses a subnet argument. A bad CIDR is an InvalidAddressError; host bits are a UsageError naming the aligned subnet. */
export function parseSubnetArgument(text: string): Cidr {
  try {
    return parseCidr(text);
  } catch (err) {
    if (!(err instanceof InvalidAddressError)) throw err;
    let aligned: Cidr;
    try {
      aligned = parseCidr(text, { allowHostBits: true });
    } catch {
      throw err;
    }
    throw new UsageError(`subnet ${text} is not aligned to a /${aligned.prefixLength} boundary; did you mean ${formatCidr(aligned)}?`, { cause: err });
  }
}

/**
 * The lease on `text`, for show and revoke. A subnet that does not fit the
 * network config is a usage error, unless a lease holds exactly that subnet:
 * after a forced config change, old leases must stay visible and revocable.
 */
async function findLease(store: SubnetManager, out: Output, text: string): Promise<{ lease: Lease; now: number }> {
  const cidr = parseSubnetArgument(text);
  const subnet = formatCidr(cidr);
  const [{ leases }, config] = await Promise.all([store.listLeases(), readConfigIfAny(store)]);
  const lease = leases.find((l) => l.subnet === subnet);
  // As a reservation: show and revoke also take reservations outside SubnetMin..SubnetMax.
  const misfit = config === undefined ? undefined : misfitOf(config, cidr, true);
  if (lease === undefined) throw misfit === undefined ? new NotFoundError(`no lease on subnet ${subnet}`) : new UsageError(misfit);
  if (misfit !== undefined) out.warn(`${misfit}: this lease predates the current network config`);
  return { lease, now: redisNow(store) };
}

/** The network config, or undefined when none (or an invalid one) is stored: show and revoke work without it. */
async function readConfigIfAny(store: SubnetManager): Promise<NetworkConfig | undefined> {
  try {
    return await store.getNetworkConfig();
  } catch (err) {
    if (err instanceof ConfigMissingError || err instanceof ConfigError) return undefined;
    throw err;
  }
}

// ---- list and watch -----------------------------------------------------

async function list(command: Command, watch: boolean): Promise<void> {
  const out = outputOf(command);
  await withStore(settingsOf(command), async (store) => {
    if (watch) return watchLeases(store, out);
    const listing = await store.listLeases();
    const leases = bySubnet(listing.leases);
    const now = redisNow(store);
    // Values nobody can decode (written by hand, say) are left out of the table, but never silently.
    for (const bad of listing.corrupt) {
      out.warn(`${store.keys.leases} field ${JSON.stringify(bad.subnet)} is not a lease and is ignored: ${bad.reason}; fix or delete it with redis-cli HDEL`);
    }
    if (out.json) {
      const corrupt = listing.corrupt.length > 0 ? { corrupt: listing.corrupt } : {};
      return out.document({ time: isoTime(now), leases: leases.map((l) => leaseDocument(l, now)), ...corrupt });
    }
    if (leases.length === 0) return out.note('no leases');
    out.line(out.table(LEASE_COLUMNS, leases.map((l) => leaseRow(l, now))));
  });
}

const WATCH_COLUMNS = ['EVENT', ...LEASE_COLUMNS];
/** Room for the widest event, subnet and address, so rows printed one at a time stay aligned. */
const WATCH_MIN_WIDTHS = [8, 18, 15, 12, 9];

type ChangeEvent = Extract<WatchEvent, { lease: Lease }>;

function watchRow(event: ChangeEvent, now: number): Cell[] {
  const row = leaseRow(event.lease, now);
  if (event.type === 'removed' || event.type === 'expired') {
    row[4] = '-';
    return [{ text: event.type, style: 'red' }, ...row];
  }
  return [{ text: event.type, style: 'green' }, ...row];
}

/** The Redis clock at a stream ID ("1733112000123-0"): when the change was written. */
function writtenAt(seq: string): number {
  return Number(seq.slice(0, seq.indexOf('-'))) || 0;
}

/** Prints the snapshot, then every change, until SIGINT or SIGTERM (exit 0) or until the store fails (exit 1). */
async function watchLeases(store: SubnetManager, out: Output): Promise<void> {
  const watch = store.watchLeases();
  const stop = (): void => void watch.close();
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  let widths: number[] = WATCH_MIN_WIDTHS;
  const note = (event: string, text: string) => out.line(out.table(WATCH_COLUMNS, [[{ text: event, style: 'yellow' }, text]], { minWidths: widths, header: false }));
  try {
    for await (const event of watch) {
      const now = redisNow(store);
      switch (event.type) {
        case 'snapshot': {
          const leases = bySubnet(event.leases);
          if (out.json) {
            out.record({ type: 'snapshot', cause: event.cause, seq: event.seq, time: isoTime(now), leases: leases.map((l) => leaseDocument(l, now)) });
            break;
          }
          const rows = leases.map((l) => ['listed', ...leaseRow(l, now)]);
          if (event.cause === 'start') widths = WATCH_COLUMNS.map((title, i) => Math.max(title.length, WATCH_MIN_WIDTHS[i] ?? 0, ...rows.map((row) => textOf(row[i] ?? '').length)));
          else note('relisted', event.cause === 'gap' ? 'changes were missed; the leases as they are now:' : 'the store lost its data; the leases re-asserted so far:');
          out.line(out.table(WATCH_COLUMNS, rows, { minWidths: widths, header: event.cause === 'start' }));
          break;
        }
        case 'reset':
          if (out.json) out.record({ type: 'reset', epoch: event.epoch, time: isoTime(now) });
          else note('reset', 'the store lost its data; each running node re-asserts its lease');
          break;
        case 'config':
          if (out.json) out.record({ type: 'config', time: isoTime(now) });
          else note('config', 'the stored network config was written or deleted');
          break;
        default: {
          // Never before the change was written: the estimate of the Redis clock can lag it by a millisecond.
          const at = Math.max(now, writtenAt(event.seq));
          if (out.json) out.record({ type: event.type, seq: event.seq, time: isoTime(at), lease: leaseDocument(event.lease, at) });
          else out.line(out.table(WATCH_COLUMNS, [watchRow(event, at)], { minWidths: widths, header: false }));
        }
      }
    }
  } finally {
    process.off('SIGINT', stop);
    process.off('SIGTERM', stop);
  }
}

// ---- show, reserve, revoke ------------------------------------------------

function leaseFields(out: Output, lease: Lease, now: number): string {
  const expires: Cell =
    lease.expiresAt === null
      ? { text: 'never (reserved)', style: 'cyan' }
      : `${isoTime(lease.expiresAt)} (in ${textOf(expiryCell(lease, now))})`;
  return out.fields([
    ['Subnet', lease.subnet],
    ['Public IP', lease.publicIP],
    ['Node', lease.nodeName === '' ? '- (no node has claimed this reservation yet)' : lease.nodeName],
    ['Backend', lease.backendType],
    ['Backend data', JSON.stringify(lease.backendData)],
    ['Expires', expires],
  ]);
}

async function show(command: Command, text: string): Promise<void> {
  const out = outputOf(command);
  await withStore(settingsOf(command), async (store) => {
    const { lease, now } = await findLease(store, out, text);
    if (out.json) return out.document(leaseDocument(lease, now));
    out.line(leaseFields(out, lease, now));
  });
}

async function reserve(command: Command, text: string, opts: { publicIp: string; node?: string }): Promise<void> {
  const out = outputOf(command);
  if (tryParseIPv4(opts.publicIp) < 0) throw new UsageError(`--public-ip "${opts.publicIp}" is not an IPv4 address such as 198.18.0.2`);
  const subnet = formatCidr(parseSubnetArgument(text));
  await withStore(settingsOf(command), async (store) => {
    const { lease, outcome } = await store.reserve(subnet, opts.publicIp, opts.node);
    const now = redisNow(store);
    if (out.json) return out.document({ outcome, lease: leaseDocument(lease, now) });
    switch (outcome) {
      case 'created':
        return out.line(`reserved ${subnet} for ${holderOf(lease)}`);
      case 'converted':
        return out.line(`reserved ${subnet} for ${holderOf(lease)}: its lease no longer expires`);
      case 'updated':
        return out.line(`${subnet} was already reserved for ${lease.publicIP}; its node is now ${lease.nodeName}`);
      case 'unchanged':
        return out.line(`${subnet} was already reserved for ${holderOf(lease)}`);
    }
  });
}

/** Asks on the terminal; anything but y/yes (or stdin closing) is no. */
async function confirm(question: string): Promise<boolean> {
  // Not in terminal mode: the terminal echoes and edits the line itself, and Ctrl-C stays a plain SIGINT.
  const rl = createInterface({ input: process.stdin, output: process.stderr, terminal: false });
  try {
    const answer = await new Promise<string>((resolve) => {
      rl.once('close', () => resolve(''));
      rl.question(question, resolve);
    });
    return /^y(es)?$/i.test(answer.trim());
  } finally {
    rl.close();
  }
}

async function revoke(command: Command, text: string, opts: { yes?: boolean }): Promise<void> {
  const out = outputOf(command);
  const ask = opts.yes !== true;
  if (ask && !process.stdin.isTTY) {
    throw new UsageError(`revoke asks for confirmation, but stdin is not a terminal: pass --yes to revoke ${text} without asking`);
  }
  await withStore(settingsOf(command), async (store) => {
    const { lease, now } = await findLease(store, out, text);
    if (ask && !(await confirm(`Revoke ${lease.subnet} held by ${holderOf(lease)}? [y/N] `))) {
      throw new RefusedError(`not revoked: ${lease.subnet} stays with ${holderOf(lease)}`);
    }
    // Only if it still belongs to the holder just shown: never revoke a lease the operator did not see.
    if (!(await store.revokeLease(lease.subnet, { publicIP: lease.publicIP }))) {
      throw new NotFoundError(`no lease on subnet ${lease.subnet}: it expired or was revoked meanwhile`);
    }
    if (out.json) return out.document({ revoked: leaseDocument(lease, now) });
    if (lease.expiresAt === null) return out.line(`revoked the reservation of ${lease.subnet} for ${holderOf(lease)}`);
    out.line(`revoked ${lease.subnet}: node ${holderOf(lease)} loses this lease`);
  });
}

export function leaseCommand(): Command {
  const lease = new Command('lease')
    .description('list, show, reserve and revoke the subnet leases of the nodes')
    .addHelpText('after', examples('miniflannel lease list', 'miniflannel lease show 10.244.3.0/24 --json'));

  lease
    .command('list')
    .description('every lease, sorted by subnet, with its holder and its time to expiry')
    .option('-w, --watch', 'after the list, print each change as it happens (until Ctrl-C); with --json, one JSON object per line')
    .addHelpText('after', examples('miniflannel lease list', 'miniflannel lease list --watch --json --redis-url redis://10.0.0.5:6379'))
    .action((opts: { watch?: boolean }, command: Command) => list(command, opts.watch === true));

  lease
    .command('show')
    .description('one lease in full')
    .argument('<subnet>', 'the leased subnet, e.g. 10.244.3.0/24')
    .addHelpText('after', examples('miniflannel lease show 10.244.3.0/24'))
    .action((subnet: string, _opts: unknown, command: Command) => show(command, subnet));

  lease
    .command('reserve')
    .description('reserve a subnet for a public IP: a lease that never expires, which only that node can take')
    .argument('<subnet>', 'a subnet of the network, SubnetLen long, e.g. 10.244.9.0/24')
    .requiredOption('--public-ip <ip>', 'the underlay address of the node the subnet is for')
    .option('--node <name>', 'the Kubernetes name of that node, shown until the node claims the reservation itself')
    .addHelpText('after', examples('miniflannel lease reserve 10.244.9.0/24 --public-ip 198.18.0.9 --node node-i'))
    .action((subnet: string, opts: { publicIp: string; node?: string }, command: Command) => reserve(command, subnet, opts));

  lease
    .command('revoke')
    .description('delete a lease or reservation: the node holding it loses the subnet, and the other nodes drop it from their peer tables')
    .argument('<subnet>', 'the leased subnet, e.g. 10.244.3.0/24')
    .option('-y, --yes', 'do not ask for confirmation (required when stdin is not a terminal)')
    .addHelpText('after', examples('miniflannel lease revoke 10.244.3.0/24', 'miniflannel lease revoke 10.244.3.0/24 --yes --json'))
    .action((subnet: string, opts: { yes?: boolean }, command: Command) => revoke(command, subnet, opts));

  return lease;
}
