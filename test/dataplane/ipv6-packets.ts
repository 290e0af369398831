// Builds IPv6 packets for the data-plane tests: UDP, TCP and ICMPv6 with
// correct checksums over the RFC 8200 8.1 pseudo-header, and extension
// headers. The checksum here is spelt out byte by byte, apart from the code
// under test, so it can judge the ICMPv6 errors the data plane writes.
import { parseIPv6, writeIPv6 } from '../../daemon/net/ipv6.js';

export const PROTO_TCP = 6;
export const PROTO_UDP = 17;
export const PROTO_ICMPV6 = 58;
export const EXT_DESTINATION_OPTIONS = 60;
export const EXT_HOP_BY_HOP = 0;
export const EXT_ROUTING = 43;
export const EXT_FRAGMENT = 44;
export const EXT_AUTHENTICATION = 51;

/** An extension header; its Next Header byte is filled in by ipv6Packet. */
export interface Extension {
  readonly kind: number;
  readonly bytes: Buffer;
}

/** Hop-by-Hop, Routing or Destination Options of (extraUnits + 1) * 8 bytes. */
export function optionsHeader(kind: number, extraUnits = 0): Extension {
  const bytes = Buffer.alloc((extraUnits + 1) * 8);
  bytes[1] = extraUnits;
  return { kind, bytes };
}

/** AH counts its length in 4-byte units, minus 2 (RFC 4302). */
export function authenticationHeader(lengthField: number): Extension {
  const bytes = Buffer.alloc((lengthField + 2) * 4);
  bytes[1] = lengthField;
  return { kind: EXT_AUTHENTICATION, bytes };
}

export function fragmentHeader(offsetUnits: number, more: boolean): Extension {
  const bytes = Buffer.alloc(8);
  bytes.writeUInt16BE((offsetUnits << 3) | (more ? 1 : 0), 2);
  bytes.writeUInt32BE(0xbeef, 4);
  return { kind: EXT_FRAGMENT, bytes };
}

export interface Packet6Spec {
  source: string;
  destination: string;
  /** The upper layer's protocol; default UDP. */
  protocol?: number;
  /** The upper-layer header and body; its checksum is the caller's. */
  upper?: Buffer;
  extensions?: readonly Extension[];
}

export function ipv6Packet(spec: Packet6Spec): Buffer {
  const extensions = spec.extensions ?? [];
  const protocol = spec.protocol ?? PROTO_UDP;
  const chain = extensions.map((e, i) => {
    const bytes = Buffer.from(e.bytes);
    bytes[0] = extensions[i + 1]?.kind ?? protocol;
    return bytes;
  });
  const body = Buffer.concat([...chain, spec.upper ?? Buffer.from('hello over ipv6')]);
  const header = Buffer.alloc(40);
  header.writeUInt32BE(0x6000beef, 0); // a flow label, to see it carried
  header.writeUInt16BE(body.length, 4);
  header[6] = extensions[0]?.kind ?? protocol;
  header[7] = 64;
  writeIPv6(header, 8, parseIPv6(spec.source));
  writeIPv6(header, 24, parseIPv6(spec.destination));
  return Buffer.concat([header, body]);
}

/** The 16-bit one's complement sum (not complemented) of the pseudo-header and the upper layer. */
function pseudoHeaderSum(source: Buffer, destination: Buffer, protocol: number, upper: Buffer): number {
  const pseudo = Buffer.alloc(40);
  source.copy(pseudo, 0);
  destination.copy(pseudo, 16);
  pseudo.writeUInt32BE(upper.length, 32);
  pseudo[39] = protocol;
  const whole = Buffer.concat([pseudo, upper, Buffer.alloc(upper.length % 2)]);
  let sum = 0;
  for (let i = 0; i < whole.length; i += 2) sum += whole.readUInt16BE(i);
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return sum;
}

/** A packet whose upper layer carries its checksum at `checksumAt` (from the upper layer's start). */
function checksummed(spec: Packet6Spec & { protocol: number; upper: Buffer }, checksumAt: number): Buffer {
  const upper = Buffer.from(spec.upper);
  upper.writeUInt16BE(0, checksumAt);
  const sum = pseudoHeaderSum(addressBytes(spec.source), addressBytes(spec.destination), spec.protocol, upper);
  // UDP over IPv6 must not carry 0 (RFC 8200 8.1): a computed 0 is sent as 0xffff.
  upper.writeUInt16BE((~sum & 0xffff) || 0xffff, checksumAt);
  return ipv6Packet({ ...spec, upper });
}

export function addressBytes(text: string): Buffer {
  const bytes = Buffer.alloc(16);
  writeIPv6(bytes, 0, parseIPv6(text));
  return bytes;
}

export function udp6(source: string, destination: string, body: Buffer, ports: [number, number] = [40000, 53]): Buffer {
  const udp = Buffer.alloc(8 + body.length);
  udp.writeUInt16BE(ports[0], 0);
  udp.writeUInt16BE(ports[1], 2);
  udp.writeUInt16BE(udp.length, 4);
  body.copy(udp, 8);
  return checksummed({ source, destination, protocol: PROTO_UDP, upper: udp }, 6);
}

export function tcp6(source: string, destination: string, seq: number, payload: Buffer = Buffer.alloc(0)): Buffer {
  const tcp = Buffer.alloc(20 + payload.length);
  tcp.writeUInt16BE(40001, 0);
  tcp.writeUInt16BE(5201, 2);
  tcp.writeUInt32BE(seq >>> 0, 4);
  tcp.writeUInt32BE(1, 8);
  tcp[12] = 5 << 4;
  tcp[13] = 0x18; // ACK, PSH
  tcp.writeUInt16BE(502, 14);
  payload.copy(tcp, 20);
  return checksummed({ source, destination, protocol: PROTO_TCP, upper: tcp }, 16);
}

/** An ICMPv6 echo request (type 128) or reply (129). */
export function echo6(source: string, destination: string, sequence: number, type = 128, body = Buffer.from('ping6')): Buffer {
  const icmp = Buffer.alloc(8 + body.length);
  icmp[0] = type;
  icmp.writeUInt16BE(0x42, 4);
  icmp.writeUInt16BE(sequence & 0xffff, 6);
  body.copy(icmp, 8);
  return checksummed({ source, destination, protocol: PROTO_ICMPV6, upper: icmp }, 2);
}

/** Whether the upper layer right after the fixed header checksums to all ones over the pseudo-header. */
export function upperChecksumHolds(packet: Buffer): boolean {
  const upper = packet.subarray(40, 40 + packet.readUInt16BE(4));
  return pseudoHeaderSum(packet.subarray(8, 24), packet.subarray(24, 40), packet[6]!, upper) === 0xffff;
}
