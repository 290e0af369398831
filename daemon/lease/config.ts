// The network config: flannel's net-conf.json, its defaults and its rules
// (after flannel's pkg/subnet/config.go), plus the subnet arithmetic that the
// allocation policy needs.
//
// Dual stack pairs the families instead of allocating twice: the k-th subnet
// of Network goes with the k-th subnet of IPv6Network. A node's one lease,
// keyed by its IPv4 subnet, so names its IPv6 subnet too, and allocation,
// renewal, reservations and the watch cover both families in the same atomic
// write. An IPv6-only network (EnableIPv4: false) has no Network: its leases
// are keyed by their IPv6 subnets, allocated from IPv6SubnetMin..IPv6SubnetMax.

import {
  blockSize,
  cidrContains,
  formatCidr,
  formatIPv4,
  InvalidAddressError,
  lastAddress,
  maskOf,
  parseCidr,
  tryParseIPv4,
  type Cidr,
} from '../net/ipv4.js';
import {
  cidr6Contains,
  cidr6Overlaps,
  isCidr6,
  formatCidr6,
  formatIPv6,
  maskWord,
  networkOf6,
  nthSubnet6,
  parseCidr6,
  parseIPv6,
  subnetIndex6,
  type Cidr6,
  type IPv6Address,
} from '../net/ipv6.js';
import { ConfigError, type LayoutField } from './errors.js';

/** The stored form, as an operator writes it (flannel's net-conf.json). */
export interface NetConf {
  /** Required unless EnableIPv4 is false. */
  readonly Network?: string;
  readonly SubnetLen?: number;
  readonly SubnetMin?: string;
  readonly SubnetMax?: string;
  readonly Backend?: { readonly Type?: string; readonly Port?: number };
  /** Default true; false makes an IPv6-only network (EnableIPv6 true, no Network). */
  readonly EnableIPv4?: boolean;
  /** Default false; true gives every node an IPv6 subnet, paired with its IPv4 one unless EnableIPv4 is false. */
  readonly EnableIPv6?: boolean;
  readonly IPv6Network?: string;
  readonly IPv6SubnetLen?: number;
  readonly IPv6SubnetMin?: string;
  readonly IPv6SubnetMax?: string;
}

/** The backend types miniflannel implements. */
export const BACKEND_TYPES = ['udp'] as const;
export type BackendType = (typeof BACKEND_TYPES)[number];

/** A validated config with every default filled in: at least one family. */
export interface NetworkConfig {
  /** Network and its subnets; absent in an IPv6-only network (EnableIPv4: false). */
  readonly ipv4?: IPv4Layout;
  /** IPv6Network and its subnets; absent unless EnableIPv6. */
  readonly ipv6?: IPv6Layout;
  readonly backend: { readonly type: BackendType; readonly port: number };
}

/** Network and its subnets. Addresses are unsigned 32-bit numbers. */
export interface IPv4Layout {
  readonly network: Cidr;
  readonly subnetLen: number;
  /** First subnet that may be allocated (its network address). */
  readonly subnetMin: number;
  /** Last subnet that may be allocated (its network address). */
  readonly subnetMax: number;
}

/** IPv6Network and its subnets. With IPv4 too, subnet k of it pairs with subnet k of Network. */
export interface IPv6Layout {
  readonly network: Cidr6;
  readonly subnetLen: number;
  /** First subnet that (or whose pair) may be allocated (its network address). */
  readonly subnetMin: IPv6Address;
  /** Last subnet that (or whose pair) may be allocated (its network address). */
  readonly subnetMax: IPv6Address;
}

/** flannel's default IPv6SubnetLen. */
export const DEFAULT_IPV6_SUBNET_LEN = 64;

/** Room in each node's IPv6 subnet for the tunnel address and at least one pod. */
const MAX_IPV6_SUBNET_LEN = 126;

/** flannel's default UDP port. */
export const DEFAULT_UDP_PORT = 8285;

const IPV4_FIELDS = ['Network', 'SubnetLen', 'SubnetMin', 'SubnetMax'] as const;
const IPV6_FIELDS = ['IPv6Network', 'IPv6SubnetLen', 'IPv6SubnetMin', 'IPv6SubnetMax'] as const;
const KNOWN_FIELDS = new Set([...IPV4_FIELDS, 'Backend', 'EnableIPv4', 'EnableIPv6', ...IPV6_FIELDS]);
const KNOWN_BACKEND_FIELDS = new Set(['Type', 'Port']);

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/**
 * flannel's rule: a network of /22 or larger gives each node a /24; a smaller
 * one is split into four (prefix + 2); anything smaller than /28 is refused.
 */
