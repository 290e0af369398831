// The lease record and its stored form.
//
// In Redis a lease is split in two: the hash {p}:leases maps the subnet to the
// owner's attributes as JSON (the Lua scripts only read the owner's address,
// PublicIP or, on a node without one, PublicIPv6, and replace
// NodeName when an operator names a reservation), and the sorted set
// {p}:expiry maps the subnet to its expiry. A subnet in the hash but not in
// the sorted set is a reservation.

import { formatCidr, InvalidAddressError, parseCidr, tryParseIPv4, type Cidr } from '../net/ipv4.js';
import { formatCidr6, isCidr6, parseCidr6, parseIPv6, type Cidr6 } from '../net/ipv6.js';

export interface Lease {
  /**
   * The leased subnet in CIDR form, its key in the store: the IPv4 subnet,
   * e.g. "10.5.3.0/24" (the IPv6 one of a dual-stack node is its pair), or in
   * an IPv6-only cluster the IPv6 subnet, e.g. "fd00:10:244:3::/64".
   */
  readonly subnet: string;
  /** `subnet`, decoded once where the lease was read, so no consumer parses the text again. */
  readonly cidr: Cidr | Cidr6;
  /** The owner's IPv4 underlay address; absent only on a node that has none (IPv6-only, IPv6 underlay). */
  readonly publicIP?: string;
  /** The owner's IPv6 underlay address (flannel's PublicIPv6), when it has one. */
  readonly publicIPv6?: string;
  /** The owner's Kubernetes node name ("" for a reservation nobody has claimed yet). */
  readonly nodeName: string;
  /** The backend the owner runs, e.g. "udp". */
  readonly backendType: string;
  /** Backend-specific data, e.g. {"Port": 8285} for udp. */
  readonly backendData: Readonly<Record<string, unknown>>;
  /** Expiry in ms since the epoch by the Redis clock, or null for a reservation (never expires). */
  readonly expiresAt: number | null;
}

/** The owner's attributes, as passed to the store when a lease is written. */
export interface LeaseAttrs {
  /** At least one of publicIP and publicIPv6 is set. */
  readonly publicIP?: string;
  /** Written only when set, so an IPv4-only node's record is the text it always was. */
  readonly publicIPv6?: string;
  readonly nodeName: string;
  readonly backendType: string;
  readonly backendData: Readonly<Record<string, unknown>>;
}

/**
 * The JSON stored for a lease. Keys are written in a fixed order, so equal
 * attributes give equal text and the scripts can tell "renewed" (same text)
 * from "changed" by comparing strings.
 */
export function encodeAttrs(attrs: LeaseAttrs): string {
  return JSON.stringify({
    ...(attrs.publicIP === undefined ? {} : { PublicIP: attrs.publicIP }),
    ...(attrs.publicIPv6 === undefined ? {} : { PublicIPv6: attrs.publicIPv6 }),
    NodeName: attrs.nodeName,
    BackendType: attrs.backendType,
    BackendData: attrs.backendData,
  });
}

/** A decoded lease, or why the stored value was refused. */
export type DecodeResult = { readonly ok: true; readonly lease: Lease } | { readonly ok: false; readonly reason: string };

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/**
 * Builds a Lease from its stored parts: the hash field (subnet), the hash
 * value (attributes JSON) and the expiry ("" or null for a reservation).
 * Never throws: a corrupt value is the caller's to skip and count.
 */
export function decodeLease(subnetText: string, attrsJson: string, expiry: string | number | null): DecodeResult {
  const cidr = canonicalCidr(subnetText);
  if (typeof cidr === 'string') return { ok: false, reason: cidr };
  let doc: unknown;
  try {
    doc = JSON.parse(attrsJson);
  } catch {
    return { ok: false, reason: `value is not JSON: ${JSON.stringify(attrsJson.slice(0, 80))}` };
  }
  if (!isPlainObject(doc)) return { ok: false, reason: 'value is not a JSON object' };
  const { PublicIP, PublicIPv6, NodeName, BackendType, BackendData } = doc;
  // null is what flannel's Go side means by absent, too.
  const publicIPv6 = PublicIPv6 === undefined || PublicIPv6 === null ? undefined : checkPublicIPv6(PublicIPv6);
  if (publicIPv6 !== undefined && !publicIPv6.ok) return { ok: false, reason: publicIPv6.reason };
  // As for PublicIPv6, null means absent: a node without an IPv4 underlay address.
  const hasPublicIP = !((PublicIP === undefined || PublicIP === null) && publicIPv6 !== undefined);
  if (hasPublicIP && (typeof PublicIP !== 'string' || tryParseIPv4(PublicIP) < 0)) return { ok: false, reason: `PublicIP ${JSON.stringify(PublicIP)} is not an IPv4 address` };
  if (typeof NodeName !== 'string') return { ok: false, reason: 'NodeName is not a string' };
  if (typeof BackendType !== 'string' || BackendType === '') return { ok: false, reason: 'BackendType is not a non-empty string' };
  if (!isPlainObject(BackendData)) return { ok: false, reason: 'BackendData is not an object' };
  let expiresAt: number | null = null;
  if (expiry !== null && expiry !== '') {
    expiresAt = typeof expiry === 'number' ? expiry : Number(expiry);
    if (!Number.isSafeInteger(expiresAt) || expiresAt <= 0) return { ok: false, reason: `expiry ${JSON.stringify(expiry)} is not a timestamp` };
  }
  const ipv4 = hasPublicIP ? { publicIP: PublicIP as string } : {};
  const ipv6 = publicIPv6 === undefined ? {} : { publicIPv6: publicIPv6.address };
  return { ok: true, lease: { subnet: subnetText, cidr, ...ipv4, ...ipv6, nodeName: NodeName, backendType: BackendType, backendData: BackendData, expiresAt } };
}

