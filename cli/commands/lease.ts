// `miniflannel lease`: list (and watch), show, reserve and revoke the subnet
// leases in the lease store. Times to expiry are computed against the Redis
// clock (redisNow(store)), the clock the expiries are written with.
//
// Under a dual-stack network config every lease is shown with its IPv6 side:
// the IPv6 subnet paired with its IPv4 one, and the holder's PublicIPv6. A
// subnet argument may name either half of the pair, or both. Under an
// IPv6-only config a lease's subnet is its IPv6 subnet.

import { createInterface } from 'node:readline';
import { Command } from 'commander';
import {
  ConfigError,
  ConfigMissingError,
  compareSubnets,
  formatSubnet,
  holderOf,
  ipv4SubnetOf,
  ipv6SubnetOf,
  misfitOf,
  ownerAddress,
  type Lease,
  type NetworkConfig,
  type SubnetManager,
  type WatchEvent,
} from '../../daemon/lease/index.js';
import { formatCidr, InvalidAddressError, parseCidr, tryParseIPv4, type Cidr, type ParseCidrOptions } from '../../daemon/net/ipv4.js';
import { formatCidr6, isCidr6, parseCidr6, parseIPv6, type Cidr6 } from '../../daemon/net/ipv6.js';
import { examples, outputOf, settingsOf } from '../conventions.js';
import { NotFoundError, RefusedError, UsageError } from '../errors.js';
import { humanDuration, isoTime, textOf, type Cell, type Output } from '../output.js';
import { withStore } from '../store.js';

/** Below this time to expiry a lease is shown as a warning: its node should have renewed it an hour before. */
const LOW_TTL_MS = 60 * 60 * 1000;

/**
 * The IPv6 side of a lease under a config with IPv6 (null where it has none),
 * or undefined under an IPv4-only one. Under an IPv6-only config the subnet
 * is the lease's own, so there is no paired ipv6Subnet.
 */
function ipv6SideOf(lease: Lease, config: NetworkConfig | undefined): { ipv6Subnet?: string | null; publicIPv6: string | null } | undefined {
  if (config?.ipv6 === undefined) return undefined;
  const publicIPv6 = lease.publicIPv6 ?? null;
  if (isIPv6Only(config)) return { publicIPv6 };
  const subnet6 = isCidr6(lease.cidr) ? undefined : ipv6SubnetOf(config, lease.cidr);
  return { ipv6Subnet: subnet6 === undefined ? null : formatCidr6(subnet6), publicIPv6 };
}

function isIPv6Only(config: NetworkConfig | undefined): boolean {
  return config !== undefined && config.ipv4 === undefined;
}

