export function median(values: readonly number[]): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const middle = sorted.length >> 1;
  return sorted.length % 2 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
}

/** The p-th percentile (0-100) by nearest rank: p99 of 200 samples is the 198th smallest. */
export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const rank = Math.max(1, Math.ceil((p / 100) * sorted.length));
  return sorted[Math.min(rank, sorted.length) - 1]!;
}

/** The median of one field over several rounds; null if any round has none (a kernel path's CPU). */
export function medianOf<T>(rounds: readonly T[], pick: (round: T) => number | null): number | null {
  const values = rounds.map(pick);
  return values.some((v) => v === null) ? null : median(values as number[]);
}

export const gbps = (bitsPerSecond: number) => (bitsPerSecond / 1e9).toFixed(2);
