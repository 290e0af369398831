/**
 * An underlay in memory, for tests and the encap benchmark: no sockets, no
 * root (model: wireguard-go's bindtest.ChannelBind). Transports opened on
 * one MemoryNetwork reach each other by endpoint, so two data planes can be
 * cross-wired in one process.
 *
 * Sending works as the batched transport's does: send() notes where the
 * datagram is, flush() delivers the queue. Delivery is synchronous and
 * without a copy: the receiver's reader runs inside the sender's flush()
 * and reads the sender's bytes in place, while the sender still leaves them
 * alone. A zero-length slot is dropped and reported by flush(), not sent.
 *
 * A transport bound to an IPv6 address is an IPv6 underlay: it reaches
 * only IPv6 endpoints and its batches carry sourceIps6, as the sockets'.
 */
import { formatIPv4 } from '../net/ipv4.js';
import { formatIPv6, type IPv6Address } from '../net/ipv6.js';
import type { DatagramBatch, Endpoint, PacketTransport } from './index.js';
import { QueuedSends } from './send-queue.js';

/** Where a transport is bound: an endpoint without the address text. Exactly one of ip and ip6. */
export type MemoryAddress = { readonly ip: number; readonly ip6?: undefined; readonly port: number } | { readonly ip?: undefined; readonly ip6: IPv6Address; readonly port: number };

export interface MemoryTransportOptions {
  /** Datagrams one received batch holds at most; default 256. */
  batchCapacity?: number;
}

const defaults = {
  batchCapacity: 256,
  /** Datagrams queued before send() delivers them itself, as the batched transport's sendmmsg batch. */
  sendBatch: 256,
} as const;

/**
 * The binding key of the destination of entry i of a send queue (`words`
 * address words per entry): a number for IPv4, text for IPv6, whose 128 bits
 * no number holds. The memory network is for tests, so a string per run is fine.
 */
function keyAt(ips: Uint32Array, ports: Uint16Array, words: number, i: number): number | string {
  if (words === 1) return ips[i]! * 65536 + ports[i]!;
  return `${ips[4 * i]},${ips[4 * i + 1]},${ips[4 * i + 2]},${ips[4 * i + 3]},${ports[i]}`;
}

function keyOf(address: MemoryAddress): number | string {
  const ips = address.ip6 === undefined ? Uint32Array.of(address.ip) : Uint32Array.from(address.ip6);
  return keyAt(ips, Uint16Array.of(address.port), ips.length, 0);
}

function describe(address: MemoryAddress): string {
  return address.ip6 === undefined ? `${formatIPv4(address.ip)}:${address.port}` : `[${formatIPv6(address.ip6)}]:${address.port}`;
}

/** True if entries i and j of a send queue go to the same address and port. */
function sameDestination(ips: Uint32Array, ports: Uint16Array, words: number, i: number, j: number): boolean {
  if (ports[i] !== ports[j]) return false;
  for (let w = 0; w < words; w++) if (ips[words * i + w] !== ips[words * j + w]) return false;
  return true;
}

export class MemoryNetwork {
  /** Datagrams sent to an endpoint nothing is bound to: lost, as UDP loses them. */
  lost = 0;
  private readonly bound = new Map<number | string, MemoryTransport>();

  /** Binds a transport to `address`; throws if it is taken. */
  open(address: MemoryAddress, options: MemoryTransportOptions = {}): MemoryTransport {
    const key = keyOf(address);
    if (this.bound.has(key)) throw new Error(`endpoint ${describe(address)} is already bound on this memory network`);
    const transport = new MemoryTransport(this, address, options.batchCapacity ?? defaults.batchCapacity);
    this.bound.set(key, transport);
    return transport;
  }

  /** @internal The transport bound to the destination of entry i of a send queue, if any. */
  at(ips: Uint32Array, ports: Uint16Array, words: number, i: number): MemoryTransport | undefined {
    return this.bound.get(keyAt(ips, ports, words, i));
  }

  /** @internal */
  unbind(transport: MemoryTransport): void {
    const key = keyOf(transport.address);
    if (this.bound.get(key) === transport) this.bound.delete(key);
  }
}

export class MemoryTransport extends QueuedSends implements PacketTransport {
  /** The IPv4 address bound; 0 on an IPv6 transport. */
  readonly ip: number;
  /** The IPv6 address bound, on an IPv6 transport. */
  readonly ip6: IPv6Address | undefined;
  readonly port: number;
  /** While true, send() drops datagrams at once, as the node:dgram transport does when its queue is long. */
  congested = false;
  /** The next this many datagrams queued are refused at flush(), as by a full socket buffer. */
  refuseSends = 0;
  /** Datagrams receive() was handed beyond the batch capacity: counted, never handed on. */
  segmentsOverflowed = 0;
  private readonly received: DatagramBatch & { buffer: Buffer; count: number };
  private onBatch: ((batch: DatagramBatch) => void) | undefined;
  private closed = false;

