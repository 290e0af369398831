// IPv6 addresses and CIDR blocks as four unsigned 32-bit words, most
// significant first.
//
// Why words: the data plane's route lookup masks and compares an address
// against a subnet for every packet. Four plain numbers do that in at most
// four integer operations and compare with `===`; a pod subnet (/64) is
// decided by the first two. BigInt allocates on every operation, and a
// 16-byte Buffer needs a byte loop. The words also read straight from a
// packet with readUInt32BE, so cidr6ContainsAt tests a header in place.
//
// As in ipv4.ts the parser scans character codes, and every word is kept
// unsigned with `>>> 0` because bitwise operators produce signed values.

import { InvalidAddressError, maskOf, scanPrefixLength, tryParseIPv4 } from './ipv4.js';
import type { Cidr, ParseCidrOptions } from './ipv4.js';

/** An IPv6 address: four unsigned 32-bit words, most significant first. */
export type IPv6Address = readonly [number, number, number, number];

/** RFC 8200 section 5: every IPv6 link carries packets of 1280 bytes, and no IPv6 MTU is smaller. */
export const IPV6_MIN_MTU = 1280;

/** An IPv6 CIDR block: `network` is the first address, with no host bits set. */
export interface Cidr6 {
  readonly network: IPv6Address;
  readonly prefixLength: number;
}

const CHAR_0 = 48;
const CHAR_9 = 57;
const CHAR_A = 65;
const CHAR_F = 70;
const CHAR_LOWER_A = 97;
const CHAR_LOWER_F = 102;
const CHAR_DOT = 46;
const CHAR_COLON = 58;
const CHAR_PERCENT = 37;

/** The value of a hex digit, or -1. */
function hexValue(c: number): number {
  if (c >= CHAR_0 && c <= CHAR_9) return c - CHAR_0;
  if (c >= CHAR_LOWER_A && c <= CHAR_LOWER_F) return c - CHAR_LOWER_A + 10;
  if (c >= CHAR_A && c <= CHAR_F) return c - CHAR_A + 10;
  return -1;
}

/**
 * Scans an RFC 4291 address in `text[start, end)`: eight groups of one to
 * four hex digits, at most one `::` standing for one or more zero groups, and
 * optionally a dotted quad as the last 32 bits. Returns the address, or why
 * the text is not one.
 */
function scanIPv6(text: string, start: number, end: number): IPv6Address | string {
  if (start === end) return 'it is empty';
  const groups = [0, 0, 0, 0, 0, 0, 0, 0];
  let count = 0;
  let gap = -1; // index in `groups` where `::` stands, or -1
  let i = start;
  if (text.charCodeAt(i) === CHAR_COLON) {
    if (text.charCodeAt(i + 1) !== CHAR_COLON || i + 1 >= end) return 'it starts with a single ":"';
    gap = 0;
    i += 2;
  }
  while (i < end) {
    if (count === 8) return 'it has more than 8 groups';
    const groupStart = i;
    let value = 0;
    while (i < end) {
      const digit = hexValue(text.charCodeAt(i));
      if (digit < 0) break;
      value = value * 16 + digit;
      i++;
    }
    if (i < end && text.charCodeAt(i) === CHAR_DOT) {
      if (count > 6) return 'an embedded IPv4 address must be the last 32 bits';
      const v4 = tryParseIPv4(text.slice(groupStart, end));
      if (v4 < 0) return `"${text.slice(groupStart, end)}" is not a dotted quad`;
      if (count === 0 && gap < 0) return 'it is an IPv4 address';
      groups[count++] = v4 >>> 16;
      groups[count++] = v4 & 0xffff;
      i = end;
      break;
    }
    if (i === groupStart) {
      const c = text.charCodeAt(i);
      if (c === CHAR_PERCENT) return 'zone IDs ("%eth0") are not accepted';
      if (c === CHAR_COLON) return 'it has more than one "::"';
      return `unexpected ${JSON.stringify(text[i])} at position ${i - start}`;
    }
    if (i - groupStart > 4) return `group "${text.slice(groupStart, i)}" has more than 4 hex digits`;
    groups[count++] = value;
    if (i === end) break;
    const c = text.charCodeAt(i);
    if (c !== CHAR_COLON) {
      if (c === CHAR_PERCENT) return 'zone IDs ("%eth0") are not accepted';
      return `unexpected ${JSON.stringify(text[i])} at position ${i - start}`;
    }
    i++;
    if (i < end && text.charCodeAt(i) === CHAR_COLON) {
      if (gap >= 0) return 'it has more than one "::"';
      gap = count;
      i++;
    } else if (i === end) {
      return 'it ends with a single ":"';
    }
  }
  if (gap < 0) {
    if (count !== 8) return `it has ${count} groups, not 8, and no "::"`;
  } else {
    if (count > 7) return 'it has 8 groups and a "::", which must stand for at least one';
    const zeros = 8 - count;
    for (let g = count - 1; g >= gap; g--) groups[g + zeros] = groups[g]!;
    for (let g = gap; g < gap + zeros; g++) groups[g] = 0;
  }
  return [
    ((groups[0]! << 16) | groups[1]!) >>> 0,
    ((groups[2]! << 16) | groups[3]!) >>> 0,
    ((groups[4]! << 16) | groups[5]!) >>> 0,
    ((groups[6]! << 16) | groups[7]!) >>> 0,
  ];
}

