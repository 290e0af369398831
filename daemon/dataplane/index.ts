export { DataPlane } from './dataplane.js';
export type { DataPlaneOptions } from './dataplane.js';
export { PeerTable } from './peer-table.js';
export type { Peer } from './peer-table.js';
export type { CountersSnapshot, EgressDropReason, IngressDropReason } from './counters.js';
export { egressDropReasons, ingressDropReasons, emptyCounters } from './counters.js';
export type { PacketBatch } from './packet-batch.js';