export function defaultSubnetLen(networkPrefixLength: number): number {
  return networkPrefixLength <= 22 ? 24 : networkPrefixLength + 2;
}

function parseBound(field: 'SubnetMin' | 'SubnetMax', value: unknown, network: Cidr, subnetLen: number): number {
  if (typeof value !== 'string') {
    throw new ConfigError(field, `${field} must be an IPv4 address string such as "10.5.1.0" (got ${JSON.stringify(value)})`);
  }
  const address = tryParseIPv4(value);
  if (address < 0) throw new ConfigError(field, `${field} "${value}" is not an IPv4 address`);
  if (!cidrContains(network, address)) {
    throw new ConfigError(field, `${field} ${value} is not in the range of the Network ${formatCidr(network)}`);
  }
  if (((address & maskOf(subnetLen)) >>> 0) !== address) {
    throw new ConfigError(field, `${field} ${value} is not on a SubnetLen boundary (/${subnetLen}): the subnet containing it starts at ${formatIPv4((address & maskOf(subnetLen)) >>> 0)}`);
  }
  return address;
}

/**
 * Validates a net-conf (JSON text or an already parsed value) and fills in
 * flannel's defaults. Throws ConfigError whose `field` and message name the
 * field and the rule it breaks.
 */
export function parseNetworkConfig(input: string | unknown): NetworkConfig {
  let doc: unknown = input;
  if (typeof input === 'string') {
    try {
      doc = JSON.parse(input);
    } catch (cause) {
      throw new ConfigError('(document)', `the network config is not valid JSON: ${(cause as Error).message}`, { cause });
    }
  }
  if (!isPlainObject(doc)) {
    throw new ConfigError('(document)', 'the network config must be a JSON object such as {"Network": "10.5.0.0/16"}');
  }
  for (const key of Object.keys(doc)) {
    if (!KNOWN_FIELDS.has(key)) {
      throw new ConfigError(key, `${key} is not a known field of the network config (known: ${[...KNOWN_FIELDS].join(', ')})`);
    }
  }
  const enableIPv4 = parseSwitch(doc, 'EnableIPv4', true);
  const enableIPv6 = parseSwitch(doc, 'EnableIPv6', false);
  if (!enableIPv4 && !enableIPv6) {
    throw new ConfigError('EnableIPv4', 'EnableIPv4 and EnableIPv6 are both false, which leaves no pod network: set EnableIPv6: true and IPv6Network for an IPv6-only network');
  }
  // flannel ignores the fields of a disabled family, but an operator who wrote them meant something.
  const stray6 = enableIPv6 ? undefined : IPV6_FIELDS.find((field) => doc[field] !== undefined);
  if (stray6 !== undefined) {
    throw new ConfigError(stray6, `${stray6} is given but EnableIPv6 is not true: set EnableIPv6: true to give each node an IPv6 subnet, or remove ${stray6}`);
  }
  const stray4 = enableIPv4 ? undefined : IPV4_FIELDS.find((field) => doc[field] !== undefined);
  if (stray4 !== undefined) {
    throw new ConfigError(stray4, `${stray4} is given but EnableIPv4 is false (an IPv6-only network): remove ${stray4}, or leave EnableIPv4 out for a dual-stack network`);
  }

  const ipv4 = enableIPv4 ? parseIPv4Layout(doc) : undefined;
  const backend = parseBackend(doc['Backend']);
  if (!enableIPv6) return { ipv4, backend };
  const ipv6 = parseIPv6Layout(doc, ipv4);
  const config: NetworkConfig = { ...(ipv4 ? { ipv4 } : {}), ipv6, backend };
  if (ipv4 !== undefined && allocatableCount(config) <= 0) {
    throw new ConfigError(
      'IPv6SubnetMin',
      `IPv6SubnetMin..IPv6SubnetMax (${formatIPv6(ipv6.subnetMin)} to ${formatIPv6(ipv6.subnetMax)}) pair with none of the subnets in SubnetMin..SubnetMax ` +
        `(${formatIPv4(ipv4.subnetMin)} to ${formatIPv4(ipv4.subnetMax)}): the k-th subnet of IPv6Network pairs with the k-th subnet of Network, and a node needs both, so no subnet can be allocated`,
    );
  }
  return config;
}

