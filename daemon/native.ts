// Loads the project's own N-API addon (native/*.cc, built by node-gyp during
// `npm ci`). The addon's raw shape is declared here once; everything else
// goes through the typed wrappers beside this file.
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import path from 'node:path';

export interface NativeTunDevice {
  readonly name: string;
  /** Whether the kernel took UDP segmentation offload (TUN_F_USO4/6, Linux 6.2+); false without offload. */
  readonly udpSegmentation: boolean;
  setMtu(mtu: number): void;
  setTxQueueLength(packets: number): void;
  setIPv4(address: string, prefixLength: number): void;
  setUp(): void;
  startReading(arena: Buffer, slotSize: number, lengths: Uint32Array, onBatch: (count: number, errno: number) => void): void;
  writeBatch(buffer: Buffer, offsets: Uint32Array, lengths: Uint32Array, count: number): number;
  close(): void;
}

/**
 * A UDP socket of its bind address's family (an IPv6 one is IPv6-only).
 * Every address array holds `addressWords` host-order words per entry: one
 * for IPv4, as before; four for IPv6, most significant first (entry i at
 * [4i, 4i+4), the words of an IPv6Address). So the IPv4 path keeps one
 * word per datagram and IPv6 costs no other call.
 */
export interface NativeUdpSocket {
  readonly port: number;
  /** 1 on an IPv4 socket, 4 on an IPv6 one. */
  readonly addressWords: 1 | 4;
  /** Datagrams received that a read had no entry left for, so never handed on (see startReading's arrays). */
  readonly segmentsOverflowed: number;
  startReading(
    arena: Buffer,
    slotSize: number,
    offsets: Uint32Array,
    lengths: Uint32Array,
    sourceIps: Uint32Array,
    sourcePorts: Uint16Array,
    onBatch: (count: number, errno: number) => void,
  ): void;
  sendBatch(buffer: Buffer, offsets: Uint32Array, lengths: Uint32Array, ips: Uint32Array, ports: Uint16Array, count: number): number;
  close(): void;
}

export interface NativePacketSealer {
  setKeys(keys: Buffer[], ids: number[]): void;
  seal(src: Buffer, srcOffset: number, length: number, dst: Buffer, dstOffset: number): number;
  open(buffer: Buffer, offset: number, length: number, senderIp: number): number;
}

interface NativeAddon {
  TunDevice: new (name: string, offload: boolean) => NativeTunDevice;
  UdpSocket: new (bindAddress: string, port: number, bufferBytes: number) => NativeUdpSocket;
  PacketSealer: new (encrypt: boolean, localIp: number, freshnessSeconds: number) => NativePacketSealer;
  /** Sets one IPV4_DEVCONF_* option of an interface over rtnetlink (no /proc/sys needed). */
  setIPv4DevConf(ifname: string, setting: number, value: number): void;
  /** Routes `network` (host order) / `prefixLength` into the interface over rtnetlink, replacing any route to that block. */
  replaceRoute(ifname: string, network: number, prefixLength: number): void;
  /** Routes the IPv6 block `network` (text) / `prefixLength` into the interface over rtnetlink, replacing any route to that block. */
  replaceRoute6(ifname: string, network: string, prefixLength: number): void;
  /**
   * Gives the interface an IPv6 address over rtnetlink, with no duplicate address detection (usable at once);
   * adding an address it has already succeeds, so a restart is idempotent.
   */
  addAddress6(ifname: string, address: string, prefixLength: number): void;
  /** Deletes an interface over rtnetlink; the kernel drops its routes. */
  deleteLink(ifname: string): void;
  /** The TUN offload cutter alone (virtio_net_hdr + packet in, MTU-sized packets out); null if it refuses the frame. */
  segmentFrame(frame: Buffer, slotSize: number): Buffer[] | null;
  /**
   * The TUN offload joiner alone: the frames (virtio_net_hdr + packet) it would write on a device
   * with `udpSegmentation` (default false) or without. Rewrites `buffer` as the writer does.
   */
  joinPackets(buffer: Buffer, offsets: Uint32Array, lengths: Uint32Array, count: number, udpSegmentation?: boolean): Buffer[];
}

// dist/daemon/native.js -> <package root>/build/Release/
const packageRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const addonPath = path.join(packageRoot, 'build', 'Release', 'miniflannel_native.node');

let addon: NativeAddon | undefined;

export function loadNative(): NativeAddon {
  if (!addon) {
    try {
      addon = createRequire(import.meta.url)(addonPath) as NativeAddon;
    } catch (err) {
      throw new Error(`the native TUN binding is not built (${addonPath}); run \`npm ci\` or \`npm rebuild\``, { cause: err });
    }
  }
  return addon;
}
