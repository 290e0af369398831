// The registry: the narrow layer that talks to Redis. It knows the key layout
// and the scripts, and nothing of allocation policy (see manager.ts).

import { randomBytes } from 'node:crypto';
import { Cluster, type ChainableCommander } from 'ioredis';
import type { Logger } from 'pino';
import { isReplyError, type CommandLink, type ConnectionFactory, type RedisClient } from './connection.js';
import type { HostPort } from './endpoint.js';
import { StoreReplicationError } from './errors.js';
import type { Cidr } from '../net/ipv4.js';
import { formatIPv6, type Cidr6 } from '../net/ipv6.js';
import type { AllocatableRange } from './config.js';
import { decodeLease, parseSubnetKey, type Lease } from './lease.js';
import { CLAIM, CREATE, ENSURE_CONFIG, LIST_CHUNK, POSITION, REAP, REMOVE, RESERVE, SET_CONFIG, type LuaScript } from './scripts.js';

/** The Redis keys (and the change channel) of one key prefix. */
export interface KeyLayout {
  readonly config: string;
  readonly leases: string;
  readonly expiry: string;
  readonly owners: string;
  readonly events: string;
  readonly seq: string;
  readonly epoch: string;
  readonly allocated: string;
  readonly allocatable: string;
  readonly revoked: string;
  readonly settling: string;
  /** The Pub/Sub channel each change is published on (not a key). */
  readonly channel: string;
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
    epoch: `${tag}:epoch`,
    allocated: `${tag}:allocated`,
    allocatable: `${tag}:allocatable`,
    revoked: `${tag}:revoked`,
    settling: `${tag}:settling`,
    channel: `${tag}:changes`,
  };
}

/** The KEYS every lease script takes, in the order scripts.ts documents. */
export function scriptKeys(keys: KeyLayout): string[] {
  return [keys.leases, keys.expiry, keys.owners, keys.events, keys.seq, keys.epoch, keys.allocated, keys.allocatable, keys.revoked, keys.settling, keys.config];
}

/** Counters of what the store had to skip. */
export interface StoreCounters {
  /** Stored lease values that could not be decoded and were skipped. */
  corruptLeases: number;
  /** Change entries (stream or push) that could not be decoded and were skipped. */
  corruptEvents: number;
}

/**
 * Where the store's data stands: which incarnation of it (the epoch; null
 * when the store holds none yet, or lost it) and the last change written.
 */
export interface StorePosition {
  readonly epoch: string | null;
  /** Sequence number of the last change. */
  readonly seq: number;
  /** Stream ID of that change ("0-0" if the stream is empty). */
  readonly streamId: string;
}

/** A lease value the store skipped: its hash field and what is wrong with it. */
export interface CorruptLease {
  readonly subnet: string;
  readonly reason: string;
}

/** Every live lease, listed in chunks, and the values that could not be decoded. */
export interface RegistryListing {
  readonly leases: Map<string, Lease>;
  readonly corrupt: readonly CorruptLease[];
}

/** How many replicas must acknowledge each lease write, and how long to wait for them (WAIT). */
export interface Replication {
  readonly minReplicas: number;
  readonly timeoutMs: number;
}

/**
 * The range as CREATE takes it. The IPv4 text is the one stored before IPv6
 * ranges existed, so an upgrade does not rebuild the bitmap; the ':' of the
 * IPv6 address tells the scripts which one they read.
 */
function rangeText(range: AllocatableRange): string {
  if (range.family === 4) return `${range.first} ${range.size} ${range.count} ${range.prefixLength}`;
  return `${formatIPv6(range.first)} ${range.count} ${range.prefixLength}`;
}

/** `subnet` is the stored text and `cidr` the same subnet decoded. */
export type CreateResult =
  | { readonly status: 'ok'; readonly subnet: string; readonly cidr: Cidr | Cidr6; readonly expiresAt: number; readonly source: 'previous' | 'new'; readonly leases: number }
  | { readonly status: 'full'; readonly leases: number }
  | { readonly status: 'settling'; readonly waitMs: number }
  | { readonly status: 'ip-held'; readonly subnet: string; readonly cidr: Cidr | Cidr6; readonly reservation: boolean };

export type ClaimResult =
  | { readonly status: 'ok'; readonly change: 'renewed' | 'updated' | 'restored'; readonly expiresAt: number | null; readonly leases: number }
  | { readonly status: 'revoked' }
  | { readonly status: 'taken'; readonly owner: string };

