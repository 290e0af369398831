/**
 * The packet transport: the underlay side of the data plane. It carries
 * bare IP packets as UDP datagrams between nodes (flannel's UDP wire format:
 * the payload is the packet, nothing else).
 */
import type { PacketBatch } from '../dataplane/packet-batch.js';

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
  /**
   * Starts receiving. `onBatch` gets the datagrams of one wake-up in one
   * call; the batch is reused afterwards. `onError` reports socket errors
   * that are not about a single datagram.
   */
  start(onBatch: (batch: DatagramBatch) => void, onError: (err: Error) => void): void;
  /**
   * Sends buffer[offset, offset+length) to `to`. The transport copies or
   * sends the bytes before returning, so the caller may reuse `buffer`.
   * Returns false when the datagram was dropped because the send queue is full.
   */
  send(buffer: Buffer, offset: number, length: number, to: Endpoint): boolean;
  /** Marks the end of a batch of sends, so a batching transport can transmit. */
  flush(): void;
  /** Datagrams the socket failed to send after `send` accepted them. */
  readonly sendErrors: number;
  close(): Promise<void>;
}