/** The JSON form of a lease: the store's fields (the IPv6 side only under a config with IPv6), then the expiry as ISO text and as time left. */
function leaseDocument(lease: Lease, now: number, config: NetworkConfig | undefined) {
  const ipv6 = ipv6SideOf(lease, config);
  return {
    subnet: lease.subnet,
    ...(ipv6?.ipv6Subnet === undefined ? {} : { ipv6Subnet: ipv6.ipv6Subnet }),
    publicIP: lease.publicIP ?? null,
    ...(ipv6 === undefined ? {} : { publicIPv6: ipv6.publicIPv6 }),
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
  return [...leases].sort((a, b) => compareSubnets(a.cidr, b.cidr));
}

function leaseColumns(config: NetworkConfig | undefined): string[] {
  if (config?.ipv6 === undefined) return ['SUBNET', 'PUBLIC IP', 'NODE', 'BACKEND', 'EXPIRES IN'];
  if (isIPv6Only(config)) return ['SUBNET', 'PUBLIC IP', 'PUBLIC IPV6', 'NODE', 'BACKEND', 'EXPIRES IN'];
  return ['SUBNET', 'IPV6 SUBNET', 'PUBLIC IP', 'PUBLIC IPV6', 'NODE', 'BACKEND', 'EXPIRES IN'];
}

/** A row under leaseColumns(config); the expiry is always the last cell. */
function leaseRow(lease: Lease, now: number, config: NetworkConfig | undefined): Cell[] {
  const ipv6 = ipv6SideOf(lease, config);
  const publicIP = lease.publicIP ?? '-';
  const tail = [lease.nodeName || '-', backendOf(lease), expiryCell(lease, now)];
  if (ipv6 === undefined) return [lease.subnet, publicIP, ...tail];
  const subnets = ipv6.ipv6Subnet === undefined ? [lease.subnet] : [lease.subnet, ipv6.ipv6Subnet ?? '-'];
  return [...subnets, publicIP, ipv6.publicIPv6 ?? '-', ...tail];
}

/** "10.244.7.0/24", or "10.244.7.0/24 and fd00:10:244:7::/64" under a dual-stack config. */
function subnetsOf(lease: Lease, config: NetworkConfig | undefined): string {
  const subnet6 = ipv6SideOf(lease, config)?.ipv6Subnet;
  return subnet6 === undefined || subnet6 === null ? lease.subnet : `${lease.subnet} and ${subnet6}`;
}

// ---- subnet arguments ----------------------------------------------------

/** A subnet argument as written: an IPv4 subnet, an IPv6 subnet, or a pair of one each (so at least one is set). */
export interface SubnetSpec {
  readonly ipv4?: Cidr;
  readonly ipv6?: Cidr6;
}

const PAIR_EXAMPLE = '"10.244.7.0/24,fd00:10:244:7::/64"';

/** Parses a subnet argument's syntax; whether an IPv6 half fits is for leaseKeyOfSpec, which needs the config. */
export function parseSubnetSpec(text: string): SubnetSpec {
  const parts = text.split(',');
  if (parts.length > 2) throw new UsageError(`subnet "${text}" is neither a subnet nor a pair of subnets such as ${PAIR_EXAMPLE}`);
  let ipv4: Cidr | undefined;
  let ipv6: Cidr6 | undefined;
  for (const part of parts.map((p) => p.trim())) {
    if (part.includes(':')) {
      if (ipv6 !== undefined) throw new UsageError(`subnet "${text}" names two IPv6 subnets; a pair is one IPv4 and one IPv6 subnet, such as ${PAIR_EXAMPLE}`);
      ipv6 = parseSubnet6Argument(part);
    } else {
      if (ipv4 !== undefined) throw new UsageError(`subnet "${text}" names two IPv4 subnets; a pair is one IPv4 and one IPv6 subnet, such as ${PAIR_EXAMPLE}`);
      ipv4 = parseSubnetArgument(part);
    }
  }
  return { ...(ipv4 === undefined ? {} : { ipv4 }), ...(ipv6 === undefined ? {} : { ipv6 }) };
}

/**
 * The subnet the store keys the lease on that a subnet argument stands for:
 * the IPv4 subnet itself, or the pair of an IPv6 one; in an IPv6-only
 * network the IPv6 subnet. A pair must be paired in `config`; the error
 * names the right pair.
 */
export function leaseKeyOfSpec(spec: SubnetSpec, config: NetworkConfig | undefined): Cidr | Cidr6 {
  const { ipv4, ipv6 } = spec;
  if (config !== undefined && config.ipv4 === undefined) {
    if (ipv4 !== undefined) throw new UsageError(`subnet ${formatCidr(ipv4)} is IPv4, but the network config is IPv6-only (EnableIPv4: false): name the IPv6 subnet`);
    return ipv6!;
  }
  if (ipv6 === undefined) return ipv4!;
  if (config === undefined) {
    throw new UsageError(`subnet ${formatCidr6(ipv6)} is IPv6, and no valid network config is stored to pair it with an IPv4 subnet: name the IPv4 subnet, or store a config with \`miniflannel config set\``);
  }
  const layout = config.ipv6;
  if (layout === undefined) {
    throw new UsageError(`subnet ${formatCidr6(ipv6)} is IPv6, but the network config has no IPv6Network (EnableIPv6 is off): name the IPv4 subnet`);
  }
  const pairOf6 = ipv4SubnetOf(config, ipv6);
  if (ipv4 === undefined) {
    if (pairOf6 !== undefined) return pairOf6;
    const network = config.ipv4!;
    throw new UsageError(
      `subnet ${formatCidr6(ipv6)} pairs with no subnet of Network ${formatCidr(network.network)}: the k-th /${layout.subnetLen} of IPv6Network ${formatCidr6(layout.network)} pairs with the k-th /${network.subnetLen} of Network`,
    );
  }
  const pairOf4 = ipv6SubnetOf(config, ipv4);
  if (pairOf4 === undefined) throw new UsageError(misfitOf(config, ipv4, true) ?? `subnet ${formatCidr(ipv4)} has no IPv6 pair`);
  if (formatCidr6(pairOf4) === formatCidr6(ipv6)) return ipv4;
  const other = pairOf6 === undefined ? '' : `, and ${formatCidr6(ipv6)} with ${formatCidr(pairOf6)}`;
  throw new UsageError(`${formatCidr(ipv4)} and ${formatCidr6(ipv6)} are not a pair in this network config: ${formatCidr(ipv4)} pairs with ${formatCidr6(pairOf4)}${other}`);
}

/** Parses a subnet argument. A bad CIDR is an InvalidAddressError; host bits are a UsageError naming the aligned subnet. */
export function parseSubnetArgument(text: string): Cidr {
  return parseAligned(text, parseCidr, formatCidr);
}

/** parseSubnetArgument for IPv6. */
function parseSubnet6Argument(text: string): Cidr6 {
  return parseAligned(text, parseCidr6, formatCidr6);
}

function parseAligned<T extends { readonly prefixLength: number }>(text: string, parse: (text: string, options?: ParseCidrOptions) => T, format: (cidr: T) => string): T {
  try {
    return parse(text);
  } catch (err) {
    if (!(err instanceof InvalidAddressError)) throw err;
    let aligned: T;
    try {
      aligned = parse(text, { allowHostBits: true });
    } catch {
      throw err;
    }
    throw new UsageError(`subnet ${text} is not aligned to a /${aligned.prefixLength} boundary; did you mean ${format(aligned)}?`, { cause: err });
  }
}

/**
 * The lease on `text`, for show and revoke. A subnet that does not fit the
 * network config is a usage error, unless a lease holds exactly that subnet:
 * after a forced config change, old leases must stay visible and revocable.
 */
async function findLease(store: SubnetManager, out: Output, text: string): Promise<{ lease: Lease; now: number; config: NetworkConfig | undefined }> {
  const spec = parseSubnetSpec(text);
  const [{ leases }, config] = await Promise.all([store.listLeases(), readConfigIfAny(store)]);
  const cidr = leaseKeyOfSpec(spec, config);
  const subnet = formatSubnet(cidr);
  const lease = leases.find((l) => l.subnet === subnet);
  // As a reservation: show and revoke also take reservations outside SubnetMin..SubnetMax.
  const misfit = config === undefined ? undefined : misfitOf(config, cidr, true);
  if (lease === undefined) throw misfit === undefined ? new NotFoundError(`no lease on subnet ${subnet}`) : new UsageError(misfit);
  if (misfit !== undefined) out.warn(`${misfit}: this lease predates the current network config`);
  return { lease, now: redisNow(store), config };
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
    const config = await readConfigIfAny(store);
    if (watch) return watchLeases(store, out, config);
    const listing = await store.listLeases();
    const leases = bySubnet(listing.leases);
    const now = redisNow(store);
    // Values nobody can decode (written by hand, say) are left out of the table, but never silently.
    for (const bad of listing.corrupt) {
      out.warn(`${store.keys.leases} field ${JSON.stringify(bad.subnet)} is not a lease and is ignored: ${bad.reason}; fix or delete it with redis-cli HDEL`);
    }
    if (out.json) {
      const corrupt = listing.corrupt.length > 0 ? { corrupt: listing.corrupt } : {};
      return out.document({ time: isoTime(now), leases: leases.map((l) => leaseDocument(l, now, config)), ...corrupt });
    }
    if (leases.length === 0) return out.note('no leases');
    out.line(out.table(leaseColumns(config), leases.map((l) => leaseRow(l, now, config))));
  });
}

