/**
 * The TUN device: the kernel side of the data plane.
 *
 * Packets the kernel routes into the device arrive in batches; packets
 * written to it are delivered by the kernel as if they came off a wire.
 */
import { getSystemErrorName } from 'node:util';
import type { PacketBatch } from '../net/packet-batch.js';
import { loadNative, type NativeTunDevice } from '../native.js';

export interface TunDevice {
  readonly name: string;
  /**
   * UDP segmentation offload (USO): with offload on, on Linux 6.2 and
   * later, the kernel also hands over UDP super-packets (one sendmsg with
   * UDP_SEGMENT) and takes UDP packets of one flow joined into one. Detected
   * when the device opens: an older kernel refuses it, and the device keeps
   * TCP's offload alone.
   */
  readonly udpSegmentation: boolean;
  /** Packets one batch holds at most. */
  readonly batchCapacity: number;
  /**
   * Starts delivering packets. `onBatch` gets each wake-up's packets in one
   * call; the batch is reused afterwards. A zero-length slot is a packet
   * that was read but cannot be forwarded (an offloaded super-packet that
   * cannot be cut): it keeps its place in the count, and the reader drops
   * and counts it like any malformed packet. `onError` is called once if
   * reading stops for good (the interface was deleted, say).
   */
  start(onBatch: (batch: PacketBatch) => void, onError: (err: Error) => void): void;
  /**
   * Writes packets; returns how many the kernel accepted. A zero-length
   * slot is dropped, not written, and left out of the returned count, so a
   * caller counts it with the refused ones. With offload it may join
   * segments of one TCP flow (and, with udpSegmentation, datagrams of one
   * UDP flow) and rewrite the headers in `batch`.
   */
  write(batch: PacketBatch): number;
  /** Stops reading and releases the fd; the kernel deletes the interface. */
  close(): void;
}

export interface TunOptions {
  /** Interface name, e.g. `flannel0`. */
  name: string;
  /**
   * TCP segmentation offload, over IPv4 and IPv6: the kernel hands over TCP
   * super-packets of up to 64 KiB, which the binding cuts into MTU-sized
   * packets, and the writer joins segments of one flow back into them
   * (native/offload.h). UDP's too where the kernel has it (udpSegmentation).
   */
  offload?: boolean;
  /** Packets per batch at most; with offload a batch must hold a cut super-packet. */
  batchSize?: number;
}

const defaults = {
  offload: true,
  batchSize: { plain: 64, offload: 256 },
} as const;

/**
 * Packets the kernel holds for the daemon to read (the device's txqueuelen);
 * beyond it, it drops them. The kernel's 500 is a few milliseconds at tens of
 * kpps, less than a busy node's scheduling gaps (docs/benchmarks.md).
 */
export const DEFAULT_TX_QUEUE_LENGTH = 2000;

export interface InterfaceSetup {
  mtu: number;
  /** The IPv4 address and its prefix length; without them the device has none (an IPv6-only node's). */
  address?: string;
  prefixLength?: number;
  /** The device's txqueuelen; DEFAULT_TX_QUEUE_LENGTH when unset. */
  txQueueLength?: number;
}

class NativeTun implements TunDevice {
  private readonly device: NativeTunDevice;
  private readonly arena: Buffer;
  private readonly batch: PacketBatch & { count: number };
  private readonly slotSize: number;

  constructor(options: TunOptions & InterfaceSetup) {
    const offload = options.offload ?? defaults.offload;
    const batchSize = options.batchSize ?? (offload ? defaults.batchSize.offload : defaults.batchSize.plain);
    // Every packet the kernel routes here fits the MTU (with offload, after cutting).
    const slotSize = options.mtu;
    const { TunDevice } = loadNative();
    this.device = new TunDevice(options.name, offload);
    this.arena = Buffer.allocUnsafeSlow(batchSize * slotSize);
    const offsets = new Uint32Array(batchSize);
    for (let i = 0; i < batchSize; i++) offsets[i] = i * slotSize;
    this.batch = { buffer: this.arena, offsets, lengths: new Uint32Array(batchSize), count: 0 };
    this.slotSize = slotSize;
  }

  get name(): string {
    return this.device.name;
  }

  get udpSegmentation(): boolean {
    return this.device.udpSegmentation;
  }

  get batchCapacity(): number {
    return this.batch.lengths.length;
  }

  configure(setup: InterfaceSetup): void {
    this.device.setMtu(setup.mtu);
    this.device.setTxQueueLength(setup.txQueueLength ?? DEFAULT_TX_QUEUE_LENGTH);
    if (setup.address !== undefined) this.device.setIPv4(setup.address, setup.prefixLength ?? 32);
    this.device.setUp();
  }

  start(onBatch: (batch: PacketBatch) => void, onError: (err: Error) => void): void {
    const batch = this.batch;
    this.device.startReading(this.arena, this.slotSize, batch.lengths, (count, errno) => {
      if (count > 0) {
        batch.count = count;
        onBatch(batch);
      }
      if (errno !== 0) onError(new Error(`${getSystemErrorName(errno)}: reading ${this.device.name} stopped`));
    });
  }

  write(batch: PacketBatch): number {
    return this.device.writeBatch(batch.buffer, batch.offsets, batch.lengths, batch.count);
  }

  close(): void {
    this.device.close();
  }
}

/**
 * Creates a TUN interface in the caller's network namespace, sets its MTU
 * and IPv4 address, and brings it up. Needs CAP_NET_ADMIN.
 */
export function openTun(options: TunOptions & InterfaceSetup): TunDevice {
  const tun = new NativeTun(options);
  try {
    tun.configure(options);
  } catch (err) {
    tun.close();
    throw err;
  }
  return tun;
}