/** Parses any RFC 4291 text form: "2001:db8::1", "fd00:0:0:0:0:0:0:1", "::ffff:198.18.0.1". */
export function parseIPv6(text: string): IPv6Address {
  const result = scanIPv6(text, 0, text.length);
  if (typeof result === 'string') {
    throw new InvalidAddressError(`"${text}" is not an IPv6 address (expected a form such as fd00::1): ${result}`, text);
  }
  return result;
}

/**
 * Formats an address in the RFC 5952 canonical form: lower-case hex without
 * leading zeros, the longest run of two or more zero groups (the first, on a
 * tie) written as `::`. IPv4-mapped addresses (::ffff:0:0/96) end in a dotted
 * quad, as RFC 5952 section 5 recommends; WHATWG URLs and Node's
 * `new URL()` write them in hex instead (::ffff:c612:1).
 */
export function formatIPv6(address: IPv6Address): string {
  const [w0, w1, w2, w3] = address;
  if (w0 === 0 && w1 === 0 && w2 === 0xffff) {
    return `::ffff:${w3 >>> 24}.${(w3 >>> 16) & 255}.${(w3 >>> 8) & 255}.${w3 & 255}`;
  }
  const groups = [w0 >>> 16, w0 & 0xffff, w1 >>> 16, w1 & 0xffff, w2 >>> 16, w2 & 0xffff, w3 >>> 16, w3 & 0xffff];
  let bestStart = -1;
  let bestLength = 1; // a single zero group is written as "0", not "::"
  for (let g = 0; g < 8; ) {
    if (groups[g] !== 0) {
      g++;
      continue;
    }
    const runStart = g;
    while (g < 8 && groups[g] === 0) g++;
    if (g - runStart > bestLength) {
      bestStart = runStart;
      bestLength = g - runStart;
    }
  }
  if (bestStart < 0) return groups.map((group) => group.toString(16)).join(':');
  const head = groups.slice(0, bestStart).map((group) => group.toString(16)).join(':');
  const tail = groups.slice(bestStart + bestLength).map((group) => group.toString(16)).join(':');
  return `${head}::${tail}`;
}

/** The mask of word `word` (0..3) of a prefix: all ones, all zeros, or the boundary word. */
export function maskWord(prefixLength: number, word: number): number {
  return maskOf(Math.min(32, Math.max(0, prefixLength - 32 * word)));
}

/** `address` with every bit past its first `prefixLength` cleared: the network that holds it. */
export function networkOf6(address: IPv6Address, prefixLength: number): IPv6Address {
  return [
    (address[0] & maskWord(prefixLength, 0)) >>> 0,
    (address[1] & maskWord(prefixLength, 1)) >>> 0,
    (address[2] & maskWord(prefixLength, 2)) >>> 0,
    (address[3] & maskWord(prefixLength, 3)) >>> 0,
  ];
}

/** Whether two blocks share an address: the wider one holds the other's network address. */
export function cidr6Overlaps(a: Cidr6, b: Cidr6): boolean {
  return a.prefixLength <= b.prefixLength ? cidr6Contains(a, b.network) : cidr6Contains(b, a.network);
}

/** Whether a block of either family is an IPv6 one. */
export function isCidr6(cidr: Cidr | Cidr6): cidr is Cidr6 {
  return typeof cidr.network !== 'number';
}

/** Parses "fd00:10:244::/48". Rejects host bits set unless `options.allowHostBits`. */
export function parseCidr6(text: string, options?: ParseCidrOptions): Cidr6 {
  const slash = text.indexOf('/');
  const address = slash < 0 ? 'it has no "/prefix"' : scanIPv6(text, 0, slash);
  const prefixLength = slash < 0 ? -1 : scanPrefixLength(text, slash + 1, text.length, 128);
  if (typeof address === 'string' || prefixLength < 0) {
    const why = typeof address === 'string' ? address : 'the prefix length is not a number in 0..128';
    throw new InvalidAddressError(
      `"${text}" is not an IPv6 CIDR block (expected address/prefix such as fd00:10:244::/48): ${why}`,
      text,
    );
  }
  const network = networkOf6(address, prefixLength);
  const hostBitsSet = network.some((word, i) => word !== address[i]);
  if (hostBitsSet && options?.allowHostBits !== true) {
    throw new InvalidAddressError(
      `"${text}" has host bits set; the network is ${formatIPv6(network)}/${prefixLength}`,
      text,
    );
  }
  return { network, prefixLength };
}

