/**
 * The data plane: a TUN device and a packet transport, joined by the peer
 * table. It knows nothing of leases or Redis; the daemon's wiring feeds it
 * peers with setPeer() and removePeer() (or a fixed list with setPeers()).
 */
import type { Logger } from 'pino';
import type { TunDevice } from '../tun/index.js';
import type { DatagramBatch, PacketTransport } from '../transport/index.js';
import { formatCidr, type Cidr } from '../net/ipv4.js';
import { Counters, type CountersSnapshot } from './counters.js';
import { CODE_FRAGMENTATION_NEEDED, CODE_NET_UNREACHABLE, ICMP_ERROR_MAX, RateLimiter, mayAnswerWithError, writeDestinationUnreachable } from './icmp.js';
import { dontFragment, totalLength } from './ipv4-packet.js';
import type { PacketBatch } from './packet-batch.js';
import { PeerTable, type Peer } from './peer-table.js';
import { routeEgress } from './send.js';
import { checkFromPeer } from './receive.js';
import { OPEN_REPLAYED, SEAL_HEADER_BYTES, SEAL_OVERHEAD, type Sealer } from './sealing.js';

export interface DataPlaneOptions {
  tun: TunDevice;
  transport: PacketTransport;
  /** This node's subnet: the only destinations ingress delivers to. */
  localSubnet: Cidr;
  /** This node's overlay address (the TUN's), the source of ICMP errors. */
  overlayAddress: number;
  /** Largest IP packet that fits one UDP datagram on the underlay: underlay MTU - 28. */
  maxPacket: number;
  logger: Logger;
  /** ICMP errors written back into the TUN per second at most. */
  icmpRatePerSecond?: number;
  /** Authenticated encapsulation; without it datagrams are bare packets (flannel's format). maxPacket must leave room for SEAL_OVERHEAD. */
  sealer?: Sealer;
}

const defaults = {
  icmpRatePerSecond: 100,
  icmpBurst: 64,
} as const;

/** A reusable batch over some other batch's buffer, for writing a subset of it. */
class WriteBatch implements PacketBatch {
  buffer: Buffer;
  readonly offsets: Uint32Array;
  readonly lengths: Uint32Array;
  count = 0;

  constructor(capacity: number, buffer: Buffer = Buffer.alloc(0)) {
    this.buffer = buffer;
    this.offsets = new Uint32Array(capacity);
    this.lengths = new Uint32Array(capacity);
  }

  push(offset: number, length: number): void {
    this.offsets[this.count] = offset;
    this.lengths[this.count] = length;
    this.count++;
  }
}

export class DataPlane {
  private readonly counters = new Counters();
  private peers: PeerTable;
  private readonly icmpLimiter: RateLimiter;
  private readonly icmpReplies: WriteBatch;
  private readonly deliveries: WriteBatch;
  /** Sealed datagrams of one TUN batch, one slot each; the transport may hold them until flush(). */
  private readonly sealed: Buffer;
  private readonly log: Logger;

  constructor(private readonly options: DataPlaneOptions) {
    this.peers = new PeerTable(options.localSubnet.prefixLength);
    this.icmpLimiter = new RateLimiter(options.icmpRatePerSecond ?? defaults.icmpRatePerSecond, defaults.icmpBurst);
    const egressBatch = options.tun.batchCapacity;
    this.icmpReplies = new WriteBatch(egressBatch, Buffer.alloc(egressBatch * ICMP_ERROR_MAX));
    this.deliveries = new WriteBatch(options.transport.batchCapacity);
    this.sealed = Buffer.alloc(options.sealer ? egressBatch * (options.maxPacket + SEAL_OVERHEAD) : 0);
    this.log = options.logger.child({ component: 'dataplane' });
  }

  /** Replaces the whole peer table at once (static mode); the next batch sees the new one. */
  setPeers(peers: Iterable<Peer>): void {
    const next = new PeerTable(this.options.localSubnet.prefixLength, peers);
    this.log.info({ peers: [...next.peers()].map((p) => `${formatCidr(p.subnet)}=${p.endpoint.address}:${p.endpoint.port}`) }, 'peer table replaced');
    this.peers = next;
  }

  /** Adds a peer, or moves its subnet to a new endpoint. O(1): the next batch sees it. */
  setPeer(peer: Peer): void {
    this.peers.set(peer);
  }

  /** Removes the peer on `subnet`; false if there was none. */
  removePeer(subnet: Cidr): boolean {
    return this.peers.delete(subnet);
  }

  get peerTable(): PeerTable {
    return this.peers;
  }

