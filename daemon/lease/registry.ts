// The registry: the narrow layer that talks to Redis. It knows the key layout
// and the scripts, and nothing of allocation policy (see manager.ts).

import type { ChainableCommander } from 'ioredis';
import type { Logger } from 'pino';
import { isReplyError, type ConnectionFactory, type RedisClient } from './connection.js';
import { StoreReplicationError } from './errors.js';
import { decodeLease, type Lease } from './lease.js';
import { CLAIM, CREATE, REAP, REMOVE, RESERVE, SNAPSHOT, type LuaScript } from './scripts.js';

/** The Redis keys of one key prefix. */
export interface KeyLayout {
  readonly config: string;
  readonly leases: string;
  readonly expiry: string;
  readonly owners: string;
  readonly events: string;
  readonly seq: string;
}

export function keyLayout(prefix: string): KeyLayout {
  const tag = `{${prefix}}`;
  return {
    config: `${tag}:config`,
    leases: `${tag}:leases`,
    expiry: `${tag}:expiry`,
    owners: `${tag}:owners`,
    events: `${tag}:events`,
    seq: `${tag}:seq`,
  };
}

/** Counters of what the store had to skip. */
export interface StoreCounters {
  /** Stored lease values that could not be decoded and were skipped. */
  corruptLeases: number;
  /** Change-stream entries that could not be decoded and were skipped. */
  corruptEvents: number;
}

/** A consistent view: the leases and the stream position they correspond to. */
export interface RegistrySnapshot {
  readonly leases: Map<string, Lease>;
  /** Every subnet present in the leases hash, including ones whose value is corrupt. */
  readonly occupied: ReadonlySet<string>;
  /** Sequence number of the last event the listing includes. */
  readonly seq: number;
  /** Stream ID of that event ("0-0" if the stream is empty). */
  readonly streamId: string;
  /** Stored lease values that could not be decoded, and why. */
  readonly corrupt: readonly CorruptLease[];
}

/** A lease value the store skipped: its hash field and what is wrong with it. */
export interface CorruptLease {
  readonly subnet: string;
  readonly reason: string;
}

/** How many replicas must acknowledge each lease write, and how long to wait for them (WAIT). */
export interface Replication {
  readonly minReplicas: number;
  readonly timeoutMs: number;
}

export type CreateResult =
  | { readonly status: 'ok'; readonly subnet: string; readonly expiresAt: number }
  | { readonly status: 'taken' }
  | { readonly status: 'ip-held'; readonly subnet: string };

export type ClaimResult =
  | { readonly status: 'ok'; readonly expiresAt: number | null }
  | { readonly status: 'missing' }
  | { readonly status: 'taken'; readonly owner: string };

export type RemoveResult =
  | { readonly status: 'ok' }
  | { readonly status: 'missing' }
  | { readonly status: 'not-reserved' }
  | { readonly status: 'taken'; readonly owner: string };

export type ReserveResult =
  | { readonly status: 'ok'; readonly change: 'created' | 'converted' | 'unchanged'; readonly attrsJson: string }
  | { readonly status: 'taken'; readonly owner: string }
  | { readonly status: 'ip-held'; readonly subnet: string };

export type ChangeType = 'added' | 'renewed' | 'removed' | 'expired';

/** One entry of the change stream, as stored. */
export interface StreamEntry {
  readonly id: string;
  /** The sequence number, or NaN if the entry is corrupt. */
  readonly n: number;
  readonly type: string;
  readonly subnet: string;
  readonly attrsJson: string;
  readonly expiry: string;
}

const CHANGE_TYPES: ReadonlySet<string> = new Set(['added', 'renewed', 'removed', 'expired']);

export function isChangeType(type: string): type is ChangeType {
  return CHANGE_TYPES.has(type);
}

/** Expired leases removed per script call; a mass expiry is spread over several calls. */
const REAP_LIMIT = 256;

type Reply = readonly unknown[];

function str(value: unknown): string {
  if (typeof value === 'string') return value;
  if (typeof value === 'number') return String(value);
  if (Buffer.isBuffer(value)) return value.toString('utf8');
  return '';
}

export class LeaseRegistry {
  readonly keys: KeyLayout;
  readonly counters: StoreCounters = { corruptLeases: 0, corruptEvents: 0 };
  private readonly client: RedisClient;
  private readonly factory: ConnectionFactory;
  private readonly logger: Logger;
  private readonly streamMaxLen: number;
  private readonly scriptKeys: string[];
  private readonly replication: Replication;
  /** Redis clock minus local clock, from the last script reply. */
  private clockOffsetMs = 0;

  constructor(client: RedisClient, factory: ConnectionFactory, keys: KeyLayout, streamMaxLen: number, logger: Logger, replication: Replication) {
    this.client = client;
    this.replication = replication;
    this.factory = factory;
    this.keys = keys;
    this.streamMaxLen = streamMaxLen;
    this.logger = logger;
    this.scriptKeys = [keys.leases, keys.expiry, keys.owners, keys.events, keys.seq];
  }

