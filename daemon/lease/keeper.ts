// Keeping a lease, the soft-state way: the node asserts its lease and the
// store follows.
//
// 1. renew     at a random time in the last part of the lease, renewMarginMs
//              to renewMarginMs + spread before expiry, so nodes that started
//              together do not renew together forever.
// 2. re-assert on demand (the watch saw the store lose its data, or the lease
//              go): the same claim, now. A lease that is gone without having
//              been revoked is put back with the same subnet and attributes.
// 3. lost      only when the store says the lease was revoked, or another
//              node holds the subnet. Nothing else stops a node.
// 4. reap      every keeper reaps at random times, on average once every
//              (leases x reapIntervalMs), so the whole cluster reaps about once
//              per reapIntervalMs, with no election and no single reaper to lose.
//
// A claim that cannot reach Redis is retried with backoff, even past the
// expiry: the store reaps before it renews, so the first answer it gives is
// the truth (renewed, restored, or lost) and the keeper never guesses.

import { EventEmitter } from 'node:events';
import type { Logger } from 'pino';
import { LeaseLostError, OptionsError } from './errors.js';
import type { Lease } from './lease.js';

export interface KeepLeaseOptions {
  /** Renew at least this long before expiry. Default: the store's renewMarginMs. */
  readonly renewMarginMs?: number;
  /** First delay after a failed claim; it doubles after each further failure. Default 1 s. */
  readonly retryInitialDelayMs?: number;
  /** Cap on that delay. Default 60 s. */
  readonly retryMaxDelayMs?: number;
  /** A reservation never expires; this is how often it is claimed all the same. Default: leaseTtlMs - renewMarginMs. */
  readonly reservationCheckMs?: number;
  /** Logger for renewals and failures. Default: the store's. */
  readonly logger?: Logger;
}

/** What one claim did. */
export interface ClaimOutcome {
  readonly lease: Lease;
  /** renewed: the expiry moved; updated: the attributes changed too; restored: it was gone and is back. */
  readonly change: 'renewed' | 'updated' | 'restored';
  /** Leases in the store after the claim: the keeper's share of the reaping depends on it. */
  readonly leases: number;
}

/** The part of the store a keeper needs. */
export interface LeaseKeeping {
  /** Renews the lease or puts it back; throws LeaseLostError if it was revoked or is taken. */
  claimLease(lease: Lease): Promise<ClaimOutcome>;
  /** Removes expired leases; returns how many leases remain. */
  reapExpired(): Promise<{ reaped: number; leases: number }>;
  serverNow(): number;
}

export interface LeaseKeeperEvents {
  /** The lease was renewed (or its attributes updated); the argument carries the new expiry. */
  renewed: [lease: Lease];
  /** The lease was gone from the store without having been revoked, and is back. */
  restored: [lease: Lease, reason: string];
  /** The lease was revoked, or another node holds the subnet. The keeper has stopped. */
  lost: [error: LeaseLostError];
  /** A claim failed for another reason (Redis unreachable); it is retried after `retryInMs`. */
  renewFailed: [error: Error, retryInMs: number];
  /** The keeper stopped (after stop() or lost). */
  stopped: [];
}

export interface LeaseKeeperSettings extends KeepLeaseOptions {
  readonly renewMarginMs: number;
  readonly leaseTtlMs: number;
  /** Cluster-wide average time between reaps; see the store option. */
  readonly reapIntervalMs: number;
  /** Leases in the store when the keeper starts (from the acquire). */
  readonly leases: number;
  readonly logger: Logger;
}

const DEFAULT_RETRY_INITIAL_MS = 1_000;
const DEFAULT_RETRY_MAX_MS = 60_000;

