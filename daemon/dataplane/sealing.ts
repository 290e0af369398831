/**
 * Authenticated encapsulation (opt-in, --auth-key-file): each datagram is
 * the IP packet between a 10-byte header (magic, key id, counter) and a
 * 16-byte AES-256-GCM tag. The layout, the nonce and the replay window are
 * described in native/packet_sealer.h and docs/security.md. Without a key
 * the data plane sends bare packets, flannel's UDP wire format.
 */
import { createHash } from 'node:crypto';
import { loadNative } from '../native.js';

export const SEAL_HEADER_BYTES = 10;
export const SEAL_TAG_BYTES = 16;
export const SEAL_OVERHEAD = SEAL_HEADER_BYTES + SEAL_TAG_BYTES;
/** open() verdicts below zero. */
export const OPEN_UNAUTHENTICATED = -1;
export const OPEN_REPLAYED = -2;

export const AUTH_KEY_BYTES = 32;

export interface AuthKey {
  /** The byte that names the key on the wire: the first byte of its SHA-256, so operators never pick ids. */
  readonly id: number;
  readonly secret: Buffer;
}

export function authKey(secret: Buffer): AuthKey {
  if (secret.length !== AUTH_KEY_BYTES) throw new RangeError(`an auth key is ${AUTH_KEY_BYTES} bytes, not ${secret.length}`);
  return { id: createHash('sha256').update(secret).digest()[0]!, secret };
}

export type SealMode = 'mac' | 'encrypt';

export interface Sealer {
  /** Seals src[offset, offset+length) into dst at dstOffset; returns the datagram's length (length + SEAL_OVERHEAD). */
  seal(src: Buffer, offset: number, length: number, dst: Buffer, dstOffset: number): number;
  /**
   * Checks the datagram at buffer[offset, offset+length) from senderIp and,
   * if it is authentic, fresh and new, leaves the packet in clear at
   * offset + SEAL_HEADER_BYTES and returns its length; else OPEN_UNAUTHENTICATED or OPEN_REPLAYED.
   */
  open(buffer: Buffer, offset: number, length: number, senderIp: number): number;
  /** keys[0] seals from now on; every key opens (two during a rollover). */
  setKeys(keys: readonly AuthKey[]): void;
}

export interface SealerOptions {
  mode: SealMode;
  /** This node's underlay address, part of every nonce it seals with. */
  localIp: number;
  keys: readonly AuthKey[];
  /** How far a datagram's sealing time may be from our clock, either way. Nodes' clocks must agree this well. */
  freshnessSeconds?: number;
}

export function createSealer(options: SealerOptions): Sealer {
  const { PacketSealer } = loadNative();
  const sealer = new PacketSealer(options.mode === 'encrypt', options.localIp >>> 0, options.freshnessSeconds ?? 120);
  const setKeys = (keys: readonly AuthKey[]) => {
    const ids = new Set(keys.map((k) => k.id));
    if (keys.length === 0 || ids.size !== keys.length) throw new RangeError('auth keys must be at least one, with distinct ids');
    sealer.setKeys(keys.map((k) => k.secret), keys.map((k) => k.id));
  };
  setKeys(options.keys);
  return {
    seal: (src, offset, length, dst, dstOffset) => sealer.seal(src, offset, length, dst, dstOffset),
    open: (buffer, offset, length, senderIp) => sealer.open(buffer, offset, length, senderIp >>> 0),
    setKeys,
  };
}
