// Datagrams for fuzzing a node's overlay port, and a naive reference of what
// the receiving daemon must do with each one, written from the rules in
// daemon/dataplane/receive.ts's header rather than from its code:
//   1. the sender must be a known peer's endpoint;
//   2. the payload must be a well-formed IPv4 packet (version 4, a header of
//      at least 20 bytes, a total length covering the header and within the
//      datagram; bytes past the total length are padding); the node under
//      test is IPv4-only, so an IPv6 payload is dropped as ipv6-disabled;
//   3. the inner source must lie in the sender's subnet, the inner
//      destination in ours, and not be our subnet's broadcast address.
// Everything here is deterministic given the seed, so a failing run can be
// replayed.
import { internetChecksum } from '../../daemon/dataplane/ipv4-packet.js';
import { parseCidr, parseIPv4 } from '../../daemon/net/ipv4.js';
import { ipv4Packet } from './packets.js';

/** What the daemon must do with a datagram: deliver it to the TUN, or drop it for this ingress reason. */
export type Verdict = 'delivered' | 'unknown-sender' | 'not-ipv4' | 'ipv6-disabled' | 'truncated' | 'bad-header-length' | 'bad-total-length' | 'spoofed-source' | 'wrong-destination';

export interface FuzzTarget {
  /** The sending peer's subnet as the target daemon knows it, e.g. 10.244.3.0/24. */
  peerSubnet: string;
  /** The target node's subnet, e.g. 10.244.1.0/24. */
  localSubnet: string;
  /** A pod on the target node, and a UDP port it listens on. */
  podIp: string;
  podPort: number;
  /** Whether the target knows the sending endpoint as a peer's. */
  known: boolean;
  /** Host numbers in the peer subnet that the valid (pod-reaching) datagrams come from, e.g. [100, 199]. */
  validHosts: [number, number];
}

export interface Subnet {
  network: number;
  mask: number;
}

function subnet(cidr: string): Subnet {
  const { network, prefixLength } = parseCidr(cidr);
  return { network, mask: prefixLength === 0 ? 0 : (0xffffffff << (32 - prefixLength)) >>> 0 };
}

const inSubnet = (address: number, s: Subnet) => ((address & s.mask) >>> 0) === s.network;
const isBroadcastOf = (address: number, s: Subnet) => (address | s.mask) >>> 0 === 0xffffffff;

/** The reference: what the daemon must do with this datagram from this sender. */
export function referenceVerdict(d: Buffer, known: boolean, peer: Subnet, local: Subnet): Verdict {
  if (!known) return 'unknown-sender';
  if (d.length === 0) return 'truncated';
  if (d[0]! >> 4 === 6) return 'ipv6-disabled';
  if (d[0]! >> 4 !== 4) return 'not-ipv4';
  if (d.length < 20) return 'truncated';
  const headerBytes = (d[0]! & 0x0f) * 4;
  if (headerBytes < 20) return 'bad-header-length';
  const total = d.readUInt16BE(2);
  if (total < headerBytes) return 'bad-total-length';
  if (total > d.length) return 'truncated';
  if (!inSubnet(d.readUInt32BE(12), peer)) return 'spoofed-source';
  const destination = d.readUInt32BE(16);
  if (!inSubnet(destination, local) || isBroadcastOf(destination, local)) return 'wrong-destination';
  return 'delivered';
}

