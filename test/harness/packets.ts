// Builds IPv4 packets for tests, with a correct header checksum.
import { internetChecksum } from '../../daemon/dataplane/ipv4-packet.js';
import { parseIPv4 } from '../../daemon/net/ipv4.js';

export interface PacketSpec {
  source: string;
  destination: string;
  protocol?: number;
  payload?: Buffer;
  ttl?: number;
  dontFragment?: boolean;
  fragmentOffset?: number;
  /** Extra header bytes (IPv4 options), a multiple of 4. */
  options?: Buffer;
}

export function ipv4Packet(spec: PacketSpec): Buffer {
  const options = spec.options ?? Buffer.alloc(0);
  const payload = spec.payload ?? Buffer.from('hello');
  const headerLength = 20 + options.length;
  const packet = Buffer.alloc(headerLength + payload.length);
  packet[0] = 0x40 | (headerLength >> 2);
  packet.writeUInt16BE(packet.length, 2);
  packet.writeUInt16BE(0x1234, 4);
  packet.writeUInt16BE((spec.dontFragment ? 0x4000 : 0) | ((spec.fragmentOffset ?? 0) & 0x1fff), 6);
  packet[8] = spec.ttl ?? 64;
  packet[9] = spec.protocol ?? 17;
  packet.writeUInt32BE(parseIPv4(spec.source), 12);
  packet.writeUInt32BE(parseIPv4(spec.destination), 16);
  options.copy(packet, 20);
  packet.writeUInt16BE(internetChecksum(packet, 0, headerLength), 10);
  payload.copy(packet, headerLength);
  return packet;
}

/** An ICMP echo request as an IP payload, checksummed. */
export function icmpEcho(type = 8, body = Buffer.from('ping')): Buffer {
  const icmp = Buffer.alloc(8 + body.length);
  icmp[0] = type;
  icmp.writeUInt16BE(0x42, 4);
  body.copy(icmp, 8);
  icmp.writeUInt16BE(internetChecksum(icmp, 0, icmp.length), 2);
  return icmp;
}
