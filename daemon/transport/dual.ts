/**
 * A dual underlay: one transport of each family on the same port, reached
 * as one. A node with both an IPv4 and an IPv6 underlay address binds both,
 * and sends each datagram over the family of its destination, so it can
 * talk to peers that have only one of them (see peerFromLease in
 * daemon/node/peers.ts for which family a peer is reached over).
 *
 * Each socket's received batches reach the data plane as they are: an IPv4
 * one without sourceIps6, an IPv6 one with it, so ingress needs nothing of
 * its own for this.
 */
import type { DatagramBatch, Endpoint, PacketTransport } from './index.js';

/** Both sockets' count of something only some transports keep: absent if neither keeps it. */
function sumOfKept(a: number | undefined, b: number | undefined): number | undefined {
  return a === undefined && b === undefined ? undefined : (a ?? 0) + (b ?? 0);
}

export class DualTransport implements PacketTransport {
  readonly family = 'dual' as const;

  /** Both must be bound to the same port, `ipv4` to an IPv4 address, `ipv6` to an IPv6 one. */
  constructor(
    private readonly ipv4: PacketTransport,
    private readonly ipv6: PacketTransport,
  ) {
    if (ipv4.family !== 4 || ipv6.family !== 6) throw new RangeError(`a dual transport joins an IPv4 and an IPv6 transport, not IPv${ipv4.family} and IPv${ipv6.family}`);
    if (ipv4.port !== ipv6.port) throw new RangeError(`a dual transport's sockets share one port, not ${ipv4.port} and ${ipv6.port}`);
  }

  get port(): number {
    return this.ipv4.port;
  }

  get batchCapacity(): number {
    return Math.max(this.ipv4.batchCapacity, this.ipv6.batchCapacity);
  }

  get sendErrors(): number | undefined {
    return sumOfKept(this.ipv4.sendErrors, this.ipv6.sendErrors);
  }

  get segmentsOverflowed(): number | undefined {
    return sumOfKept(this.ipv4.segmentsOverflowed, this.ipv6.segmentsOverflowed);
  }

  start(onBatch: (batch: DatagramBatch) => void, onError: (err: Error) => void): void {
    this.ipv4.start(onBatch, onError);
    this.ipv6.start(onBatch, onError);
  }

  send(buffer: Buffer, offset: number, length: number, to: Endpoint): boolean {
    return (to.ip6 === undefined ? this.ipv4 : this.ipv6).send(buffer, offset, length, to);
  }

  flush(): number {
    return this.ipv4.flush() + this.ipv6.flush();
  }

  async close(): Promise<void> {
    await Promise.all([this.ipv4.close(), this.ipv6.close()]);
  }
}
