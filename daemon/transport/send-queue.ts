import type { Endpoint } from './index.js';

/**
 * The queue behind a batched transport's send() and flush(): where each
 * datagram lies in one buffer and where it goes, handed on in one call per
 * run of datagrams from the same buffer (one sendmmsg for the native
 * socket). Nothing is copied, so the caller leaves the buffer alone until
 * flush().
 */
export class SendQueue {
  /** The buffer the queued datagrams lie in. */
  buffer: Buffer | undefined;
  readonly offsets: Uint32Array;
  readonly lengths: Uint32Array;
  readonly ips: Uint32Array;
  readonly ports: Uint16Array;
  /** Datagrams queued. */
  count = 0;
  private refused = 0;

  /** `hand` sends the first `count` queued datagrams and returns how many were accepted. */
  constructor(
    capacity: number,
    private readonly hand: (queue: SendQueue, count: number) => number,
  ) {
    this.offsets = new Uint32Array(capacity);
    this.lengths = new Uint32Array(capacity);
    this.ips = new Uint32Array(capacity);
    this.ports = new Uint16Array(capacity);
  }

  add(buffer: Buffer, offset: number, length: number, to: Endpoint): void {
    if (buffer !== this.buffer || this.count === this.offsets.length) {
      this.handOn();
      this.buffer = buffer;
    }
    const i = this.count++;
    this.offsets[i] = offset;
    this.lengths[i] = length;
    this.ips[i] = to.ip;
    this.ports[i] = to.port;
  }

  /** Hands on what is queued; returns how many datagrams were refused since the last flush. */
  flush(): number {
    this.handOn();
    this.buffer = undefined;
    const refused = this.refused;
    this.refused = 0;
    return refused;
  }

  private handOn(): void {
    if (this.count === 0 || this.buffer === undefined) return;
    // Zeroed first: handing on may run a receiver (the memory network) that sends again.
    const count = this.count;
    this.count = 0;
    this.refused += count - this.hand(this, count);
  }
}
