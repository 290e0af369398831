// One class per kind of failure. Callers tell them apart with `instanceof`,
// never by message; a wrapped failure keeps its origin in `cause`.

/** Base class of every error the lease store throws. */
export class LeaseStoreError extends Error {
  override readonly name: string = 'LeaseStoreError';
}

/** An option passed to connectLeaseStore (or a helper) is out of range. */
export class OptionsError extends LeaseStoreError {
  override readonly name = 'OptionsError';
  /** The option to change, e.g. "renewMarginMs". */
  readonly option: string;

  constructor(option: string, message: string, options?: ErrorOptions) {
    super(message, options);
    this.option = option;
  }
}

/** The network config (flannel's net-conf.json) breaks a rule. */
export class ConfigError extends LeaseStoreError {
  override readonly name = 'ConfigError';
  /** The net-conf field at fault, e.g. "SubnetMin" or "Backend.Type". */
  readonly field: string;

  constructor(field: string, message: string, options?: ErrorOptions) {
    super(message, options);
    this.field = field;
  }
}

/** No network config is stored yet. */
export class ConfigMissingError extends LeaseStoreError {
  override readonly name = 'ConfigMissingError';
  /** The Redis key that was read. */
  readonly key: string;

  constructor(key: string) {
    super(
      `no network config is stored at Redis key ${key}; run \`miniflannel config set\` with a net-conf.json ` +
        `(e.g. {"Network": "10.5.0.0/16", "Backend": {"Type": "udp"}}) first`,
    );
    this.key = key;
  }
}

/** Every subnet in SubnetMin..SubnetMax is leased or reserved. */
export class OutOfSubnetsError extends LeaseStoreError {
  override readonly name = 'OutOfSubnetsError';
}

/**
 * The lease this node held cannot be kept: an operator revoked it, or another
 * node now holds the subnet. (A lease that is merely gone, because the store
 * lost its data or it expired, is put back instead.)
 */
export class LeaseLostError extends LeaseStoreError {
  override readonly name = 'LeaseLostError';
  readonly subnet: string;
  /** "revoked": an operator revoked it; "taken": it belongs to another public IP. */
  readonly reason: 'revoked' | 'taken';

  constructor(subnet: string, reason: 'revoked' | 'taken', message: string) {
    super(message);
    this.subnet = subnet;
    this.reason = reason;
  }
}

/**
 * A write could not be applied because the store holds something else: the
 * subnet belongs to another node, the public IP already holds another lease,
 * or concurrent acquirers kept winning until the retry budget ran out.
 */
export class LeaseConflictError extends LeaseStoreError {
  override readonly name = 'LeaseConflictError';
}

/**
 * A config write would change the subnet layout (Network, SubnetLen,
 * IPv6Network, IPv6SubnetLen, or turn IPv6 off) while leases exist, and
 * was not forced: the nodes would keep subnets outside the new layout until
 * they restart. Nothing was written.
 */
export class ConfigChangeRefusedError extends LeaseStoreError {
  override readonly name = 'ConfigChangeRefusedError';
  /** The fields of the layout the write would change. */
  readonly fields: readonly LayoutField[];
  /** The live leases (reservations included) when the write was refused. */
  readonly leases: number;

  constructor(fields: readonly LayoutField[], leases: number) {
    super(`refusing to change ${layoutChangeUnderLeases(fields, leases)}: the nodes would keep subnets outside the new layout until they restart; pass --force to change it anyway`);
    this.fields = fields;
    this.leases = leases;
  }
}

/** The network config fields that decide which subnets exist (see layoutChanges for why EnableIPv6 counts only when turned off). */
export type LayoutField = 'Network' | 'SubnetLen' | 'IPv6Network' | 'IPv6SubnetLen' | 'EnableIPv4' | 'EnableIPv6';

/** "Network and SubnetLen while 2 leases exist": what a forced or refused layout change does. */
export function layoutChangeUnderLeases(fields: readonly LayoutField[], leases: number): string {
  return `${fields.join(' and ')} while ${leases} lease${leases === 1 ? '' : 's'} exist${leases === 1 ? 's' : ''}`;
}

/** Redis could not be reached, or did not answer in time. */
export class StoreUnavailableError extends LeaseStoreError {
  override readonly name: string = 'StoreUnavailableError';
  /** The Redis address, with any password masked. */
  readonly address: string;

  constructor(address: string, message: string, options?: ErrorOptions) {
    super(message, options);
    this.address = address;
  }
}

/** Redis answered with an error (e.g. WRONGTYPE because a key was overwritten by hand). */
export class StoreCommandError extends LeaseStoreError {
  override readonly name = 'StoreCommandError';
}

/**
 * A write was applied on the master but fewer than minReplicas replicas
 * acknowledged it within replicationTimeoutMs. It is not lost yet, but a
 * failover now could lose it; the caller should retry (a renewer does). A
 * kind of StoreUnavailableError, since the cure is the same: wait and retry.
 */
export class StoreReplicationError extends StoreUnavailableError {
  override readonly name = 'StoreReplicationError';
  /** Replicas that acknowledged the write. */
  readonly acknowledged: number;
  readonly required: number;

  constructor(address: string, message: string, counts: { acknowledged: number; required: number }, options?: ErrorOptions) {
    super(address, message, options);
    this.acknowledged = counts.acknowledged;
    this.required = counts.required;
  }
}

/**
 * Redis refused the credentials (WRONGPASS, NOAUTH), or its TLS certificate
 * could not be verified. Retrying will not help: the URL's user and password,
 * or the CA, must change. Never carries the password, not even in `cause`.
 */
export class StoreAccessError extends LeaseStoreError {
  override readonly name = 'StoreAccessError';
  /** The Redis address, with any password masked. */
  readonly address: string;

  constructor(address: string, message: string, options?: ErrorOptions) {
    super(message, options);
    this.address = address;
  }
}
