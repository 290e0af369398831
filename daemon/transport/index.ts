/**
 * The packet transport: the underlay side of the data plane. It carries
 * bare IP packets as UDP datagrams between nodes (flannel's UDP wire format:
 * the payload is the packet, nothing else).
 */
import type { PacketBatch } from '../net/packet-batch.js';

export interface Endpoint {
  /** Dotted quad, as the socket API wants it. */
  readonly address: string;
  /** The same address as an unsigned 32-bit number, as the hot path compares it. */
  readonly ip: number;
  readonly port: number;
}

/** Received datagrams: packet i came from sourceIps[i]:sourcePorts[i]. */
export interface DatagramBatch extends PacketBatch {
  readonly sourceIps: Uint32Array;
  readonly sourcePorts: Uint16Array;
}

export interface PacketTransport {
  /** The bound UDP port. */
  readonly port: number;
  /** Datagrams one received batch holds at most. */
  readonly batchCapacity: number;
  /**
   * Starts receiving. `onBatch` gets the datagrams of one wake-up in one
   * call; the batch is reused afterwards. `onError` reports socket errors
   * that are not about a single datagram.
   */
  start(onBatch: (batch: DatagramBatch) => void, onError: (err: Error) => void): void;
  /**
   * Queues buffer[offset, offset+length) for `to`. It is sent no later than
   * the next flush(); until then the caller must leave those bytes alone.
   * Returns false if the datagram was dropped at once (the socket is
   * backed up). A zero-length slot is dropped and counted, not sent as an
   * empty datagram: either refused here or reported by flush().
   */
  send(buffer: Buffer, offset: number, length: number, to: Endpoint): boolean;
  /**
   * Sends what is queued. Returns how many queued datagrams were not sent
   * (refused by the kernel, a full socket buffer say, or zero-length); the
   * caller counts them as dropped.
   */
  flush(): number;
  /**
   * Datagrams the socket reported failing after it had accepted them
   * (node:dgram reports these late). Absent where failures are known at
   * flush() and counted there.
   */
  readonly sendErrors?: number;
  close(): Promise<void>;
}