export class LeaseKeeper extends EventEmitter<LeaseKeeperEvents> {
  private currentLease: Lease;
  private readonly store: LeaseKeeping;
  private readonly marginMs: number;
  /** Renewals fall at random in [expiry - margin - spread, expiry - margin]. */
  private readonly spreadMs: number;
  private readonly retryInitialMs: number;
  private readonly retryMaxMs: number;
  private readonly reservationCheckMs: number;
  private readonly reapIntervalMs: number;
  private readonly logger: Logger;
  private claimTimer: NodeJS.Timeout | undefined;
  /** When the pending claim fires (epoch ms), so an earlier request can replace it. */
  private claimDueAt = Infinity;
  private reapTimer: NodeJS.Timeout | undefined;
  private leases: number;
  private failures = 0;
  /** Since when claims have failed, and the last failure's message; undefined while they succeed. */
  private failing: { since: number; error: string } | undefined;
  private claiming = false;
  /** Why the next claim is made early (a re-assertion), for the log. */
  private pendingReason: string | undefined;
  private stopped = false;

  constructor(store: LeaseKeeping, lease: Lease, settings: LeaseKeeperSettings) {
    super();
    this.store = store;
    this.currentLease = lease;
    this.marginMs = settings.renewMarginMs;
    this.retryInitialMs = settings.retryInitialDelayMs ?? DEFAULT_RETRY_INITIAL_MS;
    this.retryMaxMs = settings.retryMaxDelayMs ?? DEFAULT_RETRY_MAX_MS;
    this.reservationCheckMs = settings.reservationCheckMs ?? settings.leaseTtlMs - settings.renewMarginMs;
    this.reapIntervalMs = settings.reapIntervalMs;
    this.leases = settings.leases;
    for (const [name, value] of [
      ['renewMarginMs', this.marginMs],
      ['retryInitialDelayMs', this.retryInitialMs],
      ['retryMaxDelayMs', this.retryMaxMs],
      ['reservationCheckMs', this.reservationCheckMs],
    ] as const) {
      if (!Number.isFinite(value) || value <= 0) throw new OptionsError(name, `${name} must be a positive number of milliseconds (got ${value})`);
    }
    this.spreadMs = Math.max(0, Math.min(this.marginMs, settings.leaseTtlMs - this.marginMs) / 2);
    this.logger = settings.logger.child({ component: 'lease-keeper', subnet: lease.subnet });
  }

  /** The lease as last renewed. */
  get lease(): Lease {
    return this.currentLease;
  }

  /** Renewals fall at least this long before expiry. */
  get renewMarginMs(): number {
    return this.marginMs;
  }

  /** Set while claiming the lease fails (Redis unreachable): since when (epoch ms), how many attempts, the last error. */
  get renewalFailure(): { since: number; attempts: number; error: string } | undefined {
    return this.failing && { ...this.failing, attempts: this.failures };
  }

  start(): void {
    this.logger.info({ expiresAt: this.currentLease.expiresAt, renewMarginMs: this.marginMs }, 'lease keeper started');
    this.scheduleClaim(this.untilRenewal());
    this.scheduleReap();
  }

  stop(): void {
    if (this.stopped) return;
    this.stopped = true;
    if (this.claimTimer !== undefined) clearTimeout(this.claimTimer);
    if (this.reapTimer !== undefined) clearTimeout(this.reapTimer);
    this.logger.info('lease keeper stopped');
    this.emit('stopped');
  }

  /**
   * Claims the lease within `delayMs` rather than at the next renewal: the
   * store lost its data, or the watch saw the lease go. The claim puts the
   * lease back if it was not revoked, and reports `lost` if it was.
   */
  reassert(reason: string, delayMs = 0): void {
    if (this.stopped) return;
    this.pendingReason ??= reason;
    if (!this.claiming) this.scheduleClaim(delayMs);
  }

  /**
   * Redis is reachable again: a claim that failed is retried now (within
   * retryInitialDelayMs, so nodes spread out) rather than after a backoff
   * that grew while Redis was away.
   */
  retryNow(): void {
    if (this.stopped || this.claiming || this.failures === 0) return;
    this.scheduleClaim(Math.round(Math.random() * this.retryInitialMs), true);
  }

  private untilRenewal(): number {
    const expiresAt = this.currentLease.expiresAt;
    const jitter = Math.random() * this.spreadMs;
    if (expiresAt === null) return Math.round(this.reservationCheckMs - jitter);
    return Math.max(0, Math.round(expiresAt - this.marginMs - jitter - this.store.serverNow()));
  }

