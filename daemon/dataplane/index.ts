export { DataPlane } from './dataplane.js';
export type { DataPlaneOptions } from './dataplane.js';
export { PeerEntry, PeerTable } from './peer-table.js';
export type { Peer, PeerTraffic, PeerTrafficView } from './peer-table.js';
export type { CountersSnapshot, EgressDropReason, IngressDropReason, PacketCounter, PacketCounterKey } from './counters.js';
export { egressDropReasons, ingressDropReasons, emptyCounters, packetCounters } from './counters.js';
export type { PacketBatch } from '../net/packet-batch.js';
export { AUTH_KEY_BYTES, authKey, createSealer, SEAL_OVERHEAD } from './sealing.js';
export type { AuthKey, Sealer } from './sealing.js';
