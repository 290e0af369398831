// The lease keeper against a store in memory: when it renews, how it
// re-asserts, what ends it, and its share of the reaping. No Redis: the
// keeper only needs the three calls of LeaseKeeping.
import assert from 'node:assert/strict';
import { describe, it, mock } from 'node:test';
import { LeaseKeeper, type ClaimOutcome, type LeaseKeeping } from '../../daemon/lease/keeper.js';
import { LeaseLostError, StoreUnavailableError } from '../../daemon/lease/index.js';
import type { Lease } from '../../daemon/lease/lease.js';
import { parseCidr } from '../../daemon/net/ipv4.js';
import { silentLogger } from './helpers.js';

const HOUR = 3_600_000;
const TTL = 24 * HOUR;
const MARGIN = HOUR;

/** A store whose clock is the mocked Date.now() and whose answers the test sets. */
class MemoryStore implements LeaseKeeping {
  claims: number[] = [];
  reaps: number[] = [];
  answer: () => ClaimOutcome['change'] | Error = () => 'renewed';
  leases = 1;

  async claimLease(lease: Lease): Promise<ClaimOutcome> {
    this.claims.push(Date.now());
    const answer = this.answer();
    if (answer instanceof Error) throw answer;
    return { lease: { ...lease, expiresAt: lease.expiresAt === null ? null : Date.now() + TTL }, change: answer, leases: this.leases };
  }

  async reapExpired(): Promise<{ reaped: number; leases: number }> {
    this.reaps.push(Date.now());
    return { reaped: 0, leases: this.leases };
  }

  serverNow(): number {
    return Date.now();
  }
}

function lease(expiresAt: number | null): Lease {
  return { subnet: '10.244.3.0/24', cidr: parseCidr('10.244.3.0/24'), publicIP: '198.18.0.3', nodeName: 'n3', backendType: 'udp', backendData: { Port: 8285 }, expiresAt };
}

function keeper(store: MemoryStore, held: Lease, reapIntervalMs = 30 * 60_000): LeaseKeeper {
  return new LeaseKeeper(store, held, { renewMarginMs: MARGIN, leaseTtlMs: TTL, reapIntervalMs, leases: store.leases, logger: silentLogger(), retryInitialDelayMs: 1_000 });
}

/** Lets the keeper's promise callbacks run after a mocked timer fired. */
async function settle(): Promise<void> {
  for (let i = 0; i < 5; i++) await Promise.resolve();
}