/** Room for the widest event, subnet and address, so rows printed one at a time stay aligned. */
const WATCH_MIN_WIDTHS: Readonly<Record<string, number>> = { EVENT: 8, SUBNET: 18, 'IPV6 SUBNET': 22, 'PUBLIC IP': 15, 'PUBLIC IPV6': 39, NODE: 12, BACKEND: 9 };

type ChangeEvent = Extract<WatchEvent, { lease: Lease }>;

function watchRow(event: ChangeEvent, now: number, config: NetworkConfig | undefined): Cell[] {
  const row = leaseRow(event.lease, now, config);
  if (event.type === 'removed' || event.type === 'expired') {
    row[row.length - 1] = '-';
    return [{ text: event.type, style: 'red' }, ...row];
  }
  return [{ text: event.type, style: 'green' }, ...row];
}

/** The Redis clock at a stream ID ("1733112000123-0"): when the change was written. */
function writtenAt(seq: string): number {
  return Number(seq.slice(0, seq.indexOf('-'))) || 0;
}

/**
 * Prints the snapshot, then every change, until SIGINT or SIGTERM (exit 0) or until the store fails (exit 1).
 * The columns follow the config read when the watch starts; a later change of it shows as a `config` event.
 */
async function watchLeases(store: SubnetManager, out: Output, config: NetworkConfig | undefined): Promise<void> {
  const watch = store.watchLeases();
  const stop = (): void => void watch.close();
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  const columns = ['EVENT', ...leaseColumns(config)];
  const minWidths = columns.map((title) => WATCH_MIN_WIDTHS[title] ?? 0);
  let widths = minWidths;
  const note = (event: string, text: string) => out.line(out.table(columns, [[{ text: event, style: 'yellow' }, text]], { minWidths: widths, header: false }));
  try {
    for await (const event of watch) {
      const now = redisNow(store);
      switch (event.type) {
        case 'snapshot': {
          const leases = bySubnet(event.leases);
          if (out.json) {
            out.record({ type: 'snapshot', cause: event.cause, seq: event.seq, time: isoTime(now), leases: leases.map((l) => leaseDocument(l, now, config)) });
            break;
          }
          const rows = leases.map((l) => ['listed', ...leaseRow(l, now, config)]);
          if (event.cause === 'start') widths = columns.map((title, i) => Math.max(title.length, minWidths[i] ?? 0, ...rows.map((row) => textOf(row[i] ?? '').length)));
          else note('relisted', event.cause === 'gap' ? 'changes were missed; the leases as they are now:' : 'the store lost its data; the leases re-asserted so far:');
          out.line(out.table(columns, rows, { minWidths: widths, header: event.cause === 'start' }));
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
          if (out.json) out.record({ type: event.type, seq: event.seq, time: isoTime(at), lease: leaseDocument(event.lease, at, config) });
          else out.line(out.table(columns, [watchRow(event, at, config)], { minWidths: widths, header: false }));
        }
      }
    }
  } finally {
    process.off('SIGINT', stop);
    process.off('SIGTERM', stop);
  }
}