/** A small, fast, seedable generator (mulberry32). */
export class Rng {
  private state: number;
  constructor(seed: number) {
    this.state = seed >>> 0;
  }
  next(): number {
    let t = (this.state = (this.state + 0x6d2b79f5) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  }
  /** An integer in [lo, hi]. */
  int(lo: number, hi: number): number {
    return lo + (this.next() % (hi - lo + 1));
  }
  pick<T>(items: readonly T[]): T {
    return items[this.next() % items.length]!;
  }
  fill(buf: Buffer): Buffer {
    let i = 0;
    for (; i + 4 <= buf.length; i += 4) buf.writeUInt32LE(this.next(), i);
    for (; i < buf.length; i++) buf[i] = this.next() & 0xff;
    return buf;
  }
}

/** One generated item: one datagram, or two for a fragmented packet. */
export interface Item {
  category: Category;
  datagrams: Buffer[];
  /** The marker the pod's UDP listener prints if this item must reach it. */
  podMarker?: string;
  /** `<source>/<ip id>` of each packet of this item that must reach the pod. */
  podKey?: string;
}

export const categories = [
  'random',
  'random-ipv4',
  'short',
  'ipv6',
  'other-version',
  'ihl-below-5',
  'total-below-header',
  'total-beyond-datagram',
  'header-beyond-datagram',
  'spoofed-source',
  'wrong-destination',
  'fragment-spoofed-source',
  'fragment-wrong-destination',
  'fragment-truncated',
  'valid',
  'valid-padded',
  'valid-options',
  'fragmented',
  'bad-checksum',
] as const;
export type Category = (typeof categories)[number];

/** What each crafted category must come to from a known peer; random ones are judged by the reference alone. */
export const intended: Record<Category, Verdict | undefined> = {
  random: undefined,
  'random-ipv4': undefined,
  short: 'truncated',
  ipv6: 'ipv6-disabled',
  'other-version': 'not-ipv4',
  'ihl-below-5': 'bad-header-length',
  'total-below-header': 'bad-total-length',
  'total-beyond-datagram': 'truncated',
  'header-beyond-datagram': 'truncated',
  'spoofed-source': 'spoofed-source',
  'wrong-destination': 'wrong-destination',
  'fragment-spoofed-source': 'spoofed-source',
  'fragment-wrong-destination': 'wrong-destination',
  'fragment-truncated': 'truncated',
  valid: 'delivered',
  'valid-padded': 'delivered',
  'valid-options': 'delivered',
  fragmented: 'delivered',
  // The daemon leaves checksums to the kernel, which drops the packet on the node.
  'bad-checksum': 'delivered',
};

/** Categories whose delivered packets the pod must see. */
const reachesPod = new Set<Category>(['valid', 'valid-padded', 'valid-options', 'fragmented']);

const fmt = (address: number) => `${address >>> 24}.${(address >>> 16) & 255}.${(address >>> 8) & 255}.${address & 255}`;

export class DatagramFactory {
  private readonly rng: Rng;
  private readonly pool: Buffer;
  readonly peer: Subnet;
  readonly local: Subnet;
  private readonly pod: number;
  /** Another node's subnet: neither the sender's nor ours. */
  private readonly otherNode: number;
  private sequence = 0;
  private ipId = 0;

  constructor(
    seed: number,
    private readonly target: FuzzTarget,
  ) {
    this.rng = new Rng(seed);
    this.pool = this.rng.fill(Buffer.alloc(1 << 20));
    this.peer = subnet(target.peerSubnet);
    this.local = subnet(target.localSubnet);
    this.pod = parseIPv4(target.podIp);
    let other = parseIPv4('10.244.1.0');
    while (other === this.local.network || other === this.peer.network) other += 256;
    this.otherNode = other;
  }

  verdict(d: Buffer): Verdict {
    return referenceVerdict(d, this.target.known, this.peer, this.local);
  }

  private randomBytes(length: number): Buffer {
    const at = this.rng.int(0, this.pool.length - length);
    return Buffer.from(this.pool.subarray(at, at + length));
  }

  private randomLength(): number {
    const r = this.rng.next() % 10;
    // Never empty: the native sender skips empty datagrams, so the sender sends those on their own.
    return r < 5 ? this.rng.int(1, 64) : r < 8 ? this.rng.int(64, 600) : this.rng.int(600, 1472);
  }

