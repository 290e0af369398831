// The watch: a snapshot of every lease, then each change in stream order.
//
// 1. snapshot  the snapshot script lists the leases together with the
//              sequence number and stream ID they include, atomically.
// 2. read      XREAD BLOCK on a dedicated connection, from that stream ID.
//              Every entry carries a sequence number n; the next one must be
//              exactly n + 1.
// 3. gap       anything else (the stream was trimmed past us, or a failover
//              lost entries) means changes were missed: list again, diff
//              against what was delivered, emit the difference.
// 4. reconnect after a lost connection, check that the entry at our stream
//              ID is still the one we saw (else resync), then go on reading.
// 5. reap      every reapIntervalMs (with jitter) call the reap script, so
//              expired leases become "expired" events even if nobody writes.
//
// Memory is bounded by the lease table plus watchBufferSize events: when the
// consumer falls behind, the loop stops reading and the stream holds the
// backlog (and if it is trimmed meanwhile, step 3 applies).

import type { Logger } from 'pino';
import { closeClient, type ConnectionFactory, type RedisClient } from './connection.js';
import { StoreUnavailableError } from './errors.js';
import { decodeLease, sameAttrs, type Lease } from './lease.js';
import { backoffDelay, type ResolvedOptions } from './options.js';
import { isChangeType, type ChangeType, type LeaseRegistry, type StreamEntry } from './registry.js';

export type WatchEvent =
  | { readonly type: 'snapshot'; readonly leases: readonly Lease[]; readonly seq: string }
  | { readonly type: ChangeType; readonly lease: Lease; readonly seq: string };

export interface WatchOptions {
  /** Ends the watch, as close() does. */
  readonly signal?: AbortSignal;
}

export interface WatchStats {
  /** Events handed to the consumer, the snapshot included. */
  readonly delivered: number;
  /** Full listings after a gap. */
  readonly resyncs: number;
  /** Blocking connections re-established after a failure. */
  readonly reconnects: number;
  /** Stream entries skipped because they could not be decoded. */
  readonly corruptEvents: number;
}

/**
 * An async iterator of WatchEvents: `{type: 'snapshot'}` first, then
 * `added` (new lease, or its owner's attributes changed), `renewed` (new
 * expiry), `removed` (revoked) and `expired`, each with the stream ID as `seq`.
 * It ends when closed; it throws StoreUnavailableError when Redis stays
 * unreachable beyond the store's retry policy.
 */
export interface LeaseWatch extends AsyncIterableIterator<WatchEvent> {
  readonly stats: WatchStats;
  /** Stops reading; the iteration ends once the events already buffered are consumed. */
  close(): Promise<void>;
}

/** Stream entries read per XREAD. */
const READ_BATCH = 256;

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

export class LeaseWatcher implements LeaseWatch {
  private readonly registry: LeaseRegistry;
  private readonly factory: ConnectionFactory;
  private readonly options: ResolvedOptions;
  private readonly logger: Logger;
  private readonly onClosed: () => void;
  private readonly abort = new AbortController();
  private readonly loop: Promise<void>;

  /** The lease table as of the last event queued for the consumer. */
  private state = new Map<string, Lease>();
  private streamId = '0-0';
  private seqNumber = 0;

  private readonly queue: WatchEvent[] = [];
  private readonly consumers: Array<{ resolve: (result: IteratorResult<WatchEvent>) => void; reject: (err: Error) => void }> = [];
  private failure: Error | undefined;
  private finished = false;
  private wakeReader: (() => void) | undefined;
  private blocking: RedisClient | undefined;
  private reapTimer: NodeJS.Timeout | undefined;
  private counters = { delivered: 0, resyncs: 0, reconnects: 0, corruptEvents: 0 };

  constructor(registry: LeaseRegistry, factory: ConnectionFactory, options: ResolvedOptions, watchOptions: WatchOptions, onClosed: () => void) {
    this.registry = registry;
    this.factory = factory;
    this.options = options;
    this.logger = options.logger.child({ component: 'lease-watch' });
    this.onClosed = onClosed;
    if (watchOptions.signal !== undefined) {
      if (watchOptions.signal.aborted) void this.close();
      else watchOptions.signal.addEventListener('abort', () => void this.close(), { once: true });
    }
    this.loop = this.run();
    this.scheduleReap();
  }