  /** The current time by the Redis clock (estimated from the last script call). */
  serverNow(): number {
    return Date.now() + this.clockOffsetMs;
  }

  /**
   * Runs a script. A `durable` one (a lease write) is followed by WAIT in the
   * same pipeline, so on the same connection: WAIT counts the replicas that
   * hold everything this connection wrote, the script's writes included. Only
   * a write that took effect ('ok') needs the acknowledgement; a refusal
   * ('missing', 'taken', ...) is reported as it is.
   */
  private async run(script: LuaScript, args: readonly (string | number)[], what: string, durable = false): Promise<Reply> {
    const argv = [this.streamMaxLen, REAP_LIMIT, ...args];
    const keys = this.scriptKeys;
    const wait = durable && this.replication.minReplicas > 0;
    const sentAt = Date.now();
    let reply: unknown;
    let acknowledged = Infinity;
    try {
      try {
        if (wait) ({ reply, acknowledged } = await this.thenWait((p) => p.evalsha(script.sha, keys.length, ...keys, ...argv)));
        else reply = await this.client.evalsha(script.sha, keys.length, ...keys, ...argv);
      } catch (err) {
        // Script cache empty (a restart, a failover, SCRIPT FLUSH): send the source once.
        if (!isReplyError(err) || !err.message.startsWith('NOSCRIPT')) throw err;
        if (wait) ({ reply, acknowledged } = await this.thenWait((p) => p.eval(script.lua, keys.length, ...keys, ...argv)));
        else reply = await this.client.eval(script.lua, keys.length, ...keys, ...argv);
      }
    } catch (err) {
      throw this.factory.wrap(err, what);
    }
    if (!Array.isArray(reply) || typeof reply[0] !== 'number') {
      throw this.factory.wrap(new Error(`unexpected reply to the ${script.name} script: ${JSON.stringify(reply)}`), what);
    }
    const replicated = acknowledged >= this.replication.minReplicas;
    // A WAIT that sat out its timeout would skew the estimate of the Redis clock.
    if (replicated) this.clockOffsetMs = reply[0] - (sentAt + Date.now()) / 2;
    if (reply[1] === 'ok' && !replicated) throw this.notReplicated(what, acknowledged);
    return reply;
  }

  /** Sends one write and then WAIT in a pipeline; the write's reply and how many replicas acknowledged it. */
  private async thenWait(write: (pipeline: ChainableCommander) => unknown): Promise<{ reply: unknown; acknowledged: number }> {
    const pipeline = this.client.pipeline();
    write(pipeline);
    pipeline.wait(this.replication.minReplicas, this.replication.timeoutMs);
    const results = await pipeline.exec();
    if (results === null) throw new Error('the pipeline was discarded');
    const [writeResult, waitResult] = results;
    if (writeResult?.[0]) throw writeResult[0];
    if (waitResult?.[0]) throw waitResult[0];
    return { reply: writeResult?.[1], acknowledged: Number(waitResult?.[1]) || 0 };
  }

  private notReplicated(what: string, acknowledged: number): StoreReplicationError {
    const { minReplicas, timeoutMs } = this.replication;
    return new StoreReplicationError(
      this.factory.address,
      `Redis at ${this.factory.address} applied ${what}, but only ${acknowledged} of ${minReplicas} replicas acknowledged it within ` +
        `${timeoutMs} ms (minReplicas, --redis-min-replicas): a failover now could lose it; check the replicas (INFO replication)`,
      { acknowledged, required: minReplicas },
    );
  }

  /** A stored lease, decoded; or, logged and counted, why it cannot be. */
  private decodeForListing(subnet: string, attrsJson: string, expiry: string | null): Lease | CorruptLease {
    const result = decodeLease(subnet, attrsJson, expiry);
    if (result.ok) return result.lease;
    this.counters.corruptLeases++;
    this.logger.warn({ subnet, reason: result.reason, source: 'listing', key: this.keys.leases }, 'skipping corrupt lease value');
    return { subnet, reason: result.reason };
  }

  async snapshot(): Promise<RegistrySnapshot> {
    const reply = await this.run(SNAPSHOT, [], 'listing leases');
    const flat = (reply[3] ?? []) as unknown[];
    const expiryFlat = (reply[4] ?? []) as unknown[];
    const expiries = new Map<string, string>();
    for (let i = 0; i + 1 < expiryFlat.length; i += 2) expiries.set(str(expiryFlat[i]), str(expiryFlat[i + 1]));
    const leases = new Map<string, Lease>();
    const occupied = new Set<string>();
    const corrupt: CorruptLease[] = [];
    for (let i = 0; i + 1 < flat.length; i += 2) {
      const subnet = str(flat[i]);
      occupied.add(subnet);
      const decoded = this.decodeForListing(subnet, str(flat[i + 1]), expiries.get(subnet) ?? null);
      if ('reason' in decoded) corrupt.push(decoded);
      else leases.set(decoded.subnet, decoded);
    }
    return { leases, occupied, seq: Number(str(reply[1])), streamId: str(reply[2]), corrupt };
  }

