// The network config: flannel's net-conf.json, its defaults and its rules
// (after flannel's pkg/subnet/config.go), plus the subnet arithmetic that the
// allocation policy needs.

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
import { ConfigError, type LayoutField } from './errors.js';

/** The stored form, as an operator writes it (flannel's net-conf.json). */
export interface NetConf {
  readonly Network: string;
  readonly SubnetLen?: number;
  readonly SubnetMin?: string;
  readonly SubnetMax?: string;
  readonly Backend?: { readonly Type?: string; readonly Port?: number };
  /** Accepted for compatibility with flannel's files; only true is allowed. */
  readonly EnableIPv4?: boolean;
  /** Accepted for compatibility with flannel's files; only false is allowed. */
  readonly EnableIPv6?: boolean;
}

/** The backend types miniflannel implements. */
export const BACKEND_TYPES = ['udp'] as const;
export type BackendType = (typeof BACKEND_TYPES)[number];

/** A validated config with every default filled in. Addresses are unsigned 32-bit numbers. */
export interface NetworkConfig {
  readonly network: Cidr;
  readonly subnetLen: number;
  /** First subnet that may be allocated (its network address). */
  readonly subnetMin: number;
  /** Last subnet that may be allocated (its network address). */
  readonly subnetMax: number;
  readonly backend: { readonly type: BackendType; readonly port: number };
}

/** flannel's default UDP port. */
export const DEFAULT_UDP_PORT = 8285;

const KNOWN_FIELDS = new Set(['Network', 'SubnetLen', 'SubnetMin', 'SubnetMax', 'Backend', 'EnableIPv4', 'EnableIPv6']);
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
  if (doc['EnableIPv4'] !== undefined && doc['EnableIPv4'] !== true) {
    throw new ConfigError('EnableIPv4', 'EnableIPv4 must be true if given: miniflannel only carries IPv4');
  }
  if (doc['EnableIPv6'] !== undefined && doc['EnableIPv6'] !== false) {
    throw new ConfigError('EnableIPv6', 'EnableIPv6 must be false if given: miniflannel does not carry IPv6');
  }

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

  // Backend
  const backendValue = doc['Backend'];
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

  return { network, subnetLen, subnetMin, subnetMax, backend: { type, port } };
}

/** The config in net-conf.json form with every default written out. */
export function toNetConf(config: NetworkConfig): Required<Pick<NetConf, 'Network' | 'SubnetLen' | 'SubnetMin' | 'SubnetMax'>> & { Backend: { Type: string; Port: number } } {
  return {
    Network: formatCidr(config.network),
    SubnetLen: config.subnetLen,
    SubnetMin: formatIPv4(config.subnetMin),
    SubnetMax: formatIPv4(config.subnetMax),
    Backend: { Type: config.backend.type, Port: config.backend.port },
  };
}

/** How many subnets SubnetMin..SubnetMax holds. */
export function allocatableCount(config: NetworkConfig): number {
  return (config.subnetMax - config.subnetMin) / blockSize(config.subnetLen) + 1;
}

/** The bitmap covers at most this many subnets (2 MiB); a larger range allocates from its first 2^24. */
export const MAX_ALLOCATABLE_BITS = 1 << 24;

/** SubnetMin..SubnetMax as the allocation bitmap describes it. */
export function allocatableRange(config: NetworkConfig): { first: number; size: number; count: number; prefixLength: number } {
  return {
    first: config.subnetMin,
    size: blockSize(config.subnetLen),
    count: Math.min(allocatableCount(config), MAX_ALLOCATABLE_BITS),
    prefixLength: config.subnetLen,
  };
}

/**
 * Why a lease on `subnet` may not be kept under `config`, or undefined if it
 * may (flannel's isSubnetConfigCompat): it must be SubnetLen long, inside the
 * network, and, unless it is a reservation, inside SubnetMin..SubnetMax.
 * Reservations may sit outside the allocatable range precisely so that random
 * allocation never touches them.
 */
export function misfitOf(config: NetworkConfig, subnet: Cidr, reservation: boolean): string | undefined {
  const text = formatCidr(subnet);
  if (subnet.prefixLength !== config.subnetLen) {
    return `subnet ${text} is a /${subnet.prefixLength}, but the network config gives each node a /${config.subnetLen} (SubnetLen)`;
  }
  if (!cidrContains(config.network, subnet.network)) return `subnet ${text} lies outside the Network ${formatCidr(config.network)}`;
  if (reservation || (subnet.network >= config.subnetMin && subnet.network <= config.subnetMax)) return undefined;
  return `subnet ${text} lies outside SubnetMin..SubnetMax (${formatIPv4(config.subnetMin)} to ${formatIPv4(config.subnetMax)})`;
}

/** The layout fields that differ between two configs: changing them strands the subnets already handed out. */
export function layoutChanges(previous: NetworkConfig, next: NetworkConfig): LayoutField[] {
  const changed: LayoutField[] = [];
  if (previous.network.network !== next.network.network || previous.network.prefixLength !== next.network.prefixLength) changed.push('Network');
  if (previous.subnetLen !== next.subnetLen) changed.push('SubnetLen');
  return changed;
}