/** Network, SubnetLen, SubnetMin and SubnetMax. */
function parseIPv4Layout(doc: Record<string, unknown>): IPv4Layout {
  // Network
  const networkText = doc['Network'];
  if (networkText === undefined || networkText === '') {
    throw new ConfigError('Network', 'Network is required: the overlay CIDR block, e.g. "10.5.0.0/16"');
  }
  if (typeof networkText !== 'string') {
    throw new ConfigError('Network', `Network must be a CIDR string such as "10.5.0.0/16" (got ${JSON.stringify(networkText)})`);
  }
  let network: Cidr;
  try {
    network = parseCidr(networkText);
  } catch (cause) {
    if (!(cause instanceof InvalidAddressError)) throw cause;
    throw new ConfigError('Network', `Network ${cause.message}`, { cause });
  }
  if (network.prefixLength > 28) {
    throw new ConfigError('Network', `Network ${networkText} is too small: the smallest network is /28 (four subnets of /30)`);
  }

  // SubnetLen
  let subnetLen: number;
  const subnetLenValue = doc['SubnetLen'];
  if (subnetLenValue === undefined || subnetLenValue === 0) {
    subnetLen = defaultSubnetLen(network.prefixLength);
  } else {
    if (typeof subnetLenValue !== 'number' || !Number.isInteger(subnetLenValue)) {
      throw new ConfigError('SubnetLen', `SubnetLen must be an integer prefix length (got ${JSON.stringify(subnetLenValue)})`);
    }
    // Each node needs room for the tunnel address and at least one pod.
    if (subnetLenValue > 30) {
      throw new ConfigError('SubnetLen', `SubnetLen must be at most 30 (got ${subnetLenValue})`);
    }
    // The first subnet is never handed out, so fewer than four would leave too few.
    if (subnetLenValue < network.prefixLength + 2) {
      throw new ConfigError(
        'SubnetLen',
        `SubnetLen must be at least the Network prefix + 2 (/${network.prefixLength + 2}) so the network holds at least four subnets (got ${subnetLenValue})`,
      );
    }
    subnetLen = subnetLenValue;
  }

  // SubnetMin / SubnetMax: by default the second subnet (the first would hold
  // the network address) through the last.
  const size = blockSize(subnetLen);
  const subnetMin = doc['SubnetMin'] === undefined ? network.network + size : parseBound('SubnetMin', doc['SubnetMin'], network, subnetLen);
  const subnetMax = doc['SubnetMax'] === undefined ? lastAddress(network) + 1 - size : parseBound('SubnetMax', doc['SubnetMax'], network, subnetLen);
  if (subnetMin > subnetMax) {
    throw new ConfigError('SubnetMin', `SubnetMin ${formatIPv4(subnetMin)} is above SubnetMax ${formatIPv4(subnetMax)}, which leaves no subnet to allocate`);
  }

  return { network, subnetLen, subnetMin, subnetMax };
}

function parseBackend(backendValue: unknown): NetworkConfig['backend'] {
  let type: BackendType = 'udp';
  let port = DEFAULT_UDP_PORT;
  if (backendValue !== undefined) {
    if (!isPlainObject(backendValue)) {
      throw new ConfigError('Backend', `Backend must be an object such as {"Type": "udp", "Port": 8285} (got ${JSON.stringify(backendValue)})`);
    }
    for (const key of Object.keys(backendValue)) {
      if (!KNOWN_BACKEND_FIELDS.has(key)) {
        throw new ConfigError(`Backend.${key}`, `Backend.${key} is not a known field of the udp backend (known: Type, Port)`);
      }
    }
    const typeValue = backendValue['Type'];
    if (typeValue !== undefined) {
      if (typeof typeValue !== 'string' || !(BACKEND_TYPES as readonly string[]).includes(typeValue)) {
        throw new ConfigError('Backend.Type', `Backend.Type ${JSON.stringify(typeValue)} is not supported: miniflannel implements ${BACKEND_TYPES.map((t) => `"${t}"`).join(', ')}`);
      }
      type = typeValue as BackendType;
    }
    const portValue = backendValue['Port'];
    if (portValue !== undefined) {
      if (typeof portValue !== 'number' || !Number.isInteger(portValue) || portValue < 1 || portValue > 65535) {
        throw new ConfigError('Backend.Port', `Backend.Port must be an integer in 1..65535 (got ${JSON.stringify(portValue)})`);
      }
      port = portValue;
    }
  }
  return { type, port };
}