// ---- show, reserve, revoke ------------------------------------------------

function leaseFields(out: Output, lease: Lease, now: number, config: NetworkConfig | undefined): string {
  const expires: Cell =
    lease.expiresAt === null
      ? { text: 'never (reserved)', style: 'cyan' }
      : `${isoTime(lease.expiresAt)} (in ${textOf(expiryCell(lease, now))})`;
  const ipv6 = ipv6SideOf(lease, config);
  return out.fields([
    ['Subnet', lease.subnet],
    ...(ipv6?.ipv6Subnet === undefined ? [] : [['IPv6 subnet', ipv6.ipv6Subnet ?? '- (the subnet is outside the current Network layout)'] as const]),
    ['Public IP', lease.publicIP ?? '- (its node has no IPv4 underlay address)'],
    ...(ipv6 === undefined ? [] : [['Public IPv6', ipv6.publicIPv6 ?? '- (its node published none)'] as const]),
    ['Node', lease.nodeName === '' ? '- (no node has claimed this reservation yet)' : lease.nodeName],
    ['Backend', lease.backendType],
    ['Backend data', JSON.stringify(lease.backendData)],
    ['Expires', expires],
  ]);
}

async function show(command: Command, text: string): Promise<void> {
  const out = outputOf(command);
  await withStore(settingsOf(command), async (store) => {
    const { lease, now, config } = await findLease(store, out, text);
    if (out.json) return out.document(leaseDocument(lease, now, config));
    out.line(leaseFields(out, lease, now, config));
  });
}

/** Whether `text` can be the address a lease belongs to: an IPv4 PublicIP, or the PublicIPv6 of a node without one. */
function isOwnerAddress(text: string): boolean {
  if (!text.includes(':')) return tryParseIPv4(text) >= 0;
  try {
    parseIPv6(text);
    return true;
  } catch (err) {
    if (err instanceof InvalidAddressError) return false;
    throw err;
  }
}

