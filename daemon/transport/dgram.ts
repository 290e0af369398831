/**
 * PacketTransport over node:dgram: portable, one syscall per datagram.
 *
 * Sending: dgram may hold on to a buffer until the kernel takes it, so each
 * datagram is copied into a staging buffer that is never rewritten; a full
 * staging buffer is replaced, not reused, and the old one is freed once
 * dgram lets go of it. That is one allocation per ~256 KiB, not per packet.
 *
 * Receiving: dgram emits one message at a time; they are gathered into a
 * batch and handed on once the event loop has drained the socket
 * (setImmediate runs right after the poll phase), or when the batch is full.
 *
 * The socket is udp4 or udp6 by the bind address; udp6 is IPv6-only, so an
 * IPv4 sender never arrives as an IPv4-mapped address.
 */
import dgram from 'node:dgram';
import { tryParseIPv4 } from '../net/ipv4.js';
import { parseIPv6 } from '../net/ipv6.js';
import { addressFamily, unreachableFamily, type DatagramBatch, type Endpoint, type PacketTransport, type UnderlayFamily } from './index.js';

export interface DgramTransportOptions {
  /** Address to bind: 0.0.0.0 for all IPv4 addresses, :: for all IPv6 ones. */
  bindAddress: string;
  /** UDP port to bind (flannel's UDP backend uses 8285). */
  port: number;
  /** Datagrams handed on per batch at most. */
  batchSize?: number;
  /** Socket receive and send buffer sizes; the kernel caps them at net.core.[rw]mem_max. */
  socketBufferBytes?: number;
  /** Datagrams dgram may queue in user space before sends are dropped. */
  maxQueuedSends?: number;
}

const defaults = {
  batchSize: 64,
  socketBufferBytes: 4 * 1024 * 1024,
  maxQueuedSends: 1024,
} as const;

const STAGING_BYTES = 256 * 1024;
const MAX_DATAGRAM = 65536;

export async function openDgramTransport(options: DgramTransportOptions): Promise<PacketTransport> {
  const family = addressFamily(options.bindAddress);
  // An address literal needs no DNS; answering synchronously also spares
  // every send the deferral that dns.lookup adds.
  const socket = dgram.createSocket({
    // ipv6Only on a udp4 socket fails the bind (EINVAL).
    ...(family === 6 ? { type: 'udp6', ipv6Only: true } : { type: 'udp4' }),
    lookup: (hostname, _options, callback) => (callback as (e: null, a: string, f: number) => void)(null, hostname, family),
  });
  await new Promise<void>((resolve, reject) => {
    socket.once('error', reject);
    socket.bind(options.port, options.bindAddress, () => {
      socket.off('error', reject);
      resolve();
    });
  });
  return new DgramTransport(socket, family, options);
}

/** Writes the four words of `address` at words[at]; zeros (no peer's) for an address the parser refuses, such as a zoned link-local one. */
function writeSource6(words: Uint32Array, at: number, address: string): void {
  let ip6: readonly number[] = [0, 0, 0, 0];
  try {
    ip6 = parseIPv6(address);
  } catch {
    // Counted by ingress as an unknown sender.
  }
  words.set(ip6, at);
}

class DgramTransport implements PacketTransport {
  readonly port: number;
  readonly family: UnderlayFamily;
  sendErrors = 0;
  private staging = Buffer.allocUnsafeSlow(STAGING_BYTES);
  private stagingUsed = 0;
  private congested = false;
  private readonly maxQueuedSends: number;
  private readonly batch: DatagramBatch & { count: number };
  private flushScheduled = false;
  private onBatch: ((batch: DatagramBatch) => void) | undefined;

  constructor(
    private readonly socket: dgram.Socket,
    family: UnderlayFamily,
    options: DgramTransportOptions,
  ) {
    this.port = socket.address().port;
    this.family = family;
    const bufferBytes = options.socketBufferBytes ?? defaults.socketBufferBytes;
    socket.setRecvBufferSize(bufferBytes);
    socket.setSendBufferSize(bufferBytes);
    this.maxQueuedSends = options.maxQueuedSends ?? defaults.maxQueuedSends;
    const batchSize = options.batchSize ?? defaults.batchSize;
    const offsets = new Uint32Array(batchSize);
    for (let i = 0; i < batchSize; i++) offsets[i] = i * MAX_DATAGRAM;
    this.batch = {
      buffer: Buffer.allocUnsafeSlow(batchSize * MAX_DATAGRAM),
      offsets,
      lengths: new Uint32Array(batchSize),
      sourceIps: new Uint32Array(family === 6 ? 0 : batchSize),
      ...(family === 6 ? { sourceIps6: new Uint32Array(4 * batchSize) } : {}),
      sourcePorts: new Uint16Array(batchSize),
      count: 0,
    };
  }

  get batchCapacity(): number {
    return this.batch.lengths.length;
  }

  start(onBatch: (batch: DatagramBatch) => void, onError: (err: Error) => void): void {
    this.onBatch = onBatch;
    this.socket.on('message', (message, remote) => this.gather(message, remote));
    // Without a send callback, dgram reports a failed send here.
    this.socket.on('error', (err) => {
      this.sendErrors++;
      if ((err as NodeJS.ErrnoException).syscall !== 'send') onError(err);
    });
  }

  private gather(message: Buffer, remote: dgram.RemoteInfo): void {
    const batch = this.batch;
    const i = batch.count;
    message.copy(batch.buffer, batch.offsets[i]);
    batch.lengths[i] = message.length;
    if (batch.sourceIps6 === undefined) {
      batch.sourceIps[i] = tryParseIPv4(remote.address);
    } else {
      writeSource6(batch.sourceIps6, 4 * i, remote.address);
    }
    batch.sourcePorts[i] = remote.port;
    batch.count = i + 1;
    if (batch.count === batch.lengths.length) {
      this.deliver();
    } else if (!this.flushScheduled) {
      this.flushScheduled = true;
      setImmediate(() => this.deliver());
    }
  }

  private deliver(): void {
    this.flushScheduled = false;
    if (this.batch.count === 0) return;
    try {
      this.onBatch?.(this.batch);
    } finally {
      this.batch.count = 0;
    }
  }

  send(buffer: Buffer, offset: number, length: number, to: Endpoint): boolean {
    if ((to.ip6 === undefined) !== (this.family === 4)) {
      throw unreachableFamily(to, this.family);
    }
    if (this.congested || length === 0) return false;
    if (this.stagingUsed + length > this.staging.length) {
      this.staging = Buffer.allocUnsafeSlow(Math.max(STAGING_BYTES, length));
      this.stagingUsed = 0;
    }
    const at = this.stagingUsed;
    buffer.copy(this.staging, at, offset, offset + length);
    this.stagingUsed = at + length;
    this.socket.send(this.staging, at, length, to.port, to.address);
    return true;
  }

  flush(): number {
    // dgram queues in user space without limit once the kernel's buffer is
    // full; checking once per batch bounds that queue to one batch past the limit.
    this.congested = this.socket.getSendQueueCount() > this.maxQueuedSends;
    return 0;
  }

  close(): Promise<void> {
    return new Promise((resolve) => this.socket.close(() => resolve()));
  }
}
