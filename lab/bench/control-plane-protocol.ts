// What the coordinator of `bench control-plane` and its worker processes say
// to each other over the IPC channel of child_process.fork: one request, one
// reply, matched by id. Only plain numbers and strings cross it; the
// simulated daemons themselves never leave their worker.

/** What a worker needs to run its share of the simulated daemons. */
export interface WorkerConfig {
  /** redis://127.0.0.1:<port>: the same URL across restarts of the server. */
  readonly url: string;
  /** Global index of this worker's first daemon; daemon i has public IP nodeIp(i). */
  readonly first: number;
  readonly count: number;
  readonly leaseTtlMs: number;
  readonly renewMarginMs: number;
  /** Watches of this worker that may be between their start and their snapshot at once. */
  readonly watchStarts: number;
  /** The public IP of the probe's lease, whose changes are timed. */
  readonly probeIp: string;
}

/** Counts while the daemons come up. */
export interface Progress {
  readonly acquired: number;
  readonly watching: number;
  readonly exited: number;
}

/** Sums over this worker's daemons (killed and exited ones included) since it started. */
export interface WorkerStats {
  readonly daemons: number;
  /** Started, holding a lease, not killed and not exited. */
  readonly running: number;
  /** Running, and its watch delivered a snapshot. */
  readonly watching: number;
  readonly killed: number;
  /** Daemons that ended on their own, as miniflanneld does: lease lost, watch failed, or start-up failed. */
  readonly exited: number;
  /** The first few reasons, for the report. */
  readonly exitReasons: readonly string[];
  /** Failures that were retried (claims, config checks), by kind, with their counts: the first few kinds. */
  readonly failures: ReadonlyArray<readonly [string, number]>;
  /** Attempts at start-up (getNetworkConfig + acquireLease) that failed and were retried. */
  readonly acquireRetries: number;
  /** Keeper events. */
  readonly renewals: number;
  readonly restored: number;
  readonly renewFailed: number;
  /** Calls to keeper.reassert made by the consumers (reset, own lease gone). */
  readonly reassertions: number;
  /** ensureNetworkConfig calls, and those that stored the config. */
  readonly configChecks: number;
  readonly configStored: number;
  readonly configFailures: number;
  /** watch.stats summed. */
  readonly delivered: number;
  readonly resyncs: number;
  readonly resets: number;
  readonly reconnects: number;
  readonly corruptEvents: number;
  /** Snapshots by cause, as the consumers saw them. */
  readonly snapshots: { readonly start: number; readonly gap: number; readonly reset: number };
  /** Each subnet some watcher here saw expire, with the first time one did (epoch ms). */
  readonly expired: ReadonlyArray<readonly [string, number]>;
  /** Lease counts of the watching daemons: lowest and highest. */
  readonly minLeaseCount: number;
  readonly maxLeaseCount: number;
  /** Event-loop delay of this worker since the last reset, ms. */
  readonly loopDelayP99Ms: number;
  readonly loopDelayMaxMs: number;
  readonly rssBytes: number;
  /** The most this worker's resident memory has been (getrusage maxrss). */
  readonly peakRssBytes: number;
}

/** A change of the probe's lease as the watchers of one worker received it. */
export interface ChangeArrival {
  /** Per watcher that had it: ms from the commit (the stream ID's time) to arrival. */
  readonly latencies: readonly number[];
  /** Watchers that should have had it. */
  readonly expected: number;
}

/** When every watcher of a worker reached a state (epoch ms), or null if not within the timeout. */
export interface Reached {
  readonly at: number | null;
  readonly reached: number;
  readonly expected: number;
}

/** Each operation: its argument and its reply. */
export interface Operations {
  /** Starts every daemon at once; replies at once. */
  start: [WorkerConfig, null];
  progress: [null, Progress];
  /** Replies when every daemon holds its lease: the time the last one got it (epoch ms). */
  'await-acquired': [{ timeoutMs: number }, Reached];
  /** Replies when every daemon's watch delivered its snapshot. */
  'await-watching': [{ timeoutMs: number }, Reached];
  /** Replies when every watching daemon had the change with this stream ID, or after the timeout. */
  'await-change': [{ seq: string; timeoutMs: number }, ChangeArrival];
  /** Stops (without revoking) up to `count` daemons whose lease expires in [from, to] (Redis clock, ms), soonest first. */
  kill: [{ count: number; from: number; to: number }, { killed: ReadonlyArray<{ subnet: string; expiresAt: number }> }];
  /** Stops every keeper (renewals and reaping), keeping the lease; resume starts new keepers on the same leases. */
  'pause-keepers': [null, null];
  'resume-keepers': [null, null];
  stats: [{ resetLoopDelay: boolean }, WorkerStats];
  /** [subnet, public IP] of every running daemon. */
  leases: [null, ReadonlyArray<readonly [string, string]>];
  /** Remembers each daemon's reconnects and resets, for the awaits below. */
  mark: [null, null];
  /** Replies when every running daemon's watch has reconnected since the mark and is connected. */
  'await-reconnected': [{ timeoutMs: number }, Reached];
  /** Replies when every running daemon saw a reset since the mark and has since been told of `expected` leases. */
  'await-recovered': [
    { expected: number; timeoutMs: number },
    Reached & {
      readonly resetSeen: number;
      /** When each running daemon that saw a reset since the mark first saw it, and when each whose keeper put its lease back first did so (epoch ms). */
      readonly resetSeenAt: readonly number[];
      readonly restoredAt: readonly number[];
      /** Leases the keepers put back since the mark: more than one per daemon means a lease lapsed again before it was renewed. */
      readonly restores: number;
    },
  ];
  /** Closes every store and exits. */
  stop: [null, null];
}

export type OperationName = keyof Operations;

export interface RequestMessage<K extends OperationName = OperationName> {
  readonly id: number;
  readonly op: K;
  readonly arg: Operations[K][0];
}

export type ReplyMessage = { readonly id: number; readonly ok: true; readonly value: unknown } | { readonly id: number; readonly ok: false; readonly error: string };

/** Daemon i's public IP: 198.18.0.1, 198.18.0.2, ... in 198.18.0.0/15. */
export function nodeIp(i: number): string {
  const n = (0xc6120000 + i + 1) >>> 0;
  return `${n >>> 24}.${(n >>> 16) & 255}.${(n >>> 8) & 255}.${n & 255}`;
}