async function reserve(command: Command, text: string, opts: { publicIp: string; node?: string }): Promise<void> {
  const out = outputOf(command);
  if (!isOwnerAddress(opts.publicIp)) {
    throw new UsageError(`--public-ip "${opts.publicIp}" is not an IPv4 address such as 198.18.0.2 (or, for a node with no IPv4 underlay address, its IPv6 one)`);
  }
  const spec = parseSubnetSpec(text);
  await withStore(settingsOf(command), async (store) => {
    // The config is needed only to pair an IPv6 subnet; an IPv4 one is checked by the store itself.
    const config = spec.ipv6 === undefined ? undefined : await store.getNetworkConfig();
    const { lease, outcome } = await store.reserve(formatSubnet(leaseKeyOfSpec(spec, config)), opts.publicIp, opts.node);
    const now = redisNow(store);
    const shown = config ?? (await readConfigIfAny(store));
    if (out.json) return out.document({ outcome, lease: leaseDocument(lease, now, shown) });
    const subnets = subnetsOf(lease, shown);
    switch (outcome) {
      case 'created':
        return out.line(`reserved ${subnets} for ${holderOf(lease)}`);
      case 'converted':
        return out.line(`reserved ${subnets} for ${holderOf(lease)}: its lease no longer expires`);
      case 'updated':
        return out.line(`${subnets} was already reserved for ${ownerAddress(lease)}; its node is now ${lease.nodeName}`);
      case 'unchanged':
        return out.line(`${subnets} was already reserved for ${holderOf(lease)}`);
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
    const { lease, now, config } = await findLease(store, out, text);
    if (ask && !(await confirm(`Revoke ${lease.subnet} held by ${holderOf(lease)}? [y/N] `))) {
      throw new RefusedError(`not revoked: ${lease.subnet} stays with ${holderOf(lease)}`);
    }
    // Only if it still belongs to the holder just shown: never revoke a lease the operator did not see.
    if (!(await store.revokeLease(lease.subnet, { publicIP: ownerAddress(lease) }))) {
      throw new NotFoundError(`no lease on subnet ${lease.subnet}: it expired or was revoked meanwhile`);
    }
    if (out.json) return out.document({ revoked: leaseDocument(lease, now, config) });
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
    .argument('<subnet>', 'the leased subnet, e.g. 10.244.3.0/24, or its IPv6 pair, e.g. fd00:10:244:3::/64')
    .addHelpText('after', examples('miniflannel lease show 10.244.3.0/24', 'miniflannel lease show fd00:10:244:3::/64'))
    .action((subnet: string, _opts: unknown, command: Command) => show(command, subnet));

  lease
    .command('reserve')
    .description('reserve a subnet for a public IP: a lease that never expires, which only that node can take')
    .argument('<subnet>', 'a subnet of the network, SubnetLen long, e.g. 10.244.9.0/24; with IPv6 its pair (fd00:10:244:9::/64) or both (10.244.9.0/24,fd00:10:244:9::/64)')
    .requiredOption('--public-ip <ip>', 'the underlay address of the node the subnet is for (its IPv6 one if it has no IPv4 address)')
    .option('--node <name>', 'the Kubernetes name of that node, shown until the node claims the reservation itself')
    .addHelpText('after', examples('miniflannel lease reserve 10.244.9.0/24 --public-ip 198.18.0.9 --node node-i', 'miniflannel lease reserve 10.244.9.0/24,fd00:10:244:9::/64 --public-ip 198.18.0.9'))
    .action((subnet: string, opts: { publicIp: string; node?: string }, command: Command) => reserve(command, subnet, opts));

  lease
    .command('revoke')
    .description('delete a lease or reservation: the node holding it loses the subnet, and the other nodes drop it from their peer tables')
    .argument('<subnet>', 'the leased subnet, e.g. 10.244.3.0/24, or its IPv6 pair')
    .option('-y, --yes', 'do not ask for confirmation (required when stdin is not a terminal)')
    .addHelpText('after', examples('miniflannel lease revoke 10.244.3.0/24', 'miniflannel lease revoke 10.244.3.0/24 --yes --json'))
    .action((subnet: string, opts: { yes?: boolean }, command: Command) => revoke(command, subnet, opts));

  return lease;
}