export type RemoveResult =
  | { readonly status: 'ok' }
  | { readonly status: 'missing' }
  | { readonly status: 'not-reserved' }
  | { readonly status: 'taken'; readonly owner: string };

export type ReserveResult =
  | { readonly status: 'ok'; readonly change: 'created' | 'converted' | 'updated' | 'unchanged'; readonly attrsJson: string }
  /** `holder` is undefined when its stored value is corrupt. */
  | { readonly status: 'taken'; readonly holder: Lease | undefined }
  | { readonly status: 'ip-held'; readonly subnet: string }
  | { readonly status: 'unnamed' };

export type ConfigWriteResult =
  | { readonly status: 'ok' | 'refused'; readonly leases: number }
  | { readonly status: 'changed' };

export type ChangeType = 'added' | 'removed' | 'expired';

/** One change, as stored in the stream or pushed on the channel. */
export interface ChangeEntry {
  /** The stream ID. */
  readonly id: string;
  /** The sequence number, or NaN if the entry is corrupt. */
  readonly n: number;
  readonly type: string;
  readonly subnet: string;
  readonly attrsJson: string;
  /** Expiry in ms as text, '' for a reservation. */
  readonly expiry: string;
}

/** A change as pushed on the channel: the entry and the epoch it belongs to. */
export interface PushedChange extends ChangeEntry {
  readonly epoch: string;
}

const CHANGE_TYPES: ReadonlySet<string> = new Set(['added', 'removed', 'expired']);

export function isChangeType(type: string): type is ChangeType {
  return CHANGE_TYPES.has(type);
}

/** Expired leases removed per script call; a mass expiry is spread over several calls. */
const REAP_LIMIT = 256;

/** Times a WAIT pipeline redirected by Redis Cluster (MOVED) is sent again after refreshing the slot map. */
const PIPELINE_REDIRECTIONS = 3;

/** Reads the slot map again (CLUSTER SLOTS). */
function refreshSlots(client: Cluster): Promise<void> {
  return new Promise<void>((resolve, reject) => client.refreshSlotsCache((err) => (err ? reject(err) : resolve())));
}

/** Leases per listing chunk: no single reply carries the whole table. */
export const LIST_CHUNK_SIZE = 500;

type Reply = readonly unknown[];

function str(value: unknown): string {
  if (typeof value === 'string') return value;
  if (typeof value === 'number') return String(value);
  if (Buffer.isBuffer(value)) return value.toString('utf8');
  return '';
}

function expiryOf(text: string): number | null {
  return text === '' ? null : Number(text);
}

export class LeaseRegistry {
  readonly keys: KeyLayout;
  readonly counters: StoreCounters = { corruptLeases: 0, corruptEvents: 0 };
  private readonly link: CommandLink;
  private readonly factory: ConnectionFactory;
  private readonly logger: Logger;
  private readonly streamMaxLen: number;
  private readonly scriptKeys: string[];
  private readonly replication: Replication;
  /** Redis clock minus local clock, from the last script reply. */
  private clockOffsetMs = 0;

  constructor(link: CommandLink, factory: ConnectionFactory, keys: KeyLayout, streamMaxLen: number, logger: Logger, replication: Replication) {
    this.link = link;
    this.replication = replication;
    this.factory = factory;
    this.keys = keys;
    this.streamMaxLen = streamMaxLen;
    this.logger = logger;
    this.scriptKeys = scriptKeys(keys);
  }

  /** The current time by the Redis clock (estimated from the last script call). */
  serverNow(): number {
    return Date.now() + this.clockOffsetMs;
  }

  /** Runs `use` on the command connection; any failure becomes one of the store's errors, saying what was being done. */
  private async command<T>(what: string, use: (client: RedisClient) => Promise<T>): Promise<T> {
    try {
      return await this.link.run(use);
    } catch (err) {
      throw this.factory.wrap(err, what);
    }
  }