/** A stored PublicIPv6 as it is, or why it is not an IPv6 address. */
function checkPublicIPv6(value: unknown): { readonly ok: true; readonly address: string } | { readonly ok: false; readonly reason: string } {
  if (typeof value !== 'string') return { ok: false, reason: `PublicIPv6 ${JSON.stringify(value)} is not a string` };
  try {
    parseIPv6(value);
  } catch (err) {
    if (err instanceof InvalidAddressError) return { ok: false, reason: `PublicIPv6 ${err.message}` };
    throw err;
  }
  return { ok: true, address: value };
}

/** The block a stored subnet names, or why it is not one: the store writes only canonical CIDR text. */
function canonicalCidr(subnetText: string): Cidr | Cidr6 | string {
  const cidr = tryParseSubnet(subnetText);
  if (cidr === undefined) return `subnet ${JSON.stringify(subnetText)} is not a CIDR block`;
  if (formatSubnet(cidr) !== subnetText) return `subnet ${JSON.stringify(subnetText)} is not in canonical form`;
  return cidr;
}

function tryParseSubnet(text: string): Cidr | Cidr6 | undefined {
  try {
    return text.includes(':') ? parseCidr6(text) : parseCidr(text);
  } catch (err) {
    if (err instanceof InvalidAddressError) return undefined;
    throw err;
  }
}

/** A lease key as text: "10.5.3.0/24" or "fd00:10:244:3::/64". */
export function formatSubnet(cidr: Cidr | Cidr6): string {
  return isCidr6(cidr) ? formatCidr6(cidr) : formatCidr(cidr);
}

/** A lease key the store wrote (canonical text of either family), decoded; throws on anything else. */
export function parseSubnetKey(text: string): Cidr | Cidr6 {
  const cidr = canonicalCidr(text);
  if (typeof cidr === 'string') throw new InvalidAddressError(cidr, text);
  return cidr;
}

/** The owner's address for a log line: `publicIP`, as it always was, or `publicIPv6` for a node without one. */
export function ownerLogFields(attrs: Pick<LeaseAttrs, 'publicIP' | 'publicIPv6'>): { publicIP: string } | { publicIPv6: string | undefined } {
  return attrs.publicIP !== undefined ? { publicIP: attrs.publicIP } : { publicIPv6: attrs.publicIPv6 };
}

/** Address order, IPv4 before IPv6: the order leases are listed in. */
export function compareSubnets(a: Cidr | Cidr6, b: Cidr | Cidr6): number {
  if (!isCidr6(a)) return isCidr6(b) ? -1 : a.network - b.network;
  if (!isCidr6(b)) return 1;
  for (let i = 0; i < 4; i++) if (a.network[i] !== b.network[i]) return a.network[i]! - b.network[i]!;
  return 0;
}

/**
 * The address a lease's owner is known by in the store (its owners index and
 * every ownership check): PublicIP, or PublicIPv6 on a node without an IPv4
 * underlay address. The Lua scripts' owner_of reads the same.
 */
export function ownerAddress(attrs: Pick<LeaseAttrs, 'publicIP' | 'publicIPv6'>): string {
  return attrs.publicIP ?? attrs.publicIPv6 ?? '';
}

/**
 * A lease that names nothing but its subnet: what a removal whose stored
 * attributes are corrupt still tells. Undefined if the subnet is not a
 * canonical CIDR block either.
 */
export function bareLease(subnetText: string): Lease | undefined {
  const cidr = canonicalCidr(subnetText);
  if (typeof cidr === 'string') return undefined;
  return { subnet: subnetText, cidr, nodeName: '', backendType: '', backendData: {}, expiresAt: null };
}

/** "node-b (198.18.0.2)", or the bare address for a reservation no node has claimed yet. */
export function holderOf(lease: Pick<Lease, 'nodeName' | 'publicIP' | 'publicIPv6'>): string {
  const address = ownerAddress(lease);
  return lease.nodeName === '' ? address : `${lease.nodeName} (${address})`;
}
