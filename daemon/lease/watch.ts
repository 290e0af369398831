// The watch: every lease once, then each change as Redis pushes it.
//
// 1. subscribe  one long-lived connection per watch: SUBSCRIBE to the change
//               channel, and CLIENT TRACKING on the epoch and config keys, so
//               Redis also says when the store's data is flushed or replaced.
//               An idle watch costs no command at all.
// 2. list       the position (epoch, sequence number, stream ID) is read
//               after subscribing, then the leases in chunks; the snapshot is
//               emitted, and pushed changes after that position are applied
//               on top, which makes the chunked listing exact.
// 3. push       each change arrives as one message carrying its epoch and
//               sequence number n; the next must be n + 1 of the same epoch.
// 4. catch up   a missed message, or a lost connection, is caught up from the
//               stream (XRANGE after the last stream ID): only what changed.
//               If the stream no longer holds it (trimmed, or lost in a
//               failover), the leases are listed again in chunks ("gap").
// 5. reset      a different epoch means the store lost its data, or is
//               another store: the watch says so ("reset"), then reads the
//               new incarnation's stream from its start. Consumers keep what
//               they knew until the owners re-assert their leases.
//
// Memory is bounded by watchBufferSize events: when the consumer falls that
// far behind, the watch drops its subscription and catches up from the
// stream once the consumer has made room.

import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import { closeClient, keySlot, type ConnectionFactory } from './connection.js';
import type { HostPort } from './endpoint.js';
import { StoreUnavailableError } from './errors.js';
import { bareLease, decodeLease, type Lease } from './lease.js';
import { backoffDelay, type ResolvedOptions } from './options.js';
import { isChangeType, parsePushedChange, type ChangeEntry, type ChangeType, type LeaseRegistry, type StorePosition } from './registry.js';

export type SnapshotCause = 'start' | 'gap' | 'reset';

export type WatchEvent =
  /**
   * Every live lease. `start`: the first event. `gap`: changes were missed
   * and the leases listed again; a lease known before and absent here went
   * away while the watch could not see it. `reset`: the same, after a reset
   * whose new stream no longer held every change.
   */
  | { readonly type: 'snapshot'; readonly leases: readonly Lease[]; readonly seq: string; readonly cause: SnapshotCause }
  /** One change, in order; `seq` is its stream ID. */
  | { readonly type: ChangeType; readonly lease: Lease; readonly seq: string }
  /**
   * The store lost its data, or was replaced by another (a restart without
   * persistence, an empty replica promoted, a flush). What was known is
   * unconfirmed: its owners re-assert their leases, which arrive as "added".
   */
  | { readonly type: 'reset'; readonly epoch: string | null }
  /** The stored network config was written or deleted. */
  | { readonly type: 'config' };

export interface WatchOptions {
  /** Ends the watch, as close() does. */
  readonly signal?: AbortSignal;
}

export interface WatchStats {
  /** Events handed to the consumer, the snapshot included. */
  readonly delivered: number;
  /** Full listings after a gap. */
  readonly resyncs: number;
  /** Times the store was found to have lost its data. */
  readonly resets: number;
  /** Subscriptions re-established after a failure. */
  readonly reconnects: number;
  /** Changes skipped because they could not be decoded. */
  readonly corruptEvents: number;
}

/**
 * An async iterator of WatchEvents: `{type: 'snapshot', cause: 'start'}`
 * first, then `added` (new lease, or its owner's attributes changed),
 * `removed` (revoked) and `expired`, each with its stream ID as `seq`, and
 * `snapshot`, `reset` and `config` as they happen. It ends when closed; it
 * throws StoreUnavailableError when Redis stays unreachable beyond the
 * store's retry policy.
 */
export interface LeaseWatch extends AsyncIterableIterator<WatchEvent> {
  readonly stats: WatchStats;
  /** Whether the subscription is up right now. */
  readonly connected: boolean;
  /** Stops reading; the iteration ends once the events already buffered are consumed. */
  close(): Promise<void>;
}

/** Stream entries read per XRANGE while catching up. */
const CATCH_UP_BATCH = 256;
/** Redis's channel for CLIENT TRACKING invalidations (RESP2 redirect). */
const INVALIDATION_CHANNEL = '__redis__:invalidate';

type Inbound = { readonly kind: 'change'; readonly text: string } | { readonly kind: 'invalidated'; readonly keys: readonly string[] | null };

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const timer = setTimeout(done, ms);
    function done(): void {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    }
    signal.addEventListener('abort', done, { once: true });
  });
}

/** Thrown inside the loop when the subscription went away; the loop reconnects. */
class SubscriptionLost extends Error {
  constructor(readonly overflow: boolean) {
    super(overflow ? 'the consumer fell behind; the subscription was dropped, to catch up from the stream' : 'the subscription connection closed');
  }
}