/** EnableIPv4 / EnableIPv6: a boolean, or `fallback` when left out. */
function parseSwitch(doc: Record<string, unknown>, field: 'EnableIPv4' | 'EnableIPv6', fallback: boolean): boolean {
  const value = doc[field];
  if (value === undefined) return fallback;
  if (typeof value !== 'boolean') throw new ConfigError(field, `${field} must be true or false (got ${JSON.stringify(value)})`);
  return value;
}

/** Blocks whose addresses never cross the overlay as pod addresses (RFC 4291). */
const SPECIAL_IPV6_BLOCKS: ReadonlyArray<readonly [Cidr6, string]> = [
  [parseCidr6('::/8'), 'which holds the unspecified, loopback and IPv4-mapped addresses'],
  [parseCidr6('fe80::/10'), 'the link-local addresses'],
  [parseCidr6('ff00::/8'), 'the multicast addresses'],
];

/** IPv6Network and the rest, for a network whose IPv4 side (if any) is `ipv4`. */
function parseIPv6Layout(doc: Record<string, unknown>, ipv4: IPv4Layout | undefined): IPv6Layout {
  const networkText = doc['IPv6Network'];
  if (networkText === undefined || networkText === '') {
    throw new ConfigError('IPv6Network', 'IPv6Network is required with EnableIPv6: true: the IPv6 overlay CIDR block, e.g. "fd00:10:244::/48"');
  }
  if (typeof networkText !== 'string') {
    throw new ConfigError('IPv6Network', `IPv6Network must be a CIDR string such as "fd00:10:244::/48" (got ${JSON.stringify(networkText)})`);
  }
  let network6: Cidr6;
  try {
    network6 = parseCidr6(networkText);
  } catch (cause) {
    if (!(cause instanceof InvalidAddressError)) throw cause;
    throw new ConfigError('IPv6Network', `IPv6Network ${cause.message}`, { cause });
  }
  // Pod addresses must be unicast that routers forward: the data plane drops these ranges as non-unicast.
  for (const [block, what] of SPECIAL_IPV6_BLOCKS) {
    if (cidr6Overlaps(network6, block)) {
      throw new ConfigError('IPv6Network', `IPv6Network ${networkText} overlaps ${formatCidr6(block)}, ${what}: use a unique local block such as fd00:10:244::/48, or a global one`);
    }
  }

  const subnetLenValue = doc['IPv6SubnetLen'];
  let subnetLen6 = DEFAULT_IPV6_SUBNET_LEN;
  if (subnetLenValue !== undefined && subnetLenValue !== 0) {
    if (typeof subnetLenValue !== 'number' || !Number.isInteger(subnetLenValue)) {
      throw new ConfigError('IPv6SubnetLen', `IPv6SubnetLen must be an integer prefix length (got ${JSON.stringify(subnetLenValue)})`);
    }
    if (subnetLenValue > MAX_IPV6_SUBNET_LEN) {
      throw new ConfigError('IPv6SubnetLen', `IPv6SubnetLen must be at most ${MAX_IPV6_SUBNET_LEN}, to leave room for the tunnel address and pods (got ${subnetLenValue})`);
    }
    subnetLen6 = subnetLenValue;
  }
  const defaultNote = subnetLenValue === undefined || subnetLenValue === 0 ? ' (the default)' : '';
  if (subnetLen6 < network6.prefixLength) {
    throw new ConfigError('IPv6SubnetLen', `IPv6SubnetLen ${subnetLen6}${defaultNote} is shorter than the IPv6Network prefix /${network6.prefixLength}: set IPv6SubnetLen to at least ${network6.prefixLength}`);
  }
  const bits6 = subnetLen6 - network6.prefixLength;
  if (ipv4 !== undefined) {
    const { network, subnetLen } = ipv4;
    const bits4 = subnetLen - network.prefixLength;
    if (bits6 < bits4) {
      throw new ConfigError(
        'IPv6SubnetLen',
        `IPv6SubnetLen ${subnetLen6}${defaultNote} cuts IPv6Network ${formatCidr6(network6)} into 2^${bits6} subnets, fewer than the 2^${bits4} /${subnetLen} subnets of Network ${formatCidr(network)}: ` +
          `each node's IPv6 subnet is the one with the same index as its IPv4 subnet, so use an IPv6Network of /${subnetLen6 - bits4} or larger, or an IPv6SubnetLen of ${network6.prefixLength + bits4} or more`,
      );
    }
  } else if (bits6 < 2) {
    // As for Network: the first subnet is never handed out, so fewer than four would leave too few.
    throw new ConfigError('IPv6SubnetLen', `IPv6SubnetLen ${subnetLen6}${defaultNote} must be at least the IPv6Network prefix + 2 (/${network6.prefixLength + 2}) so the network holds at least four subnets`);
  }

  // By default the second subnet (with IPv4, the pair of the first that IPv4 hands out) through the last.
  const subnetMin = doc['IPv6SubnetMin'] === undefined ? nthSubnet6(network6, subnetLen6, 1).network : parseBound6('IPv6SubnetMin', doc['IPv6SubnetMin'], network6, subnetLen6);
  const subnetMax = doc['IPv6SubnetMax'] === undefined ? lastSubnet6(network6, subnetLen6) : parseBound6('IPv6SubnetMax', doc['IPv6SubnetMax'], network6, subnetLen6);
  const layout = { network: network6, subnetLen: subnetLen6, subnetMin, subnetMax };
  if (subnetsBetween6(layout, subnetMin, subnetMax) < 0n) {
    throw new ConfigError('IPv6SubnetMin', `IPv6SubnetMin ${formatIPv6(subnetMin)} is above IPv6SubnetMax ${formatIPv6(subnetMax)}, which leaves no subnet to allocate`);
  }
  return layout;
}

