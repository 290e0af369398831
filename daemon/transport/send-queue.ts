import { unreachableFamily, type Endpoint, type UnderlayFamily } from './index.js';

/**
 * The sending half of a batched transport: send() only notes where a
 * datagram lies in the caller's buffer and where it goes; flush() hands the
 * queue on, one call per run of datagrams from the same buffer (one
 * sendmmsg for the native socket). Nothing is copied, so the caller leaves
 * the buffer alone until flush(). A base class rather than a member, so
 * that send() stays one direct call on the hot path.
 *
 * Destinations are queued as the native socket takes them: one address word
 * per datagram on an IPv4 transport, four (an IPv6Address's) on an IPv6 one.
 */
export abstract class QueuedSends {
  private pendingBuffer: Buffer | undefined;
  private readonly offsets: Uint32Array;
  private readonly lengths: Uint32Array;
  private readonly ips: Uint32Array;
  private readonly ports: Uint16Array;
  private readonly ipv6: boolean;
  private pending = 0;
  private refused = 0;

  constructor(
    capacity: number,
    readonly family: UnderlayFamily,
  ) {
    this.ipv6 = family === 6;
    this.offsets = new Uint32Array(capacity);
    this.lengths = new Uint32Array(capacity);
    this.ips = new Uint32Array(this.ipv6 ? 4 * capacity : capacity);
    this.ports = new Uint16Array(capacity);
  }

  send(buffer: Buffer, offset: number, length: number, to: Endpoint): boolean {
    const ip6 = to.ip6;
    if ((ip6 !== undefined) !== this.ipv6) {
      throw unreachableFamily(to, this.family);
    }
    if (buffer !== this.pendingBuffer || this.pending === this.offsets.length) {
      this.sendPending();
      this.pendingBuffer = buffer;
    }
    const i = this.pending++;
    this.offsets[i] = offset;
    this.lengths[i] = length;
    if (ip6 === undefined) {
      this.ips[i] = to.ip;
    } else {
      const at = 4 * i;
      this.ips[at] = ip6[0];
      this.ips[at + 1] = ip6[1];
      this.ips[at + 2] = ip6[2];
      this.ips[at + 3] = ip6[3];
    }
    this.ports[i] = to.port;
    return true;
  }

  /** Hands on what is queued; returns how many datagrams were refused since the last flush. */
  flush(): number {
    this.sendPending();
    this.pendingBuffer = undefined;
    const refused = this.refused;
    this.refused = 0;
    return refused;
  }

  /**
   * Sends the first `count` queued datagrams, all in `buffer`; returns how many were accepted.
   * Datagram i goes to ports[i] at ips[i] (IPv4) or ips[4i, 4i+4) (IPv6).
   */
  protected abstract handOn(buffer: Buffer, offsets: Uint32Array, lengths: Uint32Array, ips: Uint32Array, ports: Uint16Array, count: number): number;

  private sendPending(): void {
    const buffer = this.pendingBuffer;
    const count = this.pending;
    // Zeroed first: handing on may run a receiver (the memory network) that sends again.
    this.pending = 0;
    if (count === 0 || buffer === undefined) return;
    this.refused += count - this.handOn(buffer, this.offsets, this.lengths, this.ips, this.ports, count);
  }
}