export interface WatchHooks {
  /** The subscription came back after a failure: Redis is reachable again. */
  onReconnected(): void;
  onClosed(): void;
}

export class LeaseWatcher implements LeaseWatch {
  private readonly registry: LeaseRegistry;
  private readonly factory: ConnectionFactory;
  private readonly options: ResolvedOptions;
  private readonly logger: Logger;
  private readonly hooks: WatchHooks;
  private readonly abort = new AbortController();
  private readonly loop: Promise<void>;

  /** The last change applied: its epoch, sequence number and stream ID. */
  private position: StorePosition = { epoch: null, seq: 0, streamId: '0-0' };

  private readonly queue: WatchEvent[] = [];
  private readonly consumers: Array<{ resolve: (result: IteratorResult<WatchEvent>) => void; reject: (err: Error) => void }> = [];
  private failure: Error | undefined;
  private finished = false;
  private wakeReader: (() => void) | undefined;

  private subscriber: Redis | undefined;
  private subscribed = false;
  private inbox: Inbound[] = [];
  private lost: SubscriptionLost | undefined;
  private wakeLoop: (() => void) | undefined;
  private trackingRefusedLogged = false;
  private counters = { delivered: 0, resyncs: 0, resets: 0, reconnects: 0, corruptEvents: 0 };

  constructor(registry: LeaseRegistry, factory: ConnectionFactory, options: ResolvedOptions, watchOptions: WatchOptions, hooks: WatchHooks) {
    this.registry = registry;
    this.factory = factory;
    this.options = options;
    this.logger = options.logger.child({ component: 'lease-watch' });
    this.hooks = hooks;
    if (watchOptions.signal !== undefined) {
      if (watchOptions.signal.aborted) void this.close();
      else watchOptions.signal.addEventListener('abort', () => void this.close(), { once: true });
    }
    this.loop = this.run();
  }

  get stats(): WatchStats {
    return { ...this.counters };
  }

  get connected(): boolean {
    return this.subscribed && this.subscriber?.status === 'ready';
  }

  [Symbol.asyncIterator](): this {
    return this;
  }

  next(): Promise<IteratorResult<WatchEvent>> {
    const event = this.queue.shift();
    if (event !== undefined) {
      this.counters.delivered++;
      if (this.queue.length < this.options.watchBufferSize) this.wakeReader?.();
      return Promise.resolve({ value: event, done: false });
    }
    if (this.failure !== undefined) {
      const failure = this.failure;
      this.failure = undefined;
      return Promise.reject(failure);
    }
    if (this.finished) return Promise.resolve({ value: undefined, done: true });
    return new Promise((resolve, reject) => this.consumers.push({ resolve, reject }));
  }

  async return(): Promise<IteratorResult<WatchEvent>> {
    await this.close();
    return { value: undefined, done: true };
  }

  async close(): Promise<void> {
    if (!this.abort.signal.aborted) {
      this.abort.abort();
      this.dropSubscriber();
      this.wakeReader?.();
      this.wakeLoop?.();
    }
    await this.loop;
  }

  private push(event: WatchEvent): void {
    const consumer = this.consumers.shift();
    if (consumer !== undefined) {
      this.counters.delivered++;
      consumer.resolve({ value: event, done: false });
    } else {
      this.queue.push(event);
    }
  }

  private finish(failure?: Error): void {
    this.finished = true;
    if (failure !== undefined) this.failure = failure;
    // Pending next() calls only exist while the queue is empty.
    for (const consumer of this.consumers.splice(0)) {
      const pending = this.failure;
      this.failure = undefined;
      if (pending !== undefined) consumer.reject(pending);
      else consumer.resolve({ value: undefined, done: true });
    }
  }

  private async run(): Promise<void> {
    const signal = this.abort.signal;
    this.logger.info({ address: this.factory.address, channel: this.registry.keys.channel }, 'lease watch started');
    let started = false;
    let failures = 0;
    try {
      while (!signal.aborted) {
        try {
          await this.subscribe();
          if (!started) {
            await this.resync('start');
            started = true;
          } else {
            await this.catchUp();
            this.counters.reconnects++;
            this.logger.info({ seq: this.position.seq, streamId: this.position.streamId }, 'lease watch reconnected and caught up');
            this.hooks.onReconnected();
          }
          failures = 0;
          await this.serve();
        } catch (err) {
          if (signal.aborted) break;
          this.dropSubscriber();
          if (err instanceof SubscriptionLost && err.overflow) {
            await this.waitForRoom();
            continue;
          }
          failures++;
          const wrapped = this.factory.wrap(err, 'watching leases');
          const retry = this.options.retry;
          // fail-fast still gets one immediate second try: a killed idle connection is not an outage.
          const limit = retry.mode === 'fail-fast' ? 1 : retry.maxAttempts;
          if (failures > limit || !(wrapped instanceof StoreUnavailableError)) {
            this.logger.error({ err: wrapped.message, attempts: failures }, 'lease watch failed');
            this.finish(wrapped);
            return;
          }
          const delay = retry.mode === 'fail-fast' ? 0 : backoffDelay(retry, failures);
          this.logger.warn({ err: wrapped.message, attempt: failures, delayMs: delay }, 'lease watch lost Redis; retrying');
          await sleep(delay, signal);
        }
      }
      this.finish();
    } finally {
      this.dropSubscriber();
      this.hooks.onClosed();
      this.logger.info({ ...this.counters }, 'lease watch stopped');
    }
  }