  /** Use MemoryNetwork.open(). */
  constructor(
    private readonly network: MemoryNetwork,
    readonly address: MemoryAddress,
    batchCapacity: number,
  ) {
    super(defaults.sendBatch, address.ip6 === undefined ? 4 : 6);
    this.ip = address.ip ?? 0;
    this.ip6 = address.ip6;
    this.port = address.port;
    this.received = {
      buffer: Buffer.alloc(0),
      offsets: new Uint32Array(batchCapacity),
      lengths: new Uint32Array(batchCapacity),
      sourceIps: new Uint32Array(address.ip6 === undefined ? batchCapacity : 0),
      ...(address.ip6 === undefined ? {} : { sourceIps6: new Uint32Array(4 * batchCapacity) }),
      sourcePorts: new Uint16Array(batchCapacity),
      count: 0,
    };
  }

  get batchCapacity(): number {
    return this.received.offsets.length;
  }

  start(onBatch: (batch: DatagramBatch) => void, _onError: (err: Error) => void): void {
    if (this.onBatch) throw new Error(`memory transport on port ${this.port} is already started`);
    this.onBatch = onBatch;
  }

  /**
   * Hands a batch to the reader as one wake-up, as if the network had
   * delivered it: for tests that play any number of senders, and for the
   * benchmark, which replays one batch without copying it. A wake-up that
   * brings more than the batch capacity is handed on as far as it fits and
   * the rest counted in segmentsOverflowed, as the native socket does with
   * a read whose GRO messages hold more datagrams than it has room for.
   */
  receive(batch: DatagramBatch): void {
    if (this.closed || this.onBatch === undefined) return;
    const room = this.batchCapacity;
    if (batch.count > room) {
      this.segmentsOverflowed += batch.count - room;
      batch = { ...batch, count: room };
    }
    if (batch.count > 0) this.onBatch(batch);
  }

  override send(buffer: Buffer, offset: number, length: number, to: Endpoint): boolean {
    if (this.closed) throw new Error(`memory transport on port ${this.port} is closed`);
    if (this.congested) return false;
    return super.send(buffer, offset, length, to);
  }

  close(): Promise<void> {
    this.closed = true;
    this.onBatch = undefined;
    this.network.unbind(this);
    return Promise.resolve();
  }

  /** Delivers the queue in order, one receiver batch per run of datagrams to the same endpoint; returns how many were accepted. */
  protected handOn(buffer: Buffer, offsets: Uint32Array, lengths: Uint32Array, ips: Uint32Array, ports: Uint16Array, count: number): number {
    const words = this.family === 6 ? 4 : 1;
    let accepted = 0;
    let receiver: MemoryTransport | undefined;
    /** An entry going where the current run goes, or -1 before the first. */
    let run = -1;
    for (let i = 0; i < count; i++) {
      const length = lengths[i]!;
      if (length === 0) continue;
      if (this.refuseSends > 0) {
        this.refuseSends--;
        continue;
      }
      accepted++;
      if (run < 0 || !sameDestination(ips, ports, words, run, i)) {
        receiver?.deliverReceived();
        run = i;
        receiver = this.network.at(ips, ports, words, i);
      }
      if (receiver === undefined) {
        this.network.lost++;
        continue;
      }
      receiver.take(buffer, offsets[i]!, length, this);
    }
    receiver?.deliverReceived();
    return accepted;
  }

  /** Adds a datagram to the batch being received; a full batch is delivered at once. */
  private take(buffer: Buffer, offset: number, length: number, from: MemoryTransport): void {
    const batch = this.received;
    if (batch.count > 0 && batch.buffer !== buffer) this.deliverReceived();
    batch.buffer = buffer;
    const i = batch.count++;
    batch.offsets[i] = offset;
    batch.lengths[i] = length;
    // A sender of the other family reaches no one here: its destinations never match this transport's key.
    if (batch.sourceIps6 === undefined) {
      batch.sourceIps[i] = from.ip;
    } else {
      batch.sourceIps6.set(from.ip6!, 4 * i);
    }
    batch.sourcePorts[i] = from.port;
    if (batch.count === batch.offsets.length) this.deliverReceived();
  }

  private deliverReceived(): void {
    const batch = this.received;
    if (batch.count === 0) return;
    try {
      if (!this.closed) this.onBatch?.(batch);
    } finally {
      batch.count = 0;
    }
  }
}