  get stats(): WatchStats {
    return { ...this.counters };
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
      if (this.reapTimer !== undefined) clearTimeout(this.reapTimer);
      this.dropBlocking();
      this.wakeReader?.();
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

  private scheduleReap(): void {
    if (this.abort.signal.aborted) return;
    const interval = this.options.reapIntervalMs * (0.8 + Math.random() * 0.4);
    this.reapTimer = setTimeout(() => {
      this.registry.reap().then(
        (count) => {
          if (count > 0) this.logger.debug({ count }, 'reaped expired leases');
        },
        (err: Error) => this.logger.debug({ err: err.message }, 'reap failed'),
      ).finally(() => this.scheduleReap());
    }, interval);
    this.reapTimer.unref();
  }

  private async run(): Promise<void> {
    const signal = this.abort.signal;
    this.logger.info({ address: this.factory.address, stream: this.registry.keys.events }, 'lease watch started');
    let needSnapshot = true;
    let firstSnapshot = true;
    let verifyPosition = false;
    let failures = 0;
    try {
      while (!signal.aborted) {
        try {
          if (needSnapshot) {
            await this.resync(firstSnapshot ? 'start' : 'gap');
            firstSnapshot = false;
            needSnapshot = false;
          }
          if (this.blocking === undefined) {
            const client = this.factory.create('blocking', 'miniflannel:watch', { blockMs: this.options.watchBlockMs });
            client.on('error', (err: Error) => this.logger.debug({ err: err.message }, 'watch connection error'));
            this.blocking = client;
            await this.factory.connect(client, this.logger, signal, true);
            if (verifyPosition) {
              this.counters.reconnects++;
              if (!(await this.positionIntact(client))) {
                needSnapshot = true;
                this.logger.info({ streamId: this.streamId, seq: this.seqNumber }, 'stream position lost while disconnected; resyncing');
                continue;
              }
              this.logger.info({ streamId: this.streamId, seq: this.seqNumber }, 'watch reconnected; resuming');
              verifyPosition = false;
            }
          }
          await this.waitForRoom();
          if (signal.aborted) break;
          const readStarted = Date.now();
          const entries = await this.registry.readEvents(this.blocking, this.streamId, READ_BATCH, this.options.watchBlockMs);
          // ioredis answers an XREAD the server never replied to with null after
          // BLOCK + grace (commandTimeoutMs): the connection is dead without a FIN.
          if (entries.length === 0 && Date.now() - readStarted >= this.options.watchBlockMs + this.options.commandTimeoutMs) {
            throw new Error(`no reply to XREAD within ${this.options.watchBlockMs + this.options.commandTimeoutMs} ms; connection presumed dead`);
          }
          failures = 0;
          for (const entry of entries) {
            if (!this.apply(entry)) {
              needSnapshot = true;
              this.logger.info({ streamId: this.streamId, seq: this.seqNumber, next: entry.n, nextId: entry.id }, 'gap in the change stream; resyncing');
              break;
            }
          }
        } catch (err) {
          if (signal.aborted) break;
          failures++;
          this.dropBlocking();
          verifyPosition = true;
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
      this.dropBlocking();
      if (this.reapTimer !== undefined) clearTimeout(this.reapTimer);
      this.onClosed();
      this.logger.info({ ...this.counters }, 'lease watch stopped');
    }
  }

  private dropBlocking(): void {
    const client = this.blocking;
    this.blocking = undefined;
    if (client !== undefined) closeClient(client);
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

  /** After a reconnection: is the entry at our position still the one we read? */
  private async positionIntact(client: RedisClient): Promise<boolean> {
    if (this.streamId === '0-0') return true; // nothing read yet; the sequence check covers it
    const entry = await this.registry.entryAt(client, this.streamId);
    return entry !== undefined && entry.n === this.seqNumber;
  }

  /** Applies one stream entry. False: it is not the next in sequence, so changes were missed. */
  private apply(entry: StreamEntry): boolean {
    if (entry.n !== this.seqNumber + 1) {
      if (Number.isNaN(entry.n)) this.countCorrupt(entry, 'no sequence number');
      return false;
    }
    this.streamId = entry.id;
    this.seqNumber = entry.n;
    if (!isChangeType(entry.type)) {
      this.countCorrupt(entry, `unknown type ${JSON.stringify(entry.type)}`);
      return true;
    }
    const type = entry.type;
    const decoded = decodeLease(entry.subnet, entry.attrsJson, entry.expiry);
    let lease: Lease;
    if (decoded.ok) {
      lease = decoded.lease;
    } else {
      this.countCorrupt(entry, decoded.reason);
      // A removal still names its subnet; what the consumer knows of it must go.
      const known = this.state.get(entry.subnet);
      if ((type === 'removed' || type === 'expired') && known !== undefined) {
        this.state.delete(entry.subnet);
        this.push({ type, lease: known, seq: entry.id });
      }
      return true;
    }
    if (type === 'removed' || type === 'expired') this.state.delete(lease.subnet);
    else this.state.set(lease.subnet, lease);
    this.push({ type, lease, seq: entry.id });
    return true;
  }

  private countCorrupt(entry: StreamEntry, reason: string): void {
    this.counters.corruptEvents++;
    this.registry.counters.corruptEvents++;
    this.logger.warn({ streamId: entry.id, subnet: entry.subnet, reason }, 'skipping corrupt change-stream entry');
  }

  /** Lists every lease; on the first call emits the snapshot, afterwards the difference. */
  private async resync(reason: 'start' | 'gap'): Promise<void> {
    const snapshot = await this.registry.snapshot();
    if (reason === 'start') {
      this.push({ type: 'snapshot', leases: [...snapshot.leases.values()], seq: snapshot.streamId });
    } else {
      let added = 0;
      let removed = 0;
      let renewed = 0;
      for (const [subnet, old] of this.state) {
        if (!snapshot.leases.has(subnet)) {
          removed++;
          this.push({ type: 'removed', lease: old, seq: snapshot.streamId });
        }
      }
      for (const [subnet, lease] of snapshot.leases) {
        const old = this.state.get(subnet);
        if (old === undefined || !sameAttrs(old, lease)) {
          added++;
          this.push({ type: 'added', lease, seq: snapshot.streamId });
        } else if (old.expiresAt !== lease.expiresAt) {
          renewed++;
          this.push({ type: 'renewed', lease, seq: snapshot.streamId });
        }
      }
      this.counters.resyncs++;
      this.logger.info({ added, removed, renewed, streamId: snapshot.streamId }, 'lease watch resynced');
    }
    this.state = snapshot.leases;
    this.streamId = snapshot.streamId;
    this.seqNumber = snapshot.seq;
  }
}