  /** Opens a fresh subscription. Pushes that arrive before the loop reads them wait in the inbox. */
  private async subscribe(): Promise<void> {
    const keys = this.registry.keys;
    this.inbox = [];
    this.lost = undefined;
    const client = this.factory.createSubscriber('miniflannel:watch', await this.storeNode());
    this.subscriber = client;
    client.on('error', (err: Error) => this.logger.debug({ err: err.message }, 'watch connection error'));
    client.on('close', () => this.onLost(new SubscriptionLost(false)));
    client.on('messageBuffer', (channel: Buffer, message: Buffer | Buffer[] | null) => {
      if (channel.toString() === keys.channel) this.receive({ kind: 'change', text: String(message) });
      else this.receive({ kind: 'invalidated', keys: message === null ? null : (Array.isArray(message) ? message : [message]).map(String) });
    });
    await this.factory.connect(client, this.abort.signal);
    const channels = [keys.channel];
    try {
      // Redis reports writes to these keys, and a FLUSHALL, down this very connection.
      const id = await client.client('ID');
      await client.call('CLIENT', 'TRACKING', 'ON', 'REDIRECT', String(id), 'BCAST', 'PREFIX', keys.epoch, 'PREFIX', keys.config);
      channels.push(INVALIDATION_CHANNEL);
    } catch (err) {
      if (!this.trackingRefusedLogged) {
        this.trackingRefusedLogged = true;
        this.logger.warn({ err: (err as Error).message }, 'CLIENT TRACKING refused: a flush of the store is noticed only at the next change or reconnection');
      }
    }
    await client.subscribe(...channels);
    this.subscribed = true;
  }

  /** On Redis Cluster, the master of the slot that holds the store; elsewhere, the endpoint itself. */
  private async storeNode(): Promise<HostPort | undefined> {
    if (this.factory.endpoint.kind !== 'cluster') return undefined;
    return this.registry.slotMaster(keySlot(this.registry.keys.leases));
  }

  private receive(message: Inbound): void {
    if (this.lost !== undefined) return;
    this.inbox.push(message);
    if (this.inbox.length > this.options.watchBufferSize) this.onLost(new SubscriptionLost(true));
    this.wakeLoop?.();
  }

  private onLost(reason: SubscriptionLost): void {
    if (this.lost !== undefined) return;
    this.lost = reason;
    this.subscribed = false;
    this.inbox = [];
    this.wakeLoop?.();
  }

  private dropSubscriber(): void {
    const client = this.subscriber;
    this.subscriber = undefined;
    this.subscribed = false;
    if (client !== undefined) {
      client.removeAllListeners('close');
      client.removeAllListeners('messageBuffer');
      client.on('error', () => undefined);
      closeClient(client);
    }
  }

  /** Applies pushed messages as they come, until the subscription goes away. */
  private async serve(): Promise<void> {
    const signal = this.abort.signal;
    while (!signal.aborted) {
      if (this.lost !== undefined) throw this.lost;
      const message = this.inbox.shift();
      if (message === undefined) {
        await new Promise<void>((resolve) => (this.wakeLoop = resolve));
        this.wakeLoop = undefined;
        continue;
      }
      await this.waitForRoom();
      if (message.kind === 'invalidated') await this.onInvalidated(message.keys);
      else await this.onPushed(message.text);
    }
  }

  private async onPushed(text: string): Promise<void> {
    const change = parsePushedChange(text);
    if (change === undefined || Number.isNaN(change.n)) {
      this.countCorrupt(change?.id ?? '', change?.subnet ?? '', `a pushed change that is not one: ${JSON.stringify(text.slice(0, 80))}`);
      return this.catchUp();
    }
    const known = this.position;
    // A store that had no epoch yet gets one with its first change: adopted if nothing was missed.
    const sameStore = known.epoch === null ? change.n === known.seq + 1 : change.epoch === known.epoch;
    if (!sameStore) return this.catchUp();
    if (change.n <= known.seq) return; // already applied, caught up from the stream first
    if (change.n !== known.seq + 1) return this.catchUp();
    if (known.epoch === null) this.position = { ...known, epoch: change.epoch };
    this.apply(change);
  }