  async create(publicIP: string, attrsJson: string, ttlMs: number, candidates: readonly string[]): Promise<CreateResult> {
    const reply = await this.run(CREATE, [publicIP, attrsJson, ttlMs, ...candidates], 'creating a lease', true);
    switch (reply[1]) {
      case 'ok':
        return { status: 'ok', subnet: str(reply[2]), expiresAt: Number(str(reply[3])) };
      case 'ip-held':
        return { status: 'ip-held', subnet: str(reply[2]) };
      default:
        return { status: 'taken' };
    }
  }

  async claim(subnet: string, publicIP: string, attrsJson: string, ttlMs: number): Promise<ClaimResult> {
    const reply = await this.run(CLAIM, [subnet, publicIP, attrsJson, ttlMs], 'renewing a lease', true);
    switch (reply[1]) {
      case 'ok': {
        const expiry = str(reply[3]);
        return { status: 'ok', expiresAt: expiry === '' ? null : Number(expiry) };
      }
      case 'missing':
        return { status: 'missing' };
      default:
        return { status: 'taken', owner: str(reply[2]) };
    }
  }

  async remove(subnet: string, publicIP: string | null, mode: 'any' | 'reservation'): Promise<RemoveResult> {
    const reply = await this.run(REMOVE, [subnet, publicIP ?? '', mode], 'removing a lease', true);
    switch (reply[1]) {
      case 'ok':
        return { status: 'ok' };
      case 'missing':
        return { status: 'missing' };
      case 'not-reserved':
        return { status: 'not-reserved' };
      default:
        return { status: 'taken', owner: str(reply[2]) };
    }
  }

  async reserve(subnet: string, publicIP: string, attrsJson: string): Promise<ReserveResult> {
    const reply = await this.run(RESERVE, [subnet, publicIP, attrsJson], 'reserving a subnet', true);
    switch (reply[1]) {
      case 'ok':
        return { status: 'ok', change: str(reply[2]) as 'created' | 'converted' | 'unchanged', attrsJson: str(reply[3]) };
      case 'ip-held':
        return { status: 'ip-held', subnet: str(reply[2]) };
      default:
        return { status: 'taken', owner: str(reply[2]) };
    }
  }

  /** Removes expired leases, each with an "expired" event. Returns how many. */
  async reap(): Promise<number> {
    const reply = await this.run(REAP, [], 'reaping expired leases');
    return Number(reply[1]);
  }

  async getConfigText(): Promise<string | null> {
    try {
      return await this.client.get(this.keys.config);
    } catch (err) {
      throw this.factory.wrap(err, 'reading the network config');
    }
  }

  async setConfigText(text: string): Promise<void> {
    const what = 'writing the network config';
    let acknowledged = Infinity;
    try {
      if (this.replication.minReplicas > 0) ({ acknowledged } = await this.thenWait((pipeline) => pipeline.set(this.keys.config, text)));
      else await this.client.set(this.keys.config, text);
    } catch (err) {
      throw this.factory.wrap(err, what);
    }
    if (acknowledged < this.replication.minReplicas) throw this.notReplicated(what, acknowledged);
  }

  /**
   * Reads stream entries after `afterId` on a blocking client. Resolves with
   * [] when `blockMs` passes without news.
   */
  async readEvents(blocking: RedisClient, afterId: string, count: number, blockMs: number): Promise<StreamEntry[]> {
    const reply = await blocking.xread('COUNT', count, 'BLOCK', blockMs, 'STREAMS', this.keys.events, afterId);
    if (reply === null || reply.length === 0) return [];
    return (reply[0]?.[1] ?? []).map(([id, fields]) => parseEntry(id, fields));
  }

  /** The entry with exactly this ID, or undefined if it is gone (trimmed, or lost in a failover). */
  async entryAt(client: RedisClient, id: string): Promise<StreamEntry | undefined> {
    const reply = await client.xrange(this.keys.events, id, id);
    const first = reply[0];
    return first === undefined ? undefined : parseEntry(first[0], first[1]);
  }
}

function parseEntry(id: string, fields: readonly string[]): StreamEntry {
  const values = new Map<string, string>();
  for (let i = 0; i + 1 < fields.length; i += 2) values.set(fields[i]!, fields[i + 1]!);
  const nText = values.get('n') ?? '';
  return {
    id,
    n: /^[0-9]+$/.test(nText) ? Number(nText) : NaN,
    type: values.get('t') ?? '',
    subnet: values.get('s') ?? '',
    attrsJson: values.get('l') ?? '',
    expiry: values.get('e') ?? '',
  };
}
