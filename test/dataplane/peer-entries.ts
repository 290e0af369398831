// The peer table keeps each peer as a PeerEntry, with the traffic counted
// for it; tests compare what a lookup found with the peer they put in.
import { PeerEntry, type Peer } from '../../daemon/dataplane/peer-table.js';

/** The peer a lookup found, as the plain peer it was made from; anything else (a drop reason, undefined) as it is. */
export function asPeer<T>(found: T | PeerEntry): T | Peer {
  if (!(found instanceof PeerEntry)) return found;
  const { subnet, subnet6, endpoint, sealerId } = found;
  return { ...(subnet ? { subnet } : {}), ...(subnet6 ? { subnet6 } : {}), endpoint, ...(sealerId !== undefined ? { sealerId } : {}) };
}
