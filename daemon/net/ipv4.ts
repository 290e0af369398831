// IPv4 addresses and CIDR blocks as unsigned 32-bit numbers.
//
// Shared by the lease store (subnet arithmetic) and the data plane (route
// lookups), so the parsers scan character codes instead of splitting strings
// and every result is kept unsigned with `>>> 0`: bitwise operators in JS
// produce signed 32-bit values, and 10.0.0.0 < 200.0.0.0 must hold.

/** Thrown for text that is not an IPv4 address, a CIDR block or a prefix length. */
export class InvalidAddressError extends Error {
  override readonly name = 'InvalidAddressError';
  /** The text (or number) that was rejected. */
  readonly input: string;

  constructor(message: string, input: string, options?: ErrorOptions) {
    super(message, options);
    this.input = input;
  }
}

/** A CIDR block: `network` is the first address, with no host bits set. */
export interface Cidr {
  readonly network: number;
  readonly prefixLength: number;
}

const CHAR_0 = 48;
const CHAR_9 = 57;
const CHAR_DOT = 46;

/**
 * Scans a dotted quad in `text[start, end)`. Returns the address, or -1 if the
 * range is not exactly four decimal octets. Leading zeros are refused ("010"
 * means 8 to inet_aton and 10 to most humans), as Go's net.ParseIP does.
 */
function scanIPv4(text: string, start: number, end: number): number {
  let value = 0;
  let octet = 0;
  let digits = 0;
  let dots = 0;
  for (let i = start; i < end; i++) {
    const c = text.charCodeAt(i);
    if (c >= CHAR_0 && c <= CHAR_9) {
      if (digits === 1 && octet === 0) return -1;
      octet = octet * 10 + (c - CHAR_0);
      digits++;
      if (octet > 255) return -1;
    } else if (c === CHAR_DOT) {
      if (digits === 0 || dots === 3) return -1;
      value = value * 256 + octet;
      octet = 0;
      digits = 0;
      dots++;
    } else {
      return -1;
    }
  }
  if (dots !== 3 || digits === 0) return -1;
  return value * 256 + octet;
}

/** Scans a decimal prefix length 0..maxLength (32 for IPv4, 128 for IPv6) in `text[start, end)`, no leading zeros; -1 if it is not one. */
export function scanPrefixLength(text: string, start: number, end: number, maxLength = 32): number {
  const length = end - start;
  if (length < 1 || length > String(maxLength).length) return -1;
  let value = 0;
  for (let i = start; i < end; i++) {
    const c = text.charCodeAt(i);
    if (c < CHAR_0 || c > CHAR_9) return -1;
    value = value * 10 + (c - CHAR_0);
  }
  if (length > 1 && text.charCodeAt(start) === CHAR_0) return -1;
  return value <= maxLength ? value : -1;
}

/** Returns the address as an unsigned 32-bit number, or -1 if `text` is not a dotted quad. */
export function tryParseIPv4(text: string): number {
  return scanIPv4(text, 0, text.length);
}

/** Parses a dotted quad ("10.5.0.1") into an unsigned 32-bit number. */
export function parseIPv4(text: string): number {
  const value = scanIPv4(text, 0, text.length);
  if (value < 0) {
    throw new InvalidAddressError(`"${text}" is not an IPv4 address (expected a dotted quad such as 10.5.0.1)`, text);
  }
  return value;
}

/** Formats an unsigned 32-bit number as a dotted quad. */
export function formatIPv4(address: number): string {
  return `${(address >>> 24) & 255}.${(address >>> 16) & 255}.${(address >>> 8) & 255}.${address & 255}`;
}

/** The netmask of a prefix length: maskOf(24) is 255.255.255.0 (0xffffff00). */
export function maskOf(prefixLength: number): number {
  if (!Number.isInteger(prefixLength) || prefixLength < 0 || prefixLength > 32) {
    throw new InvalidAddressError(`prefix length ${prefixLength} is not an integer in 0..32`, String(prefixLength));
  }
  // `x << 32` is `x << 0` in JS, so /0 needs its own case.
  return prefixLength === 0 ? 0 : (0xffffffff << (32 - prefixLength)) >>> 0;
}

/** Options for {@link parseCidr}. */
export interface ParseCidrOptions {
  /**
   * Accept an address with host bits set ("10.5.3.7/24", an interface address)
   * and return its network (10.5.3.0/24). By default such text is rejected,
   * because in a config file it is almost always a typo.
   */
  readonly allowHostBits?: boolean;
}

/** Parses "10.5.0.0/16". Rejects host bits set unless `options.allowHostBits`. */
export function parseCidr(text: string, options?: ParseCidrOptions): Cidr {
  const slash = text.indexOf('/');
  const address = slash < 0 ? -1 : scanIPv4(text, 0, slash);
  const prefixLength = slash < 0 ? -1 : scanPrefixLength(text, slash + 1, text.length);
  if (address < 0 || prefixLength < 0) {
    throw new InvalidAddressError(`"${text}" is not an IPv4 CIDR block (expected address/prefix such as 10.5.0.0/16)`, text);
  }
  const network = (address & maskOf(prefixLength)) >>> 0;
  if (network !== address && options?.allowHostBits !== true) {
    throw new InvalidAddressError(
      `"${text}" has host bits set; the network is ${formatIPv4(network)}/${prefixLength}`,
      text,
    );
  }
  return { network, prefixLength };
}

/** Formats a CIDR block as "10.5.0.0/16". */
export function formatCidr(cidr: Cidr): string {
  return `${formatIPv4(cidr.network)}/${cidr.prefixLength}`;
}

/** Whether `address` (an unsigned 32-bit number) lies inside `cidr`. */
export function cidrContains(cidr: Cidr, address: number): boolean {
  const mask = cidr.prefixLength === 0 ? 0 : (0xffffffff << (32 - cidr.prefixLength)) >>> 0;
  return ((address & mask) >>> 0) === cidr.network;
}

/** The number of addresses in a block of this prefix length: 2^(32 - prefixLength). */
export function blockSize(prefixLength: number): number {
  return 2 ** (32 - prefixLength);
}

/** The last address of a CIDR block (its broadcast address). */
export function lastAddress(cidr: Cidr): number {
  return cidr.network + blockSize(cidr.prefixLength) - 1;
}