describe('lease keeper', () => {
  it('renews at a random time between the margin and 1.5 x the margin before expiry, so nodes started together spread out', async () => {
    mock.timers.enable({ apis: ['setTimeout', 'Date'], now: 0 });
    try {
      const offsets: number[] = [];
      for (let i = 0; i < 200; i++) {
        const store = new MemoryStore();
        const k = keeper(store, lease(TTL));
        k.start();
        mock.timers.tick(TTL - 1.5 * MARGIN - 1);
        await settle();
        assert.equal(store.claims.length, 0, 'not before expiry - 1.5 x margin');
        // Minute by minute to expiry - margin: when the claim comes is the offset (to the minute).
        let minute = 0;
        while (store.claims.length === 0 && minute <= 31) {
          mock.timers.tick(60_000);
          await settle();
          minute++;
        }
        assert.equal(store.claims.length, 1, 'by expiry - margin');
        offsets.push(minute);
        k.stop();
        mock.timers.reset();
        mock.timers.enable({ apis: ['setTimeout', 'Date'], now: 0 });
      }
      const spread = Math.max(...offsets) - Math.min(...offsets);
      assert.ok(spread >= 25, `renewals spread over ${spread} min of the 30`);
      // Uniform over the window: each third of it gets a fair share of the 200.
      for (const [from, to] of [[0, 10], [10, 20], [20, 31]] as const) {
        const share = offsets.filter((m) => m > from && m <= to).length;
        assert.ok(share > 40, `${share} renewals in minutes ${from}..${to}`);
      }
    } finally {
      mock.timers.reset();
    }
  });

  it('re-asserts at once on request, and a second request while one is pending is the same claim', async () => {
    mock.timers.enable({ apis: ['setTimeout', 'Date'], now: 0 });
    try {
      const store = new MemoryStore();
      store.answer = () => 'restored';
      const k = keeper(store, lease(TTL));
      const restored: string[] = [];
      k.on('restored', (_l, reason) => restored.push(reason));
      k.start();
      k.reassert('the store lost its data', 2_000);
      k.reassert('the lease was expired', 500);
      mock.timers.tick(500);
      await settle();
      assert.equal(store.claims.length, 1, 'the earlier of the two delays, one claim');
      assert.deepEqual(restored, ['the store lost its data']);
      mock.timers.tick(2_000);
      await settle();
      assert.equal(store.claims.length, 1, 'no second claim for the same request');
      k.stop();
    } finally {
      mock.timers.reset();
    }
  });

  it('retries a claim that cannot reach Redis with backoff, and stops only when the lease is revoked or taken', async () => {
    mock.timers.enable({ apis: ['setTimeout', 'Date'], now: 0 });
    try {
      const store = new MemoryStore();
      let calls = 0;
      store.answer = () => (++calls <= 3 ? new StoreUnavailableError('redis://x', 'Redis unreachable at redis://x: ECONNREFUSED') : new LeaseLostError('10.244.3.0/24', 'revoked', 'revoked'));
      const k = keeper(store, lease(TTL));
      const failures: number[] = [];
      let lost: LeaseLostError | undefined;
      let stopped = false;
      k.on('renewFailed', (_err, retryInMs) => failures.push(retryInMs));
      k.on('lost', (err) => (lost = err));
      k.on('stopped', () => (stopped = true));
      k.start();
      k.reassert('test');
      for (let i = 0; i < 10 && lost === undefined; i++) {
        mock.timers.tick(10_000);
        await settle();
      }
      assert.deepEqual(failures, [1_000, 2_000, 4_000], 'doubling from retryInitialDelayMs');
      assert.equal(lost?.reason, 'revoked');
      assert.ok(stopped);
      const claimsAtStop = store.claims.length;
      mock.timers.tick(TTL);
      await settle();
      assert.equal(store.claims.length, claimsAtStop, 'a stopped keeper claims nothing');
    } finally {
      mock.timers.reset();
    }
  });

  it('shows while renewal fails: since the first failure, the attempts, the last error; and clears it when a claim succeeds', async () => {
    mock.timers.enable({ apis: ['setTimeout', 'Date'], now: 50_000 });
    try {
      const store = new MemoryStore();
      let calls = 0;
      store.answer = () => (++calls <= 2 ? new StoreUnavailableError('redis://x', `Redis unreachable at redis://x: attempt ${calls}`) : 'renewed');
      const k = keeper(store, lease(TTL));
      assert.equal(k.renewMarginMs, MARGIN, 'what /status reports, for doctor to judge the time left by');
      k.start();
      assert.equal(k.renewalFailure, undefined);
      k.reassert('test');
      mock.timers.tick(0);
      await settle();
      assert.deepEqual(k.renewalFailure, { since: 50_000, attempts: 1, error: 'Redis unreachable at redis://x: attempt 1' });
      mock.timers.tick(1_000);
      await settle();
      assert.deepEqual(k.renewalFailure, { since: 50_000, attempts: 2, error: 'Redis unreachable at redis://x: attempt 2' });
      mock.timers.tick(2_000);
      await settle();
      assert.equal(k.renewalFailure, undefined);
      k.stop();
    } finally {
      mock.timers.reset();
    }
  });

  it('takes a random share of the reaping: on average once every (leases x reapIntervalMs)', async () => {
    mock.timers.enable({ apis: ['setTimeout', 'Date'], now: 0 });
    try {
      const store = new MemoryStore();
      store.leases = 10;
      const k = keeper(store, lease(null), 1_000);
      k.start();
      for (let t = 0; t < 1_000; t++) {
        mock.timers.tick(1_000);
        await settle();
      }
      // 1000 s at one reap per 10 x 1 s on average: about 100, between 0.5 and 1.5 x 10 s apart.
      assert.ok(store.reaps.length >= 66 && store.reaps.length <= 200, `${store.reaps.length} reaps`);
      const gaps = store.reaps.slice(1).map((at, i) => at - store.reaps[i]!);
      assert.ok(gaps.every((gap) => gap >= 5_000 && gap <= 16_000), `gaps ${Math.min(...gaps)}..${Math.max(...gaps)} ms`);
      k.stop();
    } finally {
      mock.timers.reset();
    }
  });
});