function parseBound6(field: 'IPv6SubnetMin' | 'IPv6SubnetMax', value: unknown, network: Cidr6, subnetLen: number): IPv6Address {
  if (typeof value !== 'string') {
    throw new ConfigError(field, `${field} must be an IPv6 address string such as "fd00:10:244:1::" (got ${JSON.stringify(value)})`);
  }
  let address: IPv6Address;
  try {
    address = parseIPv6(value);
  } catch (cause) {
    if (!(cause instanceof InvalidAddressError)) throw cause;
    throw new ConfigError(field, `${field} ${cause.message}`, { cause });
  }
  if (!cidr6Contains(network, address)) {
    throw new ConfigError(field, `${field} ${value} is not in the range of the IPv6Network ${formatCidr6(network)}`);
  }
  const aligned = networkOf6(address, subnetLen);
  if (aligned.some((word, i) => word !== address[i])) {
    throw new ConfigError(field, `${field} ${value} is not on an IPv6SubnetLen boundary (/${subnetLen}): the subnet containing it starts at ${formatIPv6(aligned)}`);
  }
  return address;
}

/** The network address of the last /`subnetLen` subnet of `network`: every subnet-index bit set. */
function lastSubnet6(network: Cidr6, subnetLen: number): IPv6Address {
  const words = network.network.map((word, i) => (word | (maskWord(subnetLen, i) & ~maskWord(network.prefixLength, i))) >>> 0);
  return [words[0]!, words[1]!, words[2]!, words[3]!];
}

/**
 * The index of the subnet at `address` in the layout. Past 2^53 it is
 * Infinity: beyond every IPv4 index, which is all the pairing needs to know.
 */
function indexOf6(layout: IPv6Layout, address: IPv6Address): number {
  try {
    return subnetIndex6(layout.network, { network: address, prefixLength: layout.subnetLen });
  } catch (err) {
    if (err instanceof InvalidAddressError) return Infinity;
    throw err;
  }
}

/** The index of `subnet` among the SubnetLen subnets of Network, or -1 if it is not one of them. */
function subnetIndexOf(ipv4: IPv4Layout, subnet: Cidr): number {
  if (subnet.prefixLength !== ipv4.subnetLen || !cidrContains(ipv4.network, subnet.network)) return -1;
  return (subnet.network - ipv4.network.network) / blockSize(ipv4.subnetLen);
}