  /** A host of a subnet other than the peer's or ours, or an address from outside the cluster. */
  private foreignAddress(): number {
    const choices = [
      () => (this.local.network + this.rng.int(1, 254)) >>> 0, // ours (a spoofed source)
      () => (this.otherNode + this.rng.int(1, 254)) >>> 0, // another node's
      () => (parseIPv4('10.244.77.0') + this.rng.int(1, 254)) >>> 0, // nobody's
      () => parseIPv4('8.8.8.8'),
      () => parseIPv4('127.0.0.1'),
      () => parseIPv4('0.0.0.0'),
      () => parseIPv4('255.255.255.255'),
      () => parseIPv4('224.0.0.1'),
      () => parseIPv4('198.18.0.1'),
    ];
    return this.rng.pick(choices)();
  }

  private wrongDestination(): number {
    const choices = [
      () => (this.peer.network + this.rng.int(1, 254)) >>> 0, // back to the sender's own subnet
      () => (this.otherNode + this.rng.int(1, 254)) >>> 0,
      () => (parseIPv4('10.244.77.0') + this.rng.int(1, 254)) >>> 0,
      () => (this.local.network | ~this.local.mask) >>> 0, // our subnet's broadcast
      () => parseIPv4('10.244.255.255'),
      () => parseIPv4('8.8.8.8'),
      () => parseIPv4('127.0.0.1'),
      () => parseIPv4('0.0.0.0'),
      () => parseIPv4('255.255.255.255'),
      () => parseIPv4('224.0.0.1'),
      () => parseIPv4('239.1.2.3'),
      () => parseIPv4('198.18.0.1'),
    ];
    return this.rng.pick(choices)();
  }

  private peerHost(range: [number, number]): number {
    return (this.peer.network + this.rng.int(range[0], range[1])) >>> 0;
  }

  /** Sources for packets that must not reach the pod but pass the source check: outside the valid range. */
  private otherPeerHost(): number {
    const [lo, hi] = this.target.validHosts;
    for (;;) {
      const host = this.rng.int(1, 254);
      if (host < lo || host > hi) return (this.peer.network + host) >>> 0;
    }
  }

  private udp(payload: Buffer): Buffer {
    const udp = Buffer.alloc(8 + payload.length);
    udp.writeUInt16BE(this.rng.int(1024, 65535), 0);
    udp.writeUInt16BE(this.target.podPort, 2);
    udp.writeUInt16BE(udp.length, 4); // checksum 0: none, as IPv4 allows
    payload.copy(udp, 8);
    return udp;
  }

  private packet(source: number, destination: number, payload: Buffer, extra: { options?: Buffer; fragmentField?: number; id?: number } = {}): Buffer {
    const packet = ipv4Packet({ source: fmt(source), destination: fmt(destination), payload, options: extra.options });
    packet.writeUInt16BE(extra.id ?? this.rng.int(0, 0xffff), 4);
    packet.writeUInt16BE(extra.fragmentField ?? 0, 6);
    return rechecksum(packet);
  }

  private marked(): { marker: string; payload: Buffer } {
    const marker = `m${this.sequence++}`;
    return { marker, payload: Buffer.from(`${marker}:${'.'.repeat(this.rng.int(0, 120))}`) };
  }

  /** A packet the pod must receive: from the valid source range, with an IP id unique among them. */
  private podBound(): { source: number; id: number; key: string; marker: string; payload: Buffer } {
    const source = this.peerHost(this.target.validHosts);
    const id = this.ipId++ & 0xffff;
    return { source, id, key: `${fmt(source)}/${id}`, ...this.marked() };
  }

  private anyPacket(source: number, destination: number): Buffer {
    return this.packet(source, destination, this.udp(this.randomBytes(this.rng.int(0, 200))));
  }

