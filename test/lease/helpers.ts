// Shared by the lease tests: loggers, store factory, polling, and a reader
// that pulls watch events with a deadline.

import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { pino, type Logger } from 'pino';
import { ConfigError, connectLeaseStore, parseNetworkConfig, parseRedisUrl, type LeaseStoreOptions, type LeaseWatch, type SubnetManager, type WatchEvent } from '../../daemon/lease/index.js';
import { CommandLink, ConnectionFactory } from '../../daemon/lease/connection.js';
import { resolveOptions } from '../../daemon/lease/options.js';
import { keyLayout, LeaseRegistry } from '../../daemon/lease/registry.js';

export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}

export interface CapturedLog {
  readonly level: number;
  readonly msg: string;
  readonly [field: string]: unknown;
}

/** A debug-level logger whose lines are collected, parsed, in `lines`. */
export function captureLogger(): { logger: Logger; lines: CapturedLog[] } {
  const lines: CapturedLog[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      for (const line of chunk.toString().split('\n')) if (line.trim() !== '') lines.push(JSON.parse(line) as CapturedLog);
      callback();
    },
  });
  return { logger: pino({ level: 'debug' }, sink), lines };
}

let prefixCounter = 0;

/** A key prefix no other test uses, so tests can share one server. */
export function uniquePrefix(name: string): string {
  return `test-${process.pid}-${name}-${++prefixCounter}`;
}

/** A store tuned for tests: daemon-style backoff, fast reaping. */
export function openStore(url: string, overrides: Partial<LeaseStoreOptions> = {}): Promise<SubnetManager> {
  return connectLeaseStore({
    url,
    logger: silentLogger(),
    keyPrefix: 'test',
    retry: { mode: 'backoff', initialDelayMs: 50, maxDelayMs: 500 },
    connectTimeoutMs: 3_000,
    commandTimeoutMs: 5_000,
    reapIntervalMs: 100,
    ...overrides,
  });
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Calls `probe` until it returns something other than undefined/false, or fails after `timeoutMs`. */
export async function pollUntil<T>(what: string, probe: () => Promise<T | undefined | false>, timeoutMs = 15_000, intervalMs = 25): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined && value !== false) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(intervalMs);
  }
}

const TIMEOUT = Symbol('timeout');

/** Pulls events from a watch with a deadline, keeping one next() outstanding across timeouts. */
export class EventReader {
  private pending: Promise<IteratorResult<WatchEvent>> | undefined;
  readonly seen: WatchEvent[] = [];

  constructor(readonly watch: LeaseWatch) {}

  async next(timeoutMs = 15_000): Promise<WatchEvent> {
    this.pending ??= this.watch.next();
    let timer: NodeJS.Timeout | undefined;
    const result = await Promise.race([
      this.pending,
      new Promise<typeof TIMEOUT>((resolve) => {
        timer = setTimeout(() => resolve(TIMEOUT), timeoutMs);
      }),
    ]).finally(() => clearTimeout(timer));
    if (result === TIMEOUT) throw new Error(`no watch event within ${timeoutMs} ms (seen so far: ${this.seen.map(describeEvent).join(', ')})`);
    this.pending = undefined;
    if (result.done === true) throw new Error('the watch ended');
    this.seen.push(result.value);
    return result.value;
  }

  /** Reads events until `done` holds for one of them; returns all read, that one included. */
  async until(done: (event: WatchEvent) => boolean, timeoutMs = 15_000): Promise<WatchEvent[]> {
    const deadline = Date.now() + timeoutMs;
    const events: WatchEvent[] = [];
    for (;;) {
      const event = await this.next(Math.max(1, deadline - Date.now()));
      events.push(event);
      if (done(event)) return events;
    }
  }
}

export function describeEvent(event: WatchEvent): string {
  switch (event.type) {
    case 'snapshot':
      return `snapshot(${event.leases.length})`;
    case 'reset':
    case 'config':
      return event.type;
    default:
      return `${event.type} ${event.lease.subnet}`;
  }
}

/** A LeaseRegistry on a connection of its own, for tests that drive the scripts directly; close() ends the connection. */
export function openRegistry(url: string, keyPrefix: string): { registry: LeaseRegistry; close(): void } {
  const options = resolveOptions({ url, logger: silentLogger(), keyPrefix });
  const factory = new ConnectionFactory(parseRedisUrl(url), options);
  const link = new CommandLink(factory, options.logger, 'test', Infinity);
  const registry = new LeaseRegistry(link, factory, keyLayout(keyPrefix), options.streamMaxLen, options.logger, { minReplicas: 0, timeoutMs: 0 });
  return { registry, close: () => link.close() };
}

/** Asserts that the network config `input` is refused for `field`, in one line that names the field and matches `rule`. */
export function assertConfigRejected(input: unknown, field: string, rule: RegExp): void {
  assert.throws(
    () => parseNetworkConfig(input),
    (err: unknown) => {
      assert.ok(err instanceof ConfigError, `expected ConfigError, got ${String(err)}`);
      assert.equal(err.name, 'ConfigError');
      assert.equal(err.field, field);
      if (field !== '(document)') assert.ok(err.message.includes(field), `message ${JSON.stringify(err.message)} names ${field}`);
      assert.doesNotMatch(err.message, /\n/, 'one line');
      assert.match(err.message, rule);
      return true;
    },
  );
}