/** Formats a CIDR block as "fd00:10:244::/48". */
export function formatCidr6(cidr: Cidr6): string {
  return `${formatIPv6(cidr.network)}/${cidr.prefixLength}`;
}

/** Whether `address` lies inside `cidr`. */
export function cidr6Contains(cidr: Cidr6, address: IPv6Address): boolean {
  const { network, prefixLength } = cidr;
  for (let word = 0; word < 4; word++) {
    if (((address[word]! & maskWord(prefixLength, word)) >>> 0) !== network[word]) return false;
  }
  return true;
}

/** Whether the address stored at `buf[offset, offset+16)` lies inside `cidr`; reads in place, and only the words the prefix covers. */
export function cidr6ContainsAt(cidr: Cidr6, buf: Buffer, offset: number): boolean {
  const { network, prefixLength } = cidr;
  const words = (prefixLength + 31) >>> 5;
  for (let word = 0; word < words; word++) {
    if (((buf.readUInt32BE(offset + 4 * word) & maskWord(prefixLength, word)) >>> 0) !== network[word]) return false;
  }
  return true;
}

/** Reads the 16-byte address at `buf[offset]`. */
export function readIPv6(buf: Buffer, offset: number): IPv6Address {
  return [buf.readUInt32BE(offset), buf.readUInt32BE(offset + 4), buf.readUInt32BE(offset + 8), buf.readUInt32BE(offset + 12)];
}

/** Writes the address as 16 bytes at `buf[offset]`. */
export function writeIPv6(buf: Buffer, offset: number, address: IPv6Address): void {
  for (let word = 0; word < 4; word++) buf.writeUInt32BE(address[word]!, offset + 4 * word);
}

/**
 * Checks that `network` can hold subnets of `prefixLength` and returns how
 * many index bits that leaves: the bits from network.prefixLength to
 * prefixLength.
 */
function subnetBits(network: Cidr6, prefixLength: number): number {
  if (!Number.isInteger(prefixLength) || prefixLength < network.prefixLength || prefixLength > 128) {
    throw new InvalidAddressError(
      `subnet prefix length ${prefixLength} is not an integer in ${network.prefixLength}..128 (inside ${formatCidr6(network)})`,
      String(prefixLength),
    );
  }
  return prefixLength - network.prefixLength;
}

/**
 * The `index`-th subnet of length `prefixLength` inside `network`, counting
 * from 0: nthSubnet6(fd00::/48, 64, 3) is fd00:0:0:3::/64. The index is a safe
 * integer, so a network with more than 2^53 subnets is addressed only in its
 * first 2^53.
 */
export function nthSubnet6(network: Cidr6, prefixLength: number, index: number): Cidr6 {
  const bits = subnetBits(network, prefixLength);
  if (!Number.isSafeInteger(index) || index < 0 || index >= 2 ** bits) {
    throw new InvalidAddressError(
      `subnet index ${index} is not an integer in 0..2^${bits}-1 (/${prefixLength} subnets of ${formatCidr6(network)})`,
      String(index),
    );
  }
  const [w0, w1, w2, w3] = network.network;
  const words: [number, number, number, number] = [w0, w1, w2, w3];
  // Spread the index over the words from the least significant bit of the
  // subnet part upwards; the network has zeros there, so OR is addition.
  let rest = index;
  for (let word = 3; word >= 0 && rest > 0; word--) {
    const from = Math.max(network.prefixLength, 32 * word);
    const to = Math.min(prefixLength, 32 * word + 32);
    if (to <= from) continue;
    const width = to - from;
    const piece = rest % 2 ** width;
    rest = Math.floor(rest / 2 ** width);
    words[word] = (words[word]! | (piece << (32 * word + 32 - to))) >>> 0;
  }
  return { network: words, prefixLength };
}

/**
 * The index of `subnet` inside `network`, the inverse of nthSubnet6. Throws
 * if the subnet is not inside the network, or if its index is past 2^53.
 */
export function subnetIndex6(network: Cidr6, subnet: Cidr6): number {
  const bits = subnetBits(network, subnet.prefixLength);
  if (!cidr6Contains(network, subnet.network)) {
    throw new InvalidAddressError(`${formatCidr6(subnet)} is not inside ${formatCidr6(network)}`, formatCidr6(subnet));
  }
  let index = 0;
  for (let word = 0; word < 4; word++) {
    const from = Math.max(network.prefixLength, 32 * word);
    const to = Math.min(subnet.prefixLength, 32 * word + 32);
    if (to <= from) continue;
    const width = to - from;
    const piece = width === 32 ? subnet.network[word]! : ((subnet.network[word]! << (from - 32 * word)) >>> 0) >>> (32 - width);
    index = index * 2 ** width + piece;
  }
  if (index > Number.MAX_SAFE_INTEGER) {
    throw new InvalidAddressError(
      `${formatCidr6(subnet)} is past the first 2^53 of the 2^${bits} subnets of ${formatCidr6(network)}`,
      formatCidr6(subnet),
    );
  }
  return index;
}
