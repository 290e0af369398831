export { DataPlane } from './dataplane.js';
export type { DataPlaneOptions } from './dataplane.js';
export { PeerTable } from './peer-table.js';
export type { Peer } from './peer-table.js';
export type { CountersSnapshot, EgressDropReason, IngressDropReason } from './counters.js';
export { egressDropReasons, ingressDropReasons, emptyCounters } from './counters.js';
export type { PacketBatch } from './packet-batch.js';
export { authKey, createSealer, SEAL_OVERHEAD } from './sealing.js';
export type { AuthKey, SealMode, Sealer } from './sealing.js';
