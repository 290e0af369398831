/**
 * A batch of packets living in one buffer: packet i is
 * `buffer.subarray(offsets[i], offsets[i] + lengths[i])` for i < count.
 *
 * Batches handed to a callback are only valid during that callback: the
 * producer reuses the buffer and arrays on its next wake-up.
 */
export interface PacketBatch {
  readonly buffer: Buffer;
  readonly offsets: Uint32Array;
  readonly lengths: Uint32Array;
  readonly count: number;
}