  make(category: Category): Item {
    const r = this.rng;
    const one = (d: Buffer): Item => ({ category, datagrams: [d] });
    switch (category) {
      case 'random': {
        const d = this.randomBytes(this.randomLength());
        // Random bytes that happen to pass every check would be delivered with random contents; keep them out.
        if (d.length >= 20 && this.verdict(d) === 'delivered') d.writeUInt32BE(0, 12);
        return one(d);
      }
      case 'random-ipv4': {
        const headerWords = r.int(0, 15);
        const d = this.randomBytes(Math.max(1, r.int(0, 1) ? headerWords * 4 + r.int(0, 100) : r.int(1, 80)));
        d[0] = 0x40 | headerWords;
        if (d.length >= 4) {
          const total = [d.length, r.int(0, d.length + 100), r.int(0, 0xffff)][r.int(0, 2)]!;
          d.writeUInt16BE(total, 2);
        }
        if (d.length >= 16 && r.int(0, 1)) d.writeUInt32BE(this.otherPeerHost(), 12);
        if (d.length >= 20 && r.int(0, 1)) d.writeUInt32BE((this.local.network + r.int(0, 255)) >>> 0, 16);
        if (this.verdict(d) === 'delivered') d.writeUInt32BE(0, 12);
        return one(d);
      }
      case 'short': {
        const d = this.randomBytes(r.int(1, 19));
        d[0] = 0x45;
        return one(d);
      }
      case 'ipv6': {
        const payload = this.udp(this.randomBytes(r.int(0, 100)));
        const d = Buffer.alloc(40 + payload.length);
        d.writeUInt32BE(0x60000000, 0);
        d.writeUInt16BE(payload.length, 4);
        d[6] = 17;
        d[7] = 64;
        // From fd00::<peer host> to the pod's IPv4-mapped address.
        d.writeUInt16BE(0xfd00, 8);
        d.writeUInt32BE(this.otherPeerHost(), 20);
        d.writeUInt16BE(0xffff, 34);
        d.writeUInt32BE(this.pod, 36);
        payload.copy(d, 40);
        return one(d);
      }
      case 'other-version': {
        const d = this.anyPacket(this.otherPeerHost(), this.pod);
        d[0] = (r.pick([0, 1, 2, 3, 5, 7, 8, 9, 10, 11, 12, 13, 14, 15]) << 4) | (d[0]! & 0x0f);
        return one(d);
      }
      case 'ihl-below-5': {
        const d = this.anyPacket(this.otherPeerHost(), this.pod);
        d[0] = 0x40 | r.int(0, 4);
        return one(d);
      }
      case 'total-below-header': {
        const words = r.int(5, 15);
        const d = this.anyPacket(this.otherPeerHost(), this.pod);
        const padded = Buffer.concat([d, Buffer.alloc(Math.max(0, words * 4 - d.length))]);
        padded[0] = 0x40 | words;
        padded.writeUInt16BE(r.int(0, words * 4 - 1), 2);
        return one(padded);
      }
      case 'total-beyond-datagram': {
        const d = this.anyPacket(this.otherPeerHost(), this.pod);
        if (r.int(0, 1)) {
          d.writeUInt16BE(r.int(d.length + 1, 0xffff), 2);
          return one(rechecksum(d));
        }
        return one(d.subarray(0, r.int(20, d.length - 1))); // the datagram cut short
      }
      case 'header-beyond-datagram': {
        const d = this.anyPacket(this.otherPeerHost(), this.pod).subarray(0, 20);
        const cut = Buffer.concat([d, this.randomBytes(r.int(0, 39))]);
        cut[0] = 0x4f;
        cut.writeUInt16BE(60, 2);
        return one(cut);
      }
      case 'spoofed-source':
        return one(this.anyPacket(this.foreignAddress(), this.pod));
      case 'wrong-destination':
        return one(this.anyPacket(this.otherPeerHost(), this.wrongDestination()));
      case 'fragment-spoofed-source':
      case 'fragment-wrong-destination':
      case 'fragment-truncated': {
        const [source, destination] =
          category === 'fragment-spoofed-source' ? [this.foreignAddress(), this.pod] : category === 'fragment-wrong-destination' ? [this.otherPeerHost(), this.wrongDestination()] : [this.otherPeerHost(), this.pod];
        const more = r.int(0, 1) ? 0x2000 : 0;
        const d = this.packet(source, destination, this.randomBytes(8 * r.int(1, 20)), { fragmentField: more | r.int(more ? 0 : 1, 200) });
        return one(category === 'fragment-truncated' ? d.subarray(0, r.int(20, d.length - 1)) : d);
      }
      case 'valid':
      case 'valid-padded':
      case 'valid-options': {
        const p = this.podBound();
        const options = category === 'valid-options' ? Buffer.alloc(4 * r.int(1, 10), 0x01) : undefined; // NOPs
        let d = this.packet(p.source, this.pod, this.udp(p.payload), { id: p.id, options });
        if (category === 'valid-padded') d = Buffer.concat([d, this.randomBytes(r.int(1, 100))]);
        return { category, datagrams: [d], podMarker: p.marker, podKey: p.key };
      }
      case 'fragmented': {
        // One UDP datagram in two fragments, in either order; the pod reassembles it.
        const p = this.podBound();
        const udp = this.udp(Buffer.concat([p.payload, Buffer.alloc(Math.max(0, 24 - p.payload.length), 0x2e)]));
        const split = 8 * r.int(1, Math.floor((udp.length - 1) / 8));
        const first = this.packet(p.source, this.pod, udp.subarray(0, split), { id: p.id, fragmentField: 0x2000 });
        const second = this.packet(p.source, this.pod, udp.subarray(split), { id: p.id, fragmentField: split / 8 });
        const datagrams = r.int(0, 1) ? [first, second] : [second, first];
        return { category, datagrams, podMarker: p.marker, podKey: p.key };
      }
      case 'bad-checksum': {
        const d = this.anyPacket(this.otherPeerHost(), this.pod);
        d.writeUInt16BE(d.readUInt16BE(10) ^ (1 << r.int(0, 15)), 10);
        return one(d);
      }
    }
  }