/**
 * The IPv6 subnet paired with `subnet`: the k-th subnet of IPv6Network for
 * the k-th of Network. Undefined without both families, or for a subnet that
 * is not one of Network's SubnetLen subnets (a lease from before a forced change).
 */
export function ipv6SubnetOf(config: NetworkConfig, subnet: Cidr): Cidr6 | undefined {
  const { ipv4, ipv6 } = config;
  if (ipv4 === undefined || ipv6 === undefined) return undefined;
  const index = subnetIndexOf(ipv4, subnet);
  if (index < 0) return undefined;
  return nthSubnet6(ipv6.network, ipv6.subnetLen, index);
}

/**
 * The IPv4 subnet paired with `subnet6`, the inverse of ipv6SubnetOf.
 * Undefined without both families, or for a subnet that is not one of
 * IPv6Network's IPv6SubnetLen subnets, or whose index has no IPv4 subnet to pair with.
 */
export function ipv4SubnetOf(config: NetworkConfig, subnet6: Cidr6): Cidr | undefined {
  const { ipv4, ipv6 } = config;
  if (ipv4 === undefined || ipv6 === undefined || !isSubnetOf6(ipv6, subnet6)) return undefined;
  const index = indexOf6(ipv6, subnet6.network);
  const size = blockSize(ipv4.subnetLen);
  if (index >= blockSize(ipv4.network.prefixLength) / size) return undefined;
  return { network: ipv4.network.network + index * size, prefixLength: ipv4.subnetLen };
}

function isSubnetOf6(layout: IPv6Layout, subnet6: Cidr6): boolean {
  return subnet6.prefixLength === layout.subnetLen && cidr6Contains(layout.network, subnet6.network);
}

/** The subnets a lease stands for: its key, and with dual stack the key's IPv6 pair. */
export interface NodeSubnets {
  readonly ipv4?: Cidr;
  readonly ipv6?: Cidr6;
}

/**
 * The subnets of the lease keyed `key` under `config`: an IPv4 key and its
 * IPv6 pair (dual stack), or an IPv6 key alone (IPv6-only). A key of the
 * other family than the config's keys names neither.
 */
export function subnetsOfLease(config: NetworkConfig, key: Cidr | Cidr6): NodeSubnets {
  if (isCidr6(key)) return config.ipv4 === undefined ? { ipv6: key } : {};
  if (config.ipv4 === undefined) return {};
  const ipv6 = ipv6SubnetOf(config, key);
  return ipv6 === undefined ? { ipv4: key } : { ipv4: key, ipv6 };
}

/** The config in net-conf.json form with every default written out; the fields of a family only when it is on. */
export interface EffectiveNetConf {
  readonly Network?: string;
  readonly SubnetLen?: number;
  readonly SubnetMin?: string;
  readonly SubnetMax?: string;
  readonly EnableIPv4?: false;
  readonly EnableIPv6?: true;
  readonly IPv6Network?: string;
  readonly IPv6SubnetLen?: number;
  readonly IPv6SubnetMin?: string;
  readonly IPv6SubnetMax?: string;
  readonly Backend: { readonly Type: string; readonly Port: number };
}

/** The config in net-conf.json form with every default written out: an IPv4-only config gives the same text as before IPv6. */
export function toNetConf(config: NetworkConfig): EffectiveNetConf {
  const { ipv4, ipv6 } = config;
  return {
    ...(ipv4 === undefined
      ? { EnableIPv4: false as const }
      : {
          Network: formatCidr(ipv4.network),
          SubnetLen: ipv4.subnetLen,
          SubnetMin: formatIPv4(ipv4.subnetMin),
          SubnetMax: formatIPv4(ipv4.subnetMax),
        }),
    ...(ipv6 === undefined
      ? {}
      : {
          EnableIPv6: true as const,
          IPv6Network: formatCidr6(ipv6.network),
          IPv6SubnetLen: ipv6.subnetLen,
          IPv6SubnetMin: formatIPv6(ipv6.subnetMin),
          IPv6SubnetMax: formatIPv6(ipv6.subnetMax),
        }),
    Backend: { Type: config.backend.type, Port: config.backend.port },
  };
}

/**
 * SubnetMin..SubnetMax as indices into Network's subnets, narrowed with IPv6
 * to the indices whose pair lies in IPv6SubnetMin..IPv6SubnetMax: a node
 * needs both subnets of its pair.
 */
