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
 */
import type { DatagramBatch, Endpoint, PacketTransport } from './index.js';
import { QueuedSends } from './send-queue.js';

/** Where a transport is bound: an endpoint without the dotted quad. */
export interface MemoryAddress {
  readonly ip: number;
  readonly port: number;
}

export interface MemoryTransportOptions {
  /** Datagrams one received batch holds at most; default 256. */
  batchCapacity?: number;
}

const defaults = {
  batchCapacity: 256,
  /** Datagrams queued before send() delivers them itself, as the batched transport's sendmmsg batch. */
  sendBatch: 256,
} as const;

const keyOf = (ip: number, port: number) => ip * 65536 + port;

export class MemoryNetwork {
  /** Datagrams sent to an endpoint nothing is bound to: lost, as UDP loses them. */
  lost = 0;
  private readonly bound = new Map<number, MemoryTransport>();

  /** Binds a transport to `address`; throws if it is taken. */
  open(address: MemoryAddress, options: MemoryTransportOptions = {}): MemoryTransport {
    const key = keyOf(address.ip, address.port);
    if (this.bound.has(key)) throw new Error(`endpoint ${address.ip >>> 0}:${address.port} is already bound on this memory network`);
    const transport = new MemoryTransport(this, address, options.batchCapacity ?? defaults.batchCapacity);
    this.bound.set(key, transport);
    return transport;
  }

  /** @internal The transport bound to ip:port, if any. */
  at(ip: number, port: number): MemoryTransport | undefined {
    return this.bound.get(keyOf(ip, port));
  }

  /** @internal */
  unbind(transport: MemoryTransport): void {
    const key = keyOf(transport.ip, transport.port);
    if (this.bound.get(key) === transport) this.bound.delete(key);
  }
}

export class MemoryTransport extends QueuedSends implements PacketTransport {
  readonly ip: number;
  readonly port: number;
  /** While true, send() drops datagrams at once, as the node:dgram transport does when its queue is long. */
  congested = false;
  /** The next this many datagrams queued are refused at flush(), as by a full socket buffer. */
  refuseSends = 0;
  private readonly received: DatagramBatch & { buffer: Buffer; count: number };
  private onBatch: ((batch: DatagramBatch) => void) | undefined;
  private closed = false;

  /** Use MemoryNetwork.open(). */
  constructor(
    private readonly network: MemoryNetwork,
    address: MemoryAddress,
    batchCapacity: number,
  ) {
    super(defaults.sendBatch);
    this.ip = address.ip;
    this.port = address.port;
    this.received = {
      buffer: Buffer.alloc(0),
      offsets: new Uint32Array(batchCapacity),
      lengths: new Uint32Array(batchCapacity),
      sourceIps: new Uint32Array(batchCapacity),
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
   * benchmark, which replays one batch without copying it.
   */
  receive(batch: DatagramBatch): void {
    if (batch.count > this.batchCapacity) throw new RangeError(`a batch of ${batch.count} exceeds the batch capacity of ${this.batchCapacity}`);
    if (batch.count > 0 && !this.closed) this.onBatch?.(batch);
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
    let accepted = 0;
    let receiver: MemoryTransport | undefined;
    let to = -1;
    for (let i = 0; i < count; i++) {
      const length = lengths[i]!;
      if (length === 0) continue;
      if (this.refuseSends > 0) {
        this.refuseSends--;
        continue;
      }
      accepted++;
      const key = keyOf(ips[i]!, ports[i]!);
      if (key !== to) {
        receiver?.deliverReceived();
        to = key;
        receiver = this.network.at(ips[i]!, ports[i]!);
      }
      if (receiver === undefined) {
        this.network.lost++;
        continue;
      }
      receiver.take(buffer, offsets[i]!, length, this.ip, this.port);
    }
    receiver?.deliverReceived();
    return accepted;
  }

  /** Adds a datagram to the batch being received; a full batch is delivered at once. */
  private take(buffer: Buffer, offset: number, length: number, fromIp: number, fromPort: number): void {
    const batch = this.received;
    if (batch.count > 0 && batch.buffer !== buffer) this.deliverReceived();
    batch.buffer = buffer;
    const i = batch.count++;
    batch.offsets[i] = offset;
    batch.lengths[i] = length;
    batch.sourceIps[i] = fromIp;
    batch.sourcePorts[i] = fromPort;
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