  /** Makes an item and checks it against the reference: a crafted category that misses its verdict is a bug here. */
  checked(category: Category): Item {
    const item = this.make(category);
    const want = this.target.known ? intended[category] : 'unknown-sender';
    if (want !== undefined) {
      for (const d of item.datagrams) {
        const got = this.verdict(d);
        if (got !== want) throw new Error(`generator bug: a '${category}' datagram is '${got}', not '${want}': ${d.toString('hex')}`);
      }
    }
    if (!this.target.known || !reachesPod.has(category)) {
      delete item.podMarker;
      delete item.podKey;
    }
    return item;
  }
}

/** Recomputes the header checksum after fields were changed (a no-op on headers too short or too odd to have one). */
function rechecksum(packet: Buffer): Buffer {
  const headerBytes = (packet[0]! & 0x0f) * 4;
  if (headerBytes < 20 || headerBytes > packet.length) return packet;
  packet.writeUInt16BE(0, 10);
  packet.writeUInt16BE(internetChecksum(packet, 0, headerBytes), 10);
  return packet;
}

/**
 * A deterministic mix: `counts[category]` items of each, shuffled so that
 * valid packets are spread through the run.
 */
export function* fuzzItems(factory: DatagramFactory, counts: Partial<Record<Category, number>>, seed: number): Generator<Item> {
  const order: Category[] = [];
  for (const category of categories) for (let i = 0; i < (counts[category] ?? 0); i++) order.push(category);
  const rng = new Rng(seed ^ 0x5eed);
  for (let i = order.length - 1; i > 0; i--) {
    const j = rng.next() % (i + 1);
    [order[i], order[j]] = [order[j]!, order[i]!];
  }
  for (const category of order) yield factory.checked(category);
}