  /**
   * Runs a lease script. A `durable` one (a lease write) is followed by WAIT
   * in the same pipeline, so on the same connection: WAIT counts the replicas
   * that hold everything this connection wrote, the script's writes included.
   * Only a write that took effect ('ok') needs the acknowledgement; a refusal
   * ('missing', 'taken', ...) is reported as it is.
   */
  private async run(script: LuaScript, args: readonly (string | number)[], what: string, durable = false): Promise<Reply> {
    // A fresh epoch with every call: a store that lost its data must never get an epoch it had before.
    const argv = [this.streamMaxLen, REAP_LIMIT, randomBytes(8).toString('hex'), this.keys.channel, ...args];
    const keys = this.scriptKeys;
    const wait = durable && this.replication.minReplicas > 0;
    const sentAt = Date.now();
    const { reply, acknowledged } = await this.command(what, async (client) => {
      try {
        if (wait) return await this.thenWait(client, (p) => p.evalsha(script.sha, keys.length, ...keys, ...argv));
        return { reply: await client.evalsha(script.sha, keys.length, ...keys, ...argv), acknowledged: Infinity };
      } catch (err) {
        // Script cache empty (a restart, a failover, SCRIPT FLUSH): send the source once.
        if (!isReplyError(err) || !err.message.startsWith('NOSCRIPT')) throw err;
        if (wait) return await this.thenWait(client, (p) => p.eval(script.lua, keys.length, ...keys, ...argv));
        return { reply: await client.eval(script.lua, keys.length, ...keys, ...argv), acknowledged: Infinity };
      }
    });
    if (!Array.isArray(reply) || typeof reply[0] !== 'number') {
      throw this.factory.wrap(new Error(`unexpected reply to the ${script.name} script: ${JSON.stringify(reply)}`), what);
    }
    const replicated = acknowledged >= this.replication.minReplicas;
    // A WAIT that sat out its timeout would skew the estimate of the Redis clock.
    if (replicated) this.clockOffsetMs = reply[0] - (sentAt + Date.now()) / 2;
    if (reply[1] === 'ok' && !replicated) throw this.notReplicated(what, acknowledged);
    return reply;
  }