function allocatableIndices(ipv4: IPv4Layout, ipv6: IPv6Layout | undefined): { first: number; last: number } {
  const size = blockSize(ipv4.subnetLen);
  let first = (ipv4.subnetMin - ipv4.network.network) / size;
  let last = (ipv4.subnetMax - ipv4.network.network) / size;
  if (ipv6 !== undefined) {
    first = Math.max(first, indexOf6(ipv6, ipv6.subnetMin));
    last = Math.min(last, indexOf6(ipv6, ipv6.subnetMax));
  }
  return { first, last };
}

function toBigInt(address: IPv6Address): bigint {
  return address.reduce((value, word) => (value << 32n) | BigInt(word), 0n);
}

/** Subnets from `from` to `to` of the layout (negative if `to` is below): exact, since IPv6 subnet indices pass 2^53. */
function subnetsBetween6(layout: IPv6Layout, from: IPv6Address, to: IPv6Address): bigint {
  return (toBigInt(to) - toBigInt(from)) >> BigInt(128 - layout.subnetLen);
}

/**
 * How many subnets may be allocated: SubnetMin..SubnetMax, with IPv6 only
 * those paired inside IPv6SubnetMin..IPv6SubnetMax; in an IPv6-only network
 * IPv6SubnetMin..IPv6SubnetMax (rounded past 2^53).
 */
export function allocatableCount(config: NetworkConfig): number {
  const { ipv4, ipv6 } = config;
  if (ipv4 === undefined) return Number(subnetsBetween6(ipv6!, ipv6!.subnetMin, ipv6!.subnetMax) + 1n);
  const { first, last } = allocatableIndices(ipv4, ipv6);
  return last - first + 1;
}

/** "SubnetMin 10.5.1.0 to SubnetMax 10.5.255.0 in Network 10.5.0.0/16", with the IPv6 bounds when they narrow or make the range: for messages. */
export function describeAllocatable(config: NetworkConfig): string {
  const { ipv4, ipv6 } = config;
  const bounds6 = ipv6 && `IPv6SubnetMin ${formatIPv6(ipv6.subnetMin)} to IPv6SubnetMax ${formatIPv6(ipv6.subnetMax)}`;
  if (ipv4 === undefined) return `${bounds6} in IPv6Network ${formatCidr6(ipv6!.network)}`;
  const bounds4 = `SubnetMin ${formatIPv4(ipv4.subnetMin)} to SubnetMax ${formatIPv4(ipv4.subnetMax)} in Network ${formatCidr(ipv4.network)}`;
  return bounds6 === undefined ? bounds4 : `${bounds4}, paired inside ${bounds6}`;
}

/** The bitmap covers at most this many subnets (2 MiB); a larger range allocates from its first 2^24. */
export const MAX_ALLOCATABLE_BITS = 1 << 24;

/**
 * The allocatable subnets (see allocatableCount) as the allocation bitmap
 * describes them: bit i is the subnet `first` + i subnets, for i below
 * `count`. IPv4 subnets (the lease keys of IPv4 and dual-stack networks) are
 * counted by their address and `size` (addresses per subnet); IPv6 ones (an
 * IPv6-only network's keys) by the first subnet's network address and the
 * prefix length alone.
 */
export type AllocatableRange =
  | { readonly family: 4; readonly first: number; readonly size: number; readonly count: number; readonly prefixLength: number }
  | { readonly family: 6; readonly first: IPv6Address; readonly count: number; readonly prefixLength: number };

export function allocatableRange(config: NetworkConfig): AllocatableRange {
  const { ipv4, ipv6 } = config;
  const count = Math.min(allocatableCount(config), MAX_ALLOCATABLE_BITS);
  if (ipv4 === undefined) return { family: 6, first: ipv6!.subnetMin, count, prefixLength: ipv6!.subnetLen };
  const size = blockSize(ipv4.subnetLen);
  return { family: 4, first: ipv4.network.network + allocatableIndices(ipv4, ipv6).first * size, size, count, prefixLength: ipv4.subnetLen };
}

/**
 * Why a lease on `subnet` may not be kept under `config`, or undefined if it
 * may (flannel's isSubnetConfigCompat): it must be a lease key of the
 * config's kind (IPv4, or IPv6 in an IPv6-only network), SubnetLen long,
 * inside the network, and, unless it is a reservation, inside
 * SubnetMin..SubnetMax, its IPv6 pair inside IPv6SubnetMin..IPv6SubnetMax.
 * Reservations may sit outside the allocatable range precisely so that random
 * allocation never touches them.
 */