  private async onInvalidated(keys: readonly string[] | null): Promise<void> {
    const { epoch, config } = this.registry.keys;
    // null: the whole database was flushed.
    if ((keys === null || keys.includes(config)) && this.queue.at(-1)?.type !== 'config') this.push({ type: 'config' });
    if (keys === null || keys.includes(epoch)) await this.catchUp();
  }

  /**
   * Brings the watch up to the store's position: nothing if it is there, the
   * missed changes from the stream if it still holds them, a listing if not,
   * and a reset first if the store is not the one it was.
   */
  private async catchUp(): Promise<void> {
    for (;;) {
      const current = await this.registry.position();
      const known = this.position;
      if (known.epoch !== null && current.epoch !== known.epoch) {
        this.counters.resets++;
        this.logger.warn({ epoch: known.epoch, now: current.epoch, seq: known.seq }, 'the lease store lost its data or was replaced; its leases must be re-asserted');
        this.push({ type: 'reset', epoch: current.epoch });
        this.position = { epoch: current.epoch, seq: 0, streamId: '0-0' };
        if (!(await this.readStreamUpTo(current.seq))) return this.resync('reset');
        continue; // the epoch may have changed again meanwhile
      }
      if (current.seq < known.seq) {
        this.logger.info({ seq: known.seq, storeSeq: current.seq }, 'the store is behind this watch (changes lost in a failover); listing again');
        return this.resync('gap');
      }
      if (!(await this.readStreamUpTo(current.seq))) {
        this.logger.info({ seq: this.position.seq, streamId: this.position.streamId }, 'the change stream no longer holds what this watch missed; listing again');
        return this.resync('gap');
      }
      if (this.position.epoch === null) this.position = { ...this.position, epoch: current.epoch };
      return;
    }
  }

  /** Applies stream entries after the position up to `seq`. False: the stream does not hold them all. */
  private async readStreamUpTo(seq: number): Promise<boolean> {
    while (this.position.seq < seq) {
      await this.waitForRoom();
      const entries = await this.registry.readChangesAfter(this.position.streamId, CATCH_UP_BATCH);
      if (entries.length === 0) return false;
      for (const entry of entries) {
        if (entry.n !== this.position.seq + 1) {
          if (Number.isNaN(entry.n)) this.countCorrupt(entry.id, entry.subnet, 'no sequence number');
          return false;
        }
        this.apply(entry);
      }
    }
    return true;
  }

  /** Lists every lease (after reading the position, so pushes after it complete the picture) and emits them. */
  private async resync(cause: SnapshotCause): Promise<void> {
    const position = await this.registry.position();
    const listing = await this.registry.list();
    this.position = position;
    this.push({ type: 'snapshot', leases: [...listing.leases.values()], seq: position.streamId, cause });
    if (cause !== 'start') {
      this.counters.resyncs++;
      this.logger.info({ leases: listing.leases.size, seq: position.seq, cause }, 'lease watch listed the leases again');
    }
  }

  private waitForRoom(): Promise<void> {
    if (this.queue.length < this.options.watchBufferSize || this.abort.signal.aborted) return Promise.resolve();
    return new Promise((resolve) => {
      this.wakeReader = () => {
        this.wakeReader = undefined;
        resolve();
      };
    });
  }

  /** Applies one change that is next in sequence. */
  private apply(entry: ChangeEntry): void {
    this.position = { ...this.position, seq: entry.n, streamId: entry.id };
    if (!isChangeType(entry.type)) {
      this.countCorrupt(entry.id, entry.subnet, `unknown type ${JSON.stringify(entry.type)}`);
      return;
    }
    const type = entry.type;
    const decoded = decodeLease(entry.subnet, entry.attrsJson, entry.expiry);
    if (decoded.ok) {
      this.push({ type, lease: decoded.lease, seq: entry.id });
      return;
    }
    this.countCorrupt(entry.id, entry.subnet, decoded.reason);
    // A removal still names its subnet, and what the consumer knows of it must go.
    const bare = type === 'added' ? undefined : bareLease(entry.subnet);
    if (bare !== undefined) this.push({ type, lease: bare, seq: entry.id });
  }

  private countCorrupt(id: string, subnet: string, reason: string): void {
    this.counters.corruptEvents++;
    this.registry.counters.corruptEvents++;
    this.logger.warn({ streamId: id, subnet, reason }, 'skipping corrupt change');
  }
}
