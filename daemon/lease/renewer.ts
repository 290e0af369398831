// Keeping a lease: renew it renewMarginMs before each expiry, retry failures
// with backoff, and report `lost` once the store says the lease is gone.
//
// A renewal that cannot reach Redis is retried even past the expiry: the
// store reaps before it renews, so the first answer it gives is the truth
// (renewed, or lost) and the renewer never guesses.

import { EventEmitter } from 'node:events';
import type { Logger } from 'pino';
import { LeaseLostError, OptionsError } from './errors.js';
import type { Lease } from './lease.js';

export interface KeepLeaseOptions {
  /** Renew this long before expiry. Default: the store's renewMarginMs. */
  readonly renewMarginMs?: number;
  /** First delay after a failed renewal; it doubles after each further failure. Default 1 s. */
  readonly retryInitialDelayMs?: number;
  /** Cap on that delay. Default 60 s. */
  readonly retryMaxDelayMs?: number;
  /** A reservation never expires; this is how often it is checked for revocation. Default: renewMarginMs. */
  readonly reservationCheckMs?: number;
  /** Logger for renewals and failures. Default: the store's. */
  readonly logger?: Logger;
}

/** The part of the store a renewer needs. */
export interface LeaseRenewing {
  renewLease(lease: Lease): Promise<Lease>;
  serverNow(): number;
}

export interface LeaseRenewerEvents {
  /** The lease was renewed; the argument carries the new expiry. */
  renewed: [lease: Lease];
  /** The lease is gone (revoked, expired, or taken). The renewer has stopped. */
  lost: [error: LeaseLostError];
  /** A renewal failed for another reason (Redis unreachable); it is retried after `retryInMs`. */
  renewFailed: [error: Error, retryInMs: number];
  /** The renewer stopped (after stop() or lost). */
  stopped: [];
}

const DEFAULT_RETRY_INITIAL_MS = 1_000;
const DEFAULT_RETRY_MAX_MS = 60_000;

export class LeaseRenewer extends EventEmitter<LeaseRenewerEvents> {
  private currentLease: Lease;
  private readonly store: LeaseRenewing;
  private readonly marginMs: number;
  private readonly retryInitialMs: number;
  private readonly retryMaxMs: number;
  private readonly reservationCheckMs: number;
  private readonly logger: Logger;
  private timer: NodeJS.Timeout | undefined;
  private failures = 0;
  private renewing = false;
  private stopped = false;

  constructor(store: LeaseRenewing, lease: Lease, options: KeepLeaseOptions & { readonly renewMarginMs: number; readonly logger: Logger }) {
    super();
    this.store = store;
    this.currentLease = lease;
    this.marginMs = options.renewMarginMs;
    this.retryInitialMs = options.retryInitialDelayMs ?? DEFAULT_RETRY_INITIAL_MS;
    this.retryMaxMs = options.retryMaxDelayMs ?? DEFAULT_RETRY_MAX_MS;
    this.reservationCheckMs = options.reservationCheckMs ?? options.renewMarginMs;
    for (const [name, value] of [
      ['renewMarginMs', this.marginMs],
      ['retryInitialDelayMs', this.retryInitialMs],
      ['retryMaxDelayMs', this.retryMaxMs],
      ['reservationCheckMs', this.reservationCheckMs],
    ] as const) {
      if (!Number.isFinite(value) || value <= 0) throw new OptionsError(name, `${name} must be a positive number of milliseconds (got ${value})`);
    }
    this.logger = options.logger.child({ component: 'lease-renewer', subnet: lease.subnet });
  }

  /** The lease as last renewed. */
  get lease(): Lease {
    return this.currentLease;
  }

  start(): void {
    this.logger.info({ expiresAt: this.currentLease.expiresAt, renewMarginMs: this.marginMs }, 'lease renewer started');
    this.schedule(this.untilRenewal());
  }

  stop(): void {
    if (this.stopped) return;
    this.stopped = true;
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.logger.info('lease renewer stopped');
    this.emit('stopped');
  }

  /**
   * The store reconnected: a renewal that failed is retried now (within
   * retryInitialDelayMs, so nodes spread out) rather than after a backoff
   * that grew while Redis was away.
   */
  retryNow(): void {
    if (this.stopped || this.renewing || this.failures === 0) return;
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.schedule(Math.round(Math.random() * this.retryInitialMs));
  }

  private untilRenewal(): number {
    const expiresAt = this.currentLease.expiresAt;
    if (expiresAt === null) return this.reservationCheckMs;
    return Math.max(0, expiresAt - this.marginMs - this.store.serverNow());
  }

  private schedule(delayMs: number): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => void this.renew(), delayMs);
    this.timer.unref();
  }

  /**
   * Exponential backoff, but never more than half the time the lease has
   * left: after a long outage the renewer must try again before the lease
   * lapses, not a full retryMaxDelayMs later.
   */
  private retryDelay(): number {
    const backoff = Math.min(this.retryMaxMs, this.retryInitialMs * 2 ** Math.min(this.failures - 1, 30));
    const expiresAt = this.currentLease.expiresAt;
    if (expiresAt === null) return backoff;
    const left = expiresAt - this.store.serverNow();
    return Math.max(this.retryInitialMs, Math.min(backoff, Math.floor(left / 2)));
  }

  private async renew(): Promise<void> {
    this.renewing = true;
    try {
      const lease = await this.store.renewLease(this.currentLease);
      if (this.stopped) return;
      this.currentLease = lease;
      this.failures = 0;
      this.logger.debug({ expiresAt: lease.expiresAt }, 'lease renewed');
      this.emit('renewed', lease);
      this.schedule(this.untilRenewal());
    } catch (err) {
      if (this.stopped) return;
      if (err instanceof LeaseLostError) {
        this.logger.warn({ reason: err.reason, err: err.message }, 'lease lost');
        this.emit('lost', err);
        this.stop();
        return;
      }
      this.failures++;
      const delay = this.retryDelay();
      const error = err instanceof Error ? err : new Error(String(err));
      this.logger.warn({ err: error.message, attempt: this.failures, retryInMs: delay }, 'lease renewal failed; retrying');
      this.emit('renewFailed', error, delay);
      this.schedule(delay);
    } finally {
      this.renewing = false;
    }
  }
}