  /**
   * Sends one write and then WAIT in a pipeline; the write's reply and how
   * many replicas acknowledged it. On Redis Cluster, ioredis follows a MOVED
   * in a pipeline only when every other command in it is read-only, and WAIT
   * is not: the redirection comes back here, and the client's slot map stays
   * stale. A redirected write was refused, not run, so it is sent again once
   * the map is fresh; a slot still moving is reported as unavailable (wrap).
   */
  private async thenWait(client: RedisClient, write: (pipeline: ChainableCommander) => unknown): Promise<{ reply: unknown; acknowledged: number }> {
    for (let redirections = 0; ; redirections++) {
      const pipeline = client.pipeline();
      write(pipeline);
      pipeline.wait(this.replication.minReplicas, this.replication.timeoutMs);
      const results = await pipeline.exec();
      if (results === null) throw new Error('the pipeline was discarded');
      const [writeResult, waitResult] = results;
      const writeError = writeResult?.[0];
      if (writeError && client instanceof Cluster && redirections < PIPELINE_REDIRECTIONS && isReplyError(writeError) && writeError.message.startsWith('MOVED ')) {
        await refreshSlots(client);
        continue;
      }
      if (writeError) throw writeError;
      if (waitResult?.[0]) throw waitResult[0];
      return { reply: writeResult?.[1], acknowledged: Number(waitResult?.[1]) || 0 };
    }
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

  /** `owner`, here and in claim, remove and reserve: the owner's address (ownerAddress: PublicIP, or PublicIPv6 without one). */
  async create(owner: string, attrsJson: string, ttlMs: number, previous: string | undefined, range: AllocatableRange, start: number): Promise<CreateResult> {
    const reply = await this.run(CREATE, [owner, attrsJson, ttlMs, previous ?? '', rangeText(range), start], 'creating a lease', true);
    switch (reply[1]) {
      case 'ok': {
        const subnet = str(reply[2]);
        return { status: 'ok', subnet, cidr: parseSubnetKey(subnet), expiresAt: Number(str(reply[3])), source: str(reply[4]) === 'previous' ? 'previous' : 'new', leases: Number(reply[5]) };
      }
      case 'ip-held': {
        const subnet = str(reply[2]);
        return { status: 'ip-held', subnet, cidr: parseSubnetKey(subnet), reservation: str(reply[3]) === '' };
      }
      case 'settling':
        return { status: 'settling', waitMs: Number(reply[2]) };
      default:
        return { status: 'full', leases: Number(reply[2]) };
    }
  }

  async claim(subnet: string, owner: string, attrsJson: string, ttlMs: number, kind: 'lease' | 'reservation'): Promise<ClaimResult> {
    const reply = await this.run(CLAIM, [subnet, owner, attrsJson, ttlMs, kind], 'renewing a lease', true);
    switch (reply[1]) {
      case 'ok':
        return { status: 'ok', change: str(reply[2]) as 'renewed' | 'updated' | 'restored', expiresAt: expiryOf(str(reply[3])), leases: Number(reply[4]) };
      case 'revoked':
        return { status: 'revoked' };
      case 'ip-held':
        return { status: 'taken', owner: `${owner} (which now holds ${str(reply[2])})` };
      default:
        return { status: 'taken', owner: str(reply[2]) };
    }
  }

  /** `record`: remember the revocation, so that the owner's node stops instead of putting the lease back. */
  async remove(subnet: string, owner: string | null, mode: 'any' | 'reservation', record: boolean): Promise<RemoveResult> {
    const reply = await this.run(REMOVE, [subnet, owner ?? '', mode, record ? '1' : '0'], 'removing a lease', true);
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

  /** `nodeName` undefined: keep the name stored on the subnet ('' for a new reservation, whose attributes are `attrsJson`). */
  async reserve(subnet: string, owner: string, attrsJson: string, nodeName: string | undefined): Promise<ReserveResult> {
    const reply = await this.run(RESERVE, [subnet, owner, attrsJson, nodeName === undefined ? '' : JSON.stringify(nodeName)], 'reserving a subnet', true);
    switch (reply[1]) {
      case 'ok':
        return { status: 'ok', change: str(reply[2]) as 'created' | 'converted' | 'updated' | 'unchanged', attrsJson: str(reply[3]) };
      case 'ip-held':
        return { status: 'ip-held', subnet: str(reply[2]) };
      case 'unnamed':
        return { status: 'unnamed' };
      default: {
        const holder = decodeLease(subnet, str(reply[2]), str(reply[3]));
        return { status: 'taken', holder: holder.ok ? holder.lease : undefined };
      }
    }
  }

  /** Removes expired leases, each with an "expired" event. Returns how many, and how many leases remain. */
  async reap(): Promise<{ reaped: number; leases: number }> {
    const reply = await this.run(REAP, [], 'reaping expired leases');
    return { reaped: Number(reply[1]), leases: Number(reply[2]) };
  }

  async position(): Promise<StorePosition> {
    const reply = await this.run(POSITION, [], 'reading the change position');
    const epoch = str(reply[1]);
    return { epoch: epoch === '' ? null : epoch, seq: Number(str(reply[2])) || 0, streamId: str(reply[3]) };
  }

  /** A stored lease, decoded; or, logged and counted, why it cannot be. */
  private decodeListed(subnet: string, attrsJson: string, expiry: string | null): Lease | CorruptLease {
    const result = decodeLease(subnet, attrsJson, expiry);
    if (result.ok) return result.lease;
    this.counters.corruptLeases++;
    this.logger.warn({ subnet, reason: result.reason, source: 'listing', key: this.keys.leases }, 'skipping corrupt lease value');
    return { subnet, reason: result.reason };
  }

  /**
   * Every live lease, read LIST_CHUNK_SIZE at a time with HSCAN. Not one
   * atomic view: a lease changed during the listing may be seen before or
   * after the change. A watcher replays the changes after the position it
   * read first, which makes the result exact. Expired leases not yet reaped
   * are left out; nothing is written.
   */
  async list(): Promise<RegistryListing> {
    const leases = new Map<string, Lease>();
    const corrupt: CorruptLease[] = [];
    let cursor = '0';
    do {
      const reply = await this.run(LIST_CHUNK, [cursor, LIST_CHUNK_SIZE], 'listing leases');
      const now = Number(reply[0]);
      cursor = str(reply[1]);
      const fields = (reply[2] ?? []) as unknown[];
      const expiries = (reply[3] ?? []) as unknown[];
      for (let i = 0; i + 1 < fields.length; i += 2) {
        const subnet = str(fields[i]);
        const expiry = expiries[i / 2];
        const expiryText = expiry === null || expiry === undefined ? null : str(expiry);
        if (expiryText !== null && Number(expiryText) <= now) continue;
        const decoded = this.decodeListed(subnet, str(fields[i + 1]), expiryText);
        if ('reason' in decoded) corrupt.push(decoded);
        else leases.set(decoded.subnet, decoded);
      }
    } while (cursor !== '0');
    return { leases, corrupt };
  }

  async getConfigText(): Promise<string | null> {
    return this.command('reading the network config', (client) => client.get(this.keys.config));
  }

  /**
   * Stores `text` as the network config if the stored text is still
   * `expected` (null: none), refusing while live leases exist if `guarded`;
   * with `dryRun`, decides the same way but writes nothing.
   */
  async writeConfigText(expected: string | null, text: string, guarded: boolean, dryRun: boolean): Promise<ConfigWriteResult> {
    const reply = await this.run(SET_CONFIG, [expected ?? '', text, guarded ? '1' : '0', dryRun ? '1' : '0'], 'writing the network config', !dryRun);
    if (reply[1] === 'changed') return { status: 'changed' };
    return { status: reply[1] === 'refused' ? 'refused' : 'ok', leases: Number(reply[2]) };
  }

  /** Stores `text` as the network config if none is stored; otherwise returns the stored one. */
  async ensureConfigText(text: string): Promise<{ stored: true } | { stored: false; current: string }> {
    const reply = await this.command('restoring the network config', async (client) => {
      try {
        return await client.evalsha(ENSURE_CONFIG.sha, 2, this.keys.config, this.keys.settling, text);
      } catch (err) {
        if (!isReplyError(err) || !err.message.startsWith('NOSCRIPT')) throw err;
        return client.eval(ENSURE_CONFIG.lua, 2, this.keys.config, this.keys.settling, text);
      }
    });
    const values = reply as unknown[];
    return str(values[0]) === 'stored' ? { stored: true } : { stored: false, current: str(values[1]) };
  }

  /** The master that serves `slot` on Redis Cluster, from a fresh read of the slot map. */
  async slotMaster(slot: number): Promise<HostPort> {
    return this.command('finding the node that holds the store', async (client) => {
      if (!(client instanceof Cluster)) throw new Error('not a Redis Cluster');
      await refreshSlots(client);
      const nodeKey = client.slots[slot]?.[0];
      const at = nodeKey?.lastIndexOf(':') ?? -1;
      if (nodeKey === undefined || at < 0) throw new Error(`no node serves slot ${slot}`);
      return { host: nodeKey.slice(0, at), port: Number(nodeKey.slice(at + 1)) };
    });
  }

  /** Up to `count` stream entries after `afterId` (exclusive), oldest first. */
  async readChangesAfter(afterId: string, count: number): Promise<ChangeEntry[]> {
    const start = afterId === '0-0' ? '-' : `(${afterId}`;
    const reply = await this.command('reading the change stream', (client) => client.xrange(this.keys.events, start, '+', 'COUNT', count));
    return reply.map(([id, fields]) => parseStreamEntry(id, fields));
  }
}

function sequenceNumber(text: string): number {
  return /^[0-9]+$/.test(text) ? Number(text) : NaN;
}

function parseStreamEntry(id: string, fields: readonly string[]): ChangeEntry {
  const values = new Map<string, string>();
  for (let i = 0; i + 1 < fields.length; i += 2) values.set(fields[i]!, fields[i + 1]!);
  return {
    id,
    n: sequenceNumber(values.get('n') ?? ''),
    type: values.get('t') ?? '',
    subnet: values.get('s') ?? '',
    attrsJson: values.get('l') ?? '',
    expiry: values.get('e') ?? '',
  };
}

/**
 * A change pushed on the channel: "<epoch> <n> <type> <subnet> <expiry or -> <stream ID> <attributes>".
 * Undefined if the message does not have that shape.
 */
export function parsePushedChange(message: string): PushedChange | undefined {
  const fields: string[] = [];
  let at = 0;
  for (let i = 0; i < 6; i++) {
    const space = message.indexOf(' ', at);
    if (space < 0) return undefined;
    fields.push(message.slice(at, space));
    at = space + 1;
  }
  const [epoch, n, type, subnet, expiry, id] = fields as [string, string, string, string, string, string];
  return { epoch, n: sequenceNumber(n), type, subnet, expiry: expiry === '-' ? '' : expiry, id, attrsJson: message.slice(at) };
}
