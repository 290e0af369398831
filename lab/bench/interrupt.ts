// Ctrl-C during a benchmark: stop measuring, end the processes the run
// started (by pid), remove its namespaces, and only then exit. The body
// owns the cleanup (try/finally); this turns the signal into an abort.
import type { MeasurementProcesses } from './processes.js';

/** The run was interrupted; everything it made has been removed. */
export class InterruptedError extends Error {
  override readonly name = 'InterruptedError';
}

export async function interruptible<T>(
  processes: MeasurementProcesses | undefined,
  log: (line: string) => void,
  body: (signal: AbortSignal) => Promise<T>,
): Promise<T> {
  const controller = new AbortController();
  let signals = 0;
  const onSignal = (name: NodeJS.Signals) => {
    signals++;
    if (signals === 1) {
      log(`${name}: stopping the measurements and cleaning up (namespaces, processes)`);
      controller.abort(new InterruptedError(`interrupted by ${name}; the run's namespaces and processes are removed`));
      processes?.killAll();
    } else if (signals === 2) {
      log('still cleaning up; press Ctrl-C once more to quit at once (a later run removes what is left)');
    } else {
      process.exit(130);
    }
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  try {
    return await body(controller.signal);
  } catch (err) {
    if (controller.signal.aborted) throw controller.signal.reason;
    throw err;
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}
