/**
 * PacketTransport over the native UdpSocket: recvmmsg and sendmmsg, one
 * syscall per batch each way, and no copy on the way out.
 *
 * Sending: send() only notes where the packet is; flush() hands the whole
 * batch to sendmmsg straight from the caller's buffer (the TUN read arena),
 * which the caller leaves alone until then. Datagrams from different
 * buffers are sent in separate calls.
 */
import { getSystemErrorName } from 'node:util';
import { loadNative, type NativeUdpSocket } from '../native.js';
import type { DatagramBatch, Endpoint, PacketTransport } from './index.js';

export interface MmsgTransportOptions {
  /** Address to bind; 0.0.0.0 for all. */
  bindAddress: string;
  /** UDP port to bind (flannel's UDP backend uses 8285). */
  port: number;
  /** Datagrams per recvmmsg and per sendmmsg at most. */
  batchSize?: number;
  /** Socket receive and send buffer sizes; as root the kernel's cap does not apply. */
  socketBufferBytes?: number;
}

const defaults = {
  batchSize: 64,
  socketBufferBytes: 8 * 1024 * 1024,
} as const;

const MAX_DATAGRAM = 65536;

export function openMmsgTransport(options: MmsgTransportOptions): PacketTransport {
  const { UdpSocket } = loadNative();
  return new MmsgTransport(new UdpSocket(options.bindAddress, options.port, options.socketBufferBytes ?? defaults.socketBufferBytes), options.batchSize ?? defaults.batchSize);
}

class MmsgTransport implements PacketTransport {
  readonly sendErrors = 0;
  private readonly received: DatagramBatch & { count: number };
  // The pending sends: where each packet is in `pendingBuffer`, and where it goes.
  private pendingBuffer: Buffer | undefined;
  private readonly offsets: Uint32Array;
  private readonly lengths: Uint32Array;
  private readonly ips: Uint32Array;
  private readonly ports: Uint16Array;
  private pending = 0;
  private refused = 0;

  constructor(
    private readonly socket: NativeUdpSocket,
    batchSize: number,
  ) {
    const offsets = new Uint32Array(batchSize);
    for (let i = 0; i < batchSize; i++) offsets[i] = i * MAX_DATAGRAM;
    this.received = {
      buffer: Buffer.allocUnsafeSlow(batchSize * MAX_DATAGRAM),
      offsets,
      lengths: new Uint32Array(batchSize),
      sourceIps: new Uint32Array(batchSize),
      sourcePorts: new Uint16Array(batchSize),
      count: 0,
    };
    this.offsets = new Uint32Array(batchSize);
    this.lengths = new Uint32Array(batchSize);
    this.ips = new Uint32Array(batchSize);
    this.ports = new Uint16Array(batchSize);
  }

  get port(): number {
    return this.socket.port;
  }

  start(onBatch: (batch: DatagramBatch) => void, onError: (err: Error) => void): void {
    const batch = this.received;
    const { buffer, lengths, sourceIps, sourcePorts } = batch;
    this.socket.startReading(buffer, MAX_DATAGRAM, lengths, sourceIps, sourcePorts, (count, errno) => {
      if (count > 0) {
        batch.count = count;
        onBatch(batch);
      }
      if (errno !== 0) onError(new Error(`${getSystemErrorName(errno)}: receiving on UDP port ${this.port} stopped`));
    });
  }

  send(buffer: Buffer, offset: number, length: number, to: Endpoint): boolean {
    if (buffer !== this.pendingBuffer || this.pending === this.offsets.length) {
      this.sendPending();
      this.pendingBuffer = buffer;
    }
    const i = this.pending++;
    this.offsets[i] = offset;
    this.lengths[i] = length;
    this.ips[i] = to.ip;
    this.ports[i] = to.port;
    return true;
  }

  flush(): number {
    this.sendPending();
    this.pendingBuffer = undefined;
    const refused = this.refused;
    this.refused = 0;
    return refused;
  }

  private sendPending(): void {
    if (this.pending === 0 || !this.pendingBuffer) return;
    const sent = this.socket.sendBatch(this.pendingBuffer, this.offsets, this.lengths, this.ips, this.ports, this.pending);
    this.refused += this.pending - sent;
    this.pending = 0;
  }

  close(): Promise<void> {
    this.socket.close();
    return Promise.resolve();
  }
}
