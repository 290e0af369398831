// The lease store as a CLI uses it: fail-fast (one connection attempt, no
// reconnection), short timeouts, silent unless --debug, and always closed
// before the command returns.

import { pino, type Logger } from 'pino';
import { connectLeaseStore, OptionsError, type SubnetManager } from '../daemon/lease/index.js';
import { redisConnectionOptions } from '../daemon/redis-flags.js';
import type { GlobalSettings } from './conventions.js';
import { UsageError } from './errors.js';

/** The flag an operator changes for each store option that can be wrong. */
const FLAG_OF_OPTION: Readonly<Record<string, string>> = {
  url: '--redis-url',
  keyPrefix: '--prefix',
  connectTimeoutMs: '--timeout',
  commandTimeoutMs: '--timeout',
  minReplicas: '--redis-min-replicas',
};

function storeLogger(debug: boolean): Logger {
  // stderr, synchronously: stdout carries the command's data, and main.ts exits right after printing.
  return pino({ level: debug ? 'debug' : 'silent', base: { component: 'lease-store' } }, pino.destination({ dest: 2, sync: true }));
}

export async function openStore(settings: GlobalSettings): Promise<SubnetManager> {
  try {
    return await connectLeaseStore({
      ...redisConnectionOptions(settings),
      keyPrefix: settings.prefix,
      connectTimeoutMs: settings.timeoutMs,
      commandTimeoutMs: settings.timeoutMs,
      // WAIT must fit in one command's time.
      replicationTimeoutMs: Math.max(1, Math.floor(settings.timeoutMs / 2)),
      retry: { mode: 'fail-fast' },
      logger: storeLogger(settings.debug),
    });
  } catch (err) {
    const flag = err instanceof OptionsError ? FLAG_OF_OPTION[err.option] : undefined;
    if (flag !== undefined) throw new UsageError(`${flag}: ${(err as Error).message}`, { cause: err });
    throw err;
  }
}

/** Runs `work` with a connected store and closes the store afterwards, whatever happens. */
export async function withStore<T>(settings: GlobalSettings, work: (store: SubnetManager) => Promise<T>): Promise<T> {
  const store = await openStore(settings);
  try {
    return await work(store);
  } finally {
    await store.close();
  }
}