  /** Arms the claim timer for `delayMs` from now, unless one is due sooner (or `replace`). */
  private scheduleClaim(delayMs: number, replace = false): void {
    if (this.stopped) return;
    const dueAt = Date.now() + delayMs;
    if (!replace && dueAt >= this.claimDueAt) return;
    if (this.claimTimer !== undefined) clearTimeout(this.claimTimer);
    this.claimDueAt = dueAt;
    this.claimTimer = setTimeout(() => void this.claim(), delayMs);
    this.claimTimer.unref();
  }

  /**
   * Exponential backoff, but never more than half the time the lease has
   * left: after a long outage the keeper must try again before the lease
   * lapses, not a full retryMaxDelayMs later.
   */
  private retryDelay(): number {
    const backoff = Math.min(this.retryMaxMs, this.retryInitialMs * 2 ** Math.min(this.failures - 1, 30));
    const expiresAt = this.currentLease.expiresAt;
    if (expiresAt === null) return backoff;
    const left = expiresAt - this.store.serverNow();
    return Math.max(this.retryInitialMs, Math.min(backoff, Math.floor(left / 2)));
  }

  private async claim(): Promise<void> {
    this.claimTimer = undefined;
    this.claimDueAt = Infinity;
    const reason = this.pendingReason;
    this.pendingReason = undefined;
    this.claiming = true;
    try {
      const outcome = await this.store.claimLease(this.currentLease);
      if (this.stopped) return;
      this.currentLease = outcome.lease;
      this.leases = outcome.leases;
      this.failures = 0;
      this.failing = undefined;
      if (outcome.change === 'restored') {
        const why = reason ?? 'it was gone at renewal time';
        this.logger.warn({ expiresAt: outcome.lease.expiresAt, reason: why }, 'lease was missing from the store, not revoked: put it back');
        this.emit('restored', outcome.lease, why);
      } else {
        this.logger.debug({ expiresAt: outcome.lease.expiresAt, change: outcome.change, reason }, 'lease renewed');
        this.emit('renewed', outcome.lease);
      }
    } catch (err) {
      if (this.stopped) return;
      if (err instanceof LeaseLostError) {
        this.logger.warn({ reason: err.reason, err: err.message }, 'lease lost');
        this.emit('lost', err);
        this.stop();
        return;
      }
      this.failures++;
      this.pendingReason ??= reason;
      const delay = this.retryDelay();
      const error = err instanceof Error ? err : new Error(String(err));
      this.failing = { since: this.failing?.since ?? Date.now(), error: error.message };
      this.logger.warn({ err: error.message, attempt: this.failures, retryInMs: delay, reason }, 'lease renewal failed; retrying');
      this.emit('renewFailed', error, delay);
      this.claiming = false;
      this.scheduleClaim(delay, true);
      return;
    } finally {
      this.claiming = false;
    }
    // A re-assertion asked for while this claim was in flight gets its own claim.
    this.scheduleClaim(this.pendingReason !== undefined ? 0 : this.untilRenewal(), true);
  }

  /** This keeper's share of the reaping: on average once every (leases x reapIntervalMs), at random. */
  private scheduleReap(): void {
    if (this.stopped) return;
    const delay = (0.5 + Math.random()) * Math.max(1, this.leases) * this.reapIntervalMs;
    // setTimeout takes at most 2^31-1 ms (24.8 days); a longer share is simply taken then.
    this.reapTimer = setTimeout(() => void this.reap(), Math.min(delay, 2 ** 31 - 1));
    this.reapTimer.unref();
  }

  private async reap(): Promise<void> {
    try {
      const { reaped, leases } = await this.store.reapExpired();
      this.leases = leases;
      if (reaped > 0) this.logger.info({ reaped, leases }, 'reaped expired leases');
    } catch (err) {
      this.logger.debug({ err: (err as Error).message }, 'reap failed; trying again at the next turn');
    } finally {
      this.scheduleReap();
    }
  }
}