export function misfitOf(config: NetworkConfig, subnet: Cidr | Cidr6, reservation: boolean): string | undefined {
  const { ipv4, ipv6 } = config;
  if (isCidr6(subnet)) {
    const text = formatCidr6(subnet);
    if (ipv4 !== undefined) return `subnet ${text} is an IPv6 lease of an IPv6-only network, but the network config has IPv4 (EnableIPv4), whose leases are keyed by their IPv4 subnets`;
    return misfitOf6(ipv6!, subnet, reservation, `subnet ${text}`);
  }
  const text = formatCidr(subnet);
  if (ipv4 === undefined) return `subnet ${text} is an IPv4 lease, but the network config is IPv6-only (EnableIPv4: false)`;
  if (subnet.prefixLength !== ipv4.subnetLen) {
    return `subnet ${text} is a /${subnet.prefixLength}, but the network config gives each node a /${ipv4.subnetLen} (SubnetLen)`;
  }
  if (!cidrContains(ipv4.network, subnet.network)) return `subnet ${text} lies outside the Network ${formatCidr(ipv4.network)}`;
  if (reservation) return undefined;
  if (subnet.network < ipv4.subnetMin || subnet.network > ipv4.subnetMax) {
    return `subnet ${text} lies outside SubnetMin..SubnetMax (${formatIPv4(ipv4.subnetMin)} to ${formatIPv4(ipv4.subnetMax)})`;
  }
  const pair = ipv6SubnetOf(config, subnet);
  if (ipv6 === undefined || pair === undefined) return undefined;
  return misfitOf6(ipv6, pair, false, `subnet ${text} pairs with ${formatCidr6(pair)}, which`);
}

/** misfitOf for an IPv6 subnet; `about` starts the message: "subnet X", or for a pair "subnet X pairs with Y, which". */
function misfitOf6(layout: IPv6Layout, subnet: Cidr6, reservation: boolean, about: string): string | undefined {
  if (subnet.prefixLength !== layout.subnetLen) {
    return `${about} is a /${subnet.prefixLength}, but the network config gives each node a /${layout.subnetLen} (IPv6SubnetLen)`;
  }
  if (!cidr6Contains(layout.network, subnet.network)) return `${about} lies outside the IPv6Network ${formatCidr6(layout.network)}`;
  if (reservation) return undefined;
  if (subnetsBetween6(layout, layout.subnetMin, subnet.network) >= 0n && subnetsBetween6(layout, subnet.network, layout.subnetMax) >= 0n) return undefined;
  return `${about} lies outside IPv6SubnetMin..IPv6SubnetMax (${formatIPv6(layout.subnetMin)} to ${formatIPv6(layout.subnetMax)})`;
}

/**
 * The layout fields that differ between two configs: changing them under
 * leases leaves running nodes with subnets outside the new layout until they
 * restart. Turning IPv6 on is not among them (every lease keeps its IPv4
 * subnet and gains the paired IPv6 one at its node's next start); turning it
 * off is, since running nodes keep IPv6 subnets the new layout no longer has,
 * and so is turning IPv4 on or off, which changes what leases are keyed by.
 */
export function layoutChanges(previous: NetworkConfig, next: NetworkConfig): LayoutField[] {
  const changed: LayoutField[] = [];
  const [before4, after4] = [previous.ipv4, next.ipv4];
  if ((before4 === undefined) !== (after4 === undefined)) changed.push('EnableIPv4');
  else if (before4 !== undefined && after4 !== undefined) {
    if (before4.network.network !== after4.network.network || before4.network.prefixLength !== after4.network.prefixLength) changed.push('Network');
    if (before4.subnetLen !== after4.subnetLen) changed.push('SubnetLen');
  }
  const [before6, after6] = [previous.ipv6, next.ipv6];
  if (before6 === undefined) return changed;
  if (after6 === undefined) return [...changed, 'EnableIPv6'];
  if (formatCidr6(before6.network) !== formatCidr6(after6.network)) changed.push('IPv6Network');
  if (before6.subnetLen !== after6.subnetLen) changed.push('IPv6SubnetLen');
  return changed;
}
