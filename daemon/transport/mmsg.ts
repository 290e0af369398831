/**
 * PacketTransport over the native UdpSocket: recvmmsg and sendmmsg, one
 * syscall per batch each way, UDP GSO and GRO where the kernel offers them,
 * and no copy on the way out.
 *
 * Sending: send() only notes where the packet is; flush() hands the whole
 * batch to sendmmsg straight from the caller's buffer (the TUN read arena),
 * which the caller leaves alone until then. Datagrams from different
 * buffers are sent in separate calls.
 *
 * The socket's family is its bind address's: "::" or an IPv6 address makes
 * an IPv6-only socket, whose batches carry sourceIps6.
 */
import { getSystemErrorName } from 'node:util';
import { loadNative, type NativeUdpSocket } from '../native.js';
import type { DatagramBatch, PacketTransport } from './index.js';
import { QueuedSends } from './send-queue.js';

export interface MmsgTransportOptions {
  /** Address to bind: 0.0.0.0 for all IPv4 addresses, :: for all IPv6 ones. */
  bindAddress: string;
  /** UDP port to bind (flannel's UDP backend uses 8285). */
  port: number;
  /** Messages per recvmmsg at most; with UDP GRO each may hold many datagrams. */
  messagesPerRead?: number;
  /**
   * Datagrams per message a read has room for, shared by its messages. GRO
   * coalesces up to 64, but a sender on the same host (or behind a veth)
   * has its GSO train delivered whole, up to UDP_MAX_SEGMENTS: 128 since
   * Linux 6.11. A read that brings more hands on what fits and counts the
   * rest in segmentsOverflowed.
   */
  segmentsPerMessage?: number;
  /** Socket receive and send buffer sizes; as root the kernel's cap does not apply. */
  socketBufferBytes?: number;
}

const defaults = {
  messagesPerRead: 16,
  segmentsPerMessage: 128,
  socketBufferBytes: 8 * 1024 * 1024,
} as const;

const MAX_MESSAGE = 65536;
/** Datagrams handed to one sendmmsg at most. */
const SEND_BATCH = 256;

export function openMmsgTransport(options: MmsgTransportOptions): PacketTransport {
  const { UdpSocket } = loadNative();
  const socket = new UdpSocket(options.bindAddress, options.port, options.socketBufferBytes ?? defaults.socketBufferBytes);
  const messagesPerRead = options.messagesPerRead ?? defaults.messagesPerRead;
  return new MmsgTransport(socket, messagesPerRead, messagesPerRead * (options.segmentsPerMessage ?? defaults.segmentsPerMessage));
}

class MmsgTransport extends QueuedSends implements PacketTransport {
  private readonly received: DatagramBatch & { count: number };

  constructor(
    private readonly socket: NativeUdpSocket,
    messagesPerRead: number,
    entries: number,
  ) {
    super(SEND_BATCH, socket.addressWords === 4 ? 6 : 4);
    const ipv6 = this.family === 6;
    this.received = {
      buffer: Buffer.allocUnsafeSlow(messagesPerRead * MAX_MESSAGE),
      offsets: new Uint32Array(entries),
      lengths: new Uint32Array(entries),
      sourceIps: new Uint32Array(ipv6 ? 0 : entries),
      ...(ipv6 ? { sourceIps6: new Uint32Array(4 * entries) } : {}),
      sourcePorts: new Uint16Array(entries),
      count: 0,
    };
  }

  get batchCapacity(): number {
    return this.received.lengths.length;
  }

  get port(): number {
    return this.socket.port;
  }

  get segmentsOverflowed(): number {
    return this.socket.segmentsOverflowed;
  }

  start(onBatch: (batch: DatagramBatch) => void, onError: (err: Error) => void): void {
    const batch = this.received;
    const { buffer, offsets, lengths, sourceIps, sourceIps6, sourcePorts } = batch;
    this.socket.startReading(buffer, MAX_MESSAGE, offsets, lengths, sourceIps6 ?? sourceIps, sourcePorts, (count, errno) => {
      if (count > 0) {
        batch.count = count;
        onBatch(batch);
      }
      if (errno !== 0) onError(new Error(`${getSystemErrorName(errno)}: receiving on UDP port ${this.port} stopped`));
    });
  }

  protected handOn(buffer: Buffer, offsets: Uint32Array, lengths: Uint32Array, ips: Uint32Array, ports: Uint16Array, count: number): number {
    return this.socket.sendBatch(buffer, offsets, lengths, ips, ports, count);
  }

  close(): Promise<void> {
    this.socket.close();
    return Promise.resolve();
  }
}
