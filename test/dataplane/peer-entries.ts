// The peer table keeps a copy of each peer with the traffic counted for it;
// tests compare what a lookup found with the peer they put in.
import type { PeerEntry } from '../../daemon/dataplane/peer-table.js';

/** The peer a lookup found, without the traffic the table added; anything else (a drop reason, undefined) as it is. */
export function asPeer<T>(found: T | PeerEntry): T | Omit<PeerEntry, 'traffic'> {
  if (typeof found !== 'object' || found === null || !('traffic' in found)) return found;
  const { traffic: _, ...peer } = found;
  return peer;
}
