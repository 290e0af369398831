/**
 * A TUN device in memory, for tests and the encap benchmark: no kernel, no
 * root (model: wireguard-go's tuntest.ChannelTUN). The caller plays the
 * kernel: send() routes packets into the device, and what the data plane
 * writes is kept in `written`. The native device's conventions hold here
 * too: a read batch is copied into an arena the device reuses, a
 * zero-length slot stands for a packet that cannot be forwarded, and a
 * zero-length slot written is dropped, not written, and not counted as
 * written.
 */
import { ReusableBatch, type PacketBatch } from '../net/packet-batch.js';
import type { TunDevice } from './index.js';

export interface MemoryTunOptions {
  /** Default `memtun0`. */
  name?: string;
  /** Packets one read batch holds at most; default 64, the native device's without offload. */
  batchCapacity?: number;
  /** Bytes per arena slot: the largest packet a read returns, the device's MTU; default 1472. */
  mtu?: number;
  /** Keep a copy of every packet written in `written`; default true. The benchmark turns it off. */
  keepWritten?: boolean;
}

export class MemoryTun implements TunDevice {
  readonly name: string;
  /** No kernel here, so no offloads: packets pass as they are. */
  readonly udpSegmentation = false;
  /** Copies of the packets written, oldest first (with keepWritten). */
  readonly written: Buffer[] = [];
  /** Packets and bytes write() accepted, kept or not. */
  packetsWritten = 0;
  bytesWritten = 0;
  /** The next this many packets written are refused, as by a kernel whose queue is full. */
  refuseWrites = 0;
  private readonly keepWritten: boolean;
  private readonly slotSize: number;
  private readonly batch: ReusableBatch;
  private onBatch: ((batch: PacketBatch) => void) | undefined;
  private onError: ((err: Error) => void) | undefined;
  private closed = false;

  constructor(options: MemoryTunOptions = {}) {
    this.name = options.name ?? 'memtun0';
    this.keepWritten = options.keepWritten ?? true;
    this.slotSize = options.mtu ?? 1472;
    const capacity = options.batchCapacity ?? 64;
    this.batch = new ReusableBatch(capacity, Buffer.alloc(capacity * this.slotSize));
    for (let i = 0; i < capacity; i++) this.batch.offsets[i] = i * this.slotSize;
  }

  get batchCapacity(): number {
    return this.batch.offsets.length;
  }

  start(onBatch: (batch: PacketBatch) => void, onError: (err: Error) => void): void {
    if (this.onBatch) throw new Error(`${this.name} is already started`);
    this.onBatch = onBatch;
    this.onError = onError;
  }

  /**
   * Routes packets into the device, as the kernel does: they are copied into
   * the arena and read in batches of batchCapacity, one reader call each,
   * before send() returns. An empty buffer reads as a zero-length slot.
   * Before start() nobody reads, and the packets are dropped.
   */
  send(packets: readonly Buffer[]): void {
    const batch = this.batch;
    for (let first = 0; first < packets.length; first += batch.offsets.length) {
      const count = Math.min(batch.offsets.length, packets.length - first);
      for (let i = 0; i < count; i++) {
        const packet = packets[first + i]!;
        if (packet.length > this.slotSize) throw new RangeError(`a ${packet.length}-byte packet does not fit ${this.name}'s MTU of ${this.slotSize}`);
        packet.copy(batch.buffer, batch.offsets[i]);
        batch.lengths[i] = packet.length;
      }
      batch.count = count;
      this.read();
    }
  }

  /**
   * Reads the last batch sent again, without copying it: for the benchmark,
   * which measures the data plane and not the copy. The data plane never
   * changes the packets it reads, so they are the same each time.
   */
  replay(): void {
    this.read();
  }

  /** Stops reading for good, as when the interface is deleted: the reader's onError is called once. */
  fail(err: Error): void {
    const onError = this.onError;
    this.onBatch = undefined;
    this.onError = undefined;
    onError?.(err);
  }

  write(batch: PacketBatch): number {
    if (this.closed) throw new Error(`${this.name} is closed`);
    let written = 0;
    for (let i = 0; i < batch.count; i++) {
      const length = batch.lengths[i]!;
      if (length === 0) continue;
      if (this.refuseWrites > 0) {
        this.refuseWrites--;
        continue;
      }
      const offset = batch.offsets[i]!;
      if (this.keepWritten) this.written.push(Buffer.from(batch.buffer.subarray(offset, offset + length)));
      this.bytesWritten += length;
      written++;
    }
    this.packetsWritten += written;
    return written;
  }

  /** Empties `written` and returns what it held. */
  takeWritten(): Buffer[] {
    return this.written.splice(0);
  }

  close(): void {
    this.closed = true;
    this.onBatch = undefined;
    this.onError = undefined;
  }

  private read(): void {
    if (this.closed) throw new Error(`${this.name} is closed`);
    if (this.batch.count > 0) this.onBatch?.(this.batch);
  }
}
