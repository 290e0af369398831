/**
 * A batch of packets living in one buffer: packet i is
 * `buffer.subarray(offsets[i], offsets[i] + lengths[i])` for i < count.
 *
 * Batches handed to a callback are only valid during that callback: the
 * producer reuses the buffer and arrays on its next wake-up.
 *
 * A leaf module, so that the TUN device and the transport (below the data
 * plane) and the data plane itself share the type without importing upwards.
 */
export interface PacketBatch {
  readonly buffer: Buffer;
  readonly offsets: Uint32Array;
  readonly lengths: Uint32Array;
  readonly count: number;
}

/**
 * A batch its owner refills: arrays allocated once, `count` reset with
 * clear(). The buffer is settable, so it can list packets that live in some
 * other batch's buffer without copying them.
 */
export class ReusableBatch implements PacketBatch {
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

  clear(): void {
    this.count = 0;
  }
}
