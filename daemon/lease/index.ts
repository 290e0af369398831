// The lease store: miniflannel's network config and per-node subnet leases
// in Redis, with flannel's guarantees (atomic allocation, TTLs, renewal,
// reservations, and a watch that never silently misses a change), held as
// soft state: the nodes re-assert what a store that lost its data forgot.
// Key layout and guarantees: docs/redis.md.
//
// Exports: connectLeaseStore (the SubnetManager), the net-conf parser, its
// subnet rule (misfitOf) and its IPv4/IPv6 pairing (ipv6SubnetOf,
// ipv4SubnetOf), the URL parser, the error classes, and the public types. The registry, the
// scripts and the connection plumbing stay internal.

export { connectLeaseStore } from './manager.js';
export type {
  AcquireRequest,
  AcquireResult,
  AcquireSource,
  ConfigCheck,
  ConfigWrite,
  ConfigWriteOptions,
  LeaseListing,
  LeaseStoreStats,
  Reservation,
  ReserveOutcome,
  SubnetManager,
} from './manager.js';

export { LeaseKeeper } from './keeper.js';
export type { KeepLeaseOptions, LeaseKeeperEvents } from './keeper.js';

export type { LeaseWatch, SnapshotCause, WatchEvent, WatchOptions, WatchStats } from './watch.js';
export type { ChangeType, CorruptLease, KeyLayout } from './registry.js';
export { compareSubnets, formatSubnet, holderOf, ownerAddress, ownerLogFields } from './lease.js';
export type { Lease } from './lease.js';

export { parseNetworkConfig, toNetConf, misfitOf, ipv6SubnetOf, ipv4SubnetOf, subnetsOfLease, defaultSubnetLen, DEFAULT_UDP_PORT, BACKEND_TYPES } from './config.js';
export type { BackendType, EffectiveNetConf, IPv4Layout, IPv6Layout, NetConf, NetworkConfig, NodeSubnets } from './config.js';

export { LEASE_STORE_DEFAULTS, defaultReapInterval } from './options.js';
export type { LeaseStoreOptions, RetryPolicy } from './options.js';

export { parseRedisUrl, describeEndpoint, minReplicasFor } from './endpoint.js';
export type { RedisEndpoint, StandaloneEndpoint, SentinelEndpoint, ClusterEndpoint, HostPort } from './endpoint.js';

export {
  LeaseStoreError,
  OptionsError,
  ConfigError,
  ConfigMissingError,
  ConfigChangeRefusedError,
  layoutChangeUnderLeases,
  OutOfSubnetsError,
  LeaseLostError,
  LeaseConflictError,
  StoreUnavailableError,
  StoreReplicationError,
  StoreAccessError,
  StoreCommandError,
} from './errors.js';
export type { LayoutField } from './errors.js';
