// The lease record and its stored form.
//
// In Redis a lease is split in two: the hash {p}:leases maps the subnet to the
// owner's attributes as JSON (the Lua scripts only read PublicIP, and replace
// NodeName when an operator names a reservation), and the sorted set
// {p}:expiry maps the subnet to its expiry. A subnet in the hash but not in
// the sorted set is a reservation.

import { formatCidr, InvalidAddressError, parseCidr, tryParseIPv4, type Cidr } from '../net/ipv4.js';
import { parseIPv6 } from '../net/ipv6.js';

export interface Lease {
  /** The leased subnet in CIDR form, e.g. "10.5.3.0/24": its key in the store. */
  readonly subnet: string;
  /** `subnet`, decoded once where the lease was read, so no consumer parses the text again. */
  readonly cidr: Cidr;
  /** The owner's underlay address: where packets for `subnet` are sent. */
  readonly publicIP: string;
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
  readonly publicIP: string;
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
    PublicIP: attrs.publicIP,
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
  if (typeof PublicIP !== 'string' || tryParseIPv4(PublicIP) < 0) return { ok: false, reason: `PublicIP ${JSON.stringify(PublicIP)} is not an IPv4 address` };
  // null is what flannel's Go side means by absent, too.
  const publicIPv6 = PublicIPv6 === undefined || PublicIPv6 === null ? undefined : checkPublicIPv6(PublicIPv6);
  if (publicIPv6 !== undefined && !publicIPv6.ok) return { ok: false, reason: publicIPv6.reason };
  if (typeof NodeName !== 'string') return { ok: false, reason: 'NodeName is not a string' };
  if (typeof BackendType !== 'string' || BackendType === '') return { ok: false, reason: 'BackendType is not a non-empty string' };
  if (!isPlainObject(BackendData)) return { ok: false, reason: 'BackendData is not an object' };
  let expiresAt: number | null = null;
  if (expiry !== null && expiry !== '') {
    expiresAt = typeof expiry === 'number' ? expiry : Number(expiry);
    if (!Number.isSafeInteger(expiresAt) || expiresAt <= 0) return { ok: false, reason: `expiry ${JSON.stringify(expiry)} is not a timestamp` };
  }
  const ipv6 = publicIPv6 === undefined ? {} : { publicIPv6: publicIPv6.address };
  return { ok: true, lease: { subnet: subnetText, cidr, publicIP: PublicIP, ...ipv6, nodeName: NodeName, backendType: BackendType, backendData: BackendData, expiresAt } };
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
function canonicalCidr(subnetText: string): Cidr | string {
  let cidr: Cidr;
  try {
    cidr = parseCidr(subnetText);
  } catch {
    return `subnet ${JSON.stringify(subnetText)} is not a CIDR block`;
  }
  if (formatCidr(cidr) !== subnetText) return `subnet ${JSON.stringify(subnetText)} is not in canonical form`;
  return cidr;
}

/**
 * A lease that names nothing but its subnet: what a removal whose stored
 * attributes are corrupt still tells. Undefined if the subnet is not a
 * canonical CIDR block either.
 */
export function bareLease(subnetText: string): Lease | undefined {
  const cidr = canonicalCidr(subnetText);
  if (typeof cidr === 'string') return undefined;
  return { subnet: subnetText, cidr, publicIP: '', nodeName: '', backendType: '', backendData: {}, expiresAt: null };
}

/** "node-b (198.18.0.2)", or the bare IP for a reservation no node has claimed yet. */
export function holderOf(lease: Pick<Lease, 'nodeName' | 'publicIP'>): string {
  return lease.nodeName === '' ? lease.publicIP : `${lease.nodeName} (${lease.publicIP})`;
}
