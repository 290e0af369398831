/**
 * The one error class for a wrong command line, shared by miniflanneld and
 * the miniflannel CLI (which imports it from here, so the daemon never
 * depends on the CLI). Both exit 2 on it; its message names the flag to fix.
 */
export class UsageError extends Error {
  override readonly name = 'UsageError';
}