  start(onFatal: (err: Error) => void): void {
    const { tun, transport } = this.options;
    tun.start((batch) => this.forwardFromTun(batch), onFatal);
    transport.start((batch) => this.deliverToTun(batch), onFatal);
    this.log.info({ tun: tun.name, port: transport.port, subnet: formatCidr(this.options.localSubnet) }, 'data plane started');
  }

  async stop(): Promise<void> {
    this.options.tun.close();
    await this.options.transport.close();
    this.log.info({ counters: this.snapshot() }, 'data plane stopped');
  }

  snapshot(): CountersSnapshot {
    const snapshot = this.counters.snapshot();
    snapshot.udpSendErrors = this.options.transport.sendErrors;
    return snapshot;
  }

  private forwardFromTun(batch: PacketBatch): void {
    const { transport, maxPacket, sealer } = this.options;
    const { buffer, offsets, lengths, count } = batch;
    const counters = this.counters;
    const peers = this.peers;
    const slot = maxPacket + SEAL_OVERHEAD;
    counters.tunPacketsRead += count;
    for (let i = 0; i < count; i++) {
      const offset = offsets[i]!;
      const verdict = routeEgress(buffer, offset, lengths[i]!, peers, maxPacket);
      if (typeof verdict !== 'string') {
        let datagram = buffer;
        let at = offset;
        let length = totalLength(buffer, offset);
        if (sealer) {
          datagram = this.sealed;
          at = i * slot;
          length = sealer.seal(buffer, offset, length, datagram, at);
        }
        if (transport.send(datagram, at, length, verdict.endpoint)) {
          counters.udpPacketsSent++;
          counters.udpBytesSent += length;
        } else {
          counters.egressDrops['send-queue-full']++;
        }
        continue;
      }
      counters.egressDrops[verdict]++;
      if (verdict === 'no-route') {
        this.answerWithError(buffer, offset, CODE_NET_UNREACHABLE, 0);
      } else if (verdict === 'too-big' && dontFragment(buffer, offset)) {
        this.answerWithError(buffer, offset, CODE_FRAGMENTATION_NEEDED, maxPacket);
      }
    }
    const refused = transport.flush();
    counters.udpPacketsSent -= refused;
    counters.egressDrops['send-queue-full'] += refused;
    this.flushIcmpReplies();
  }

  private answerWithError(buffer: Buffer, offset: number, code: number, nextHopMtu: number): void {
    if (!mayAnswerWithError(buffer, offset) || !this.icmpLimiter.tryTake()) return;
    const replies = this.icmpReplies;
    const at = replies.count * ICMP_ERROR_MAX;
    const length = writeDestinationUnreachable(replies.buffer, at, buffer, offset, code, this.options.overlayAddress, nextHopMtu);
    replies.push(at, length);
  }

  private flushIcmpReplies(): void {
    if (this.icmpReplies.count === 0) return;
    this.counters.icmpErrorsSent += this.options.tun.write(this.icmpReplies);
    this.icmpReplies.count = 0;
  }

  private deliverToTun(batch: DatagramBatch): void {
    const { localSubnet, tun, sealer } = this.options;
    const { buffer, offsets, lengths, sourceIps, sourcePorts, count } = batch;
    const counters = this.counters;
    const peers = this.peers;
    const deliveries = this.deliveries;
    deliveries.buffer = buffer;
    deliveries.count = 0;
    counters.udpPacketsReceived += count;
    for (let i = 0; i < count; i++) {
      let offset = offsets[i]!;
      let length = lengths[i]!;
      // Strangers are turned away before any parsing or crypto is spent on them.
      const peer = peers.fromEndpoint(sourceIps[i]!, sourcePorts[i]!);
      if (peer === undefined) {
        counters.ingressDrops['unknown-sender']++;
        continue;
      }
      if (sealer) {
        const opened = sealer.open(buffer, offset, length, sourceIps[i]!);
        if (opened < 0) {
          counters.ingressDrops[opened === OPEN_REPLAYED ? 'replayed' : 'unauthenticated']++;
          continue;
        }
        offset += SEAL_HEADER_BYTES;
        length = opened;
      }
      const reason = checkFromPeer(buffer, offset, length, peer, localSubnet);
      if (reason === null) {
        deliveries.push(offset, totalLength(buffer, offset));
      } else {
        counters.ingressDrops[reason]++;
      }
    }
    if (deliveries.count === 0) return;
    const written = tun.write(deliveries);
    counters.tunPacketsWritten += written;
    counters.ingressDrops['tun-write-failed'] += deliveries.count - written;
    // Bytes are counted for the batch as a whole; a failed write is rare enough not to track per packet.
    for (let i = 0; i < deliveries.count; i++) counters.tunBytesWritten += deliveries.lengths[i]!;
  }
}
