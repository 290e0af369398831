// Allocation policy, apart from storage: which subnets to offer the create
// script. Pure functions, so they can be tested without Redis.

import { allocatableCount, allocatableSubnet, type NetworkConfig } from './config.js';

/** Ranges up to this many subnets are enumerated; larger ones are sampled at random. */
const ENUMERATION_LIMIT = 1 << 16;

/**
 * Up to `max` distinct free subnets of SubnetMin..SubnetMax, chosen uniformly
 * at random (flannel picks at random among free subnets so that nodes
 * starting together rarely collide). Offering several candidates lets the
 * create script fall back to the next one when a concurrent acquirer took the
 * first, instead of failing the whole attempt. Returns [] when none is free.
 *
 * @param occupied network addresses of the subnets already leased or reserved
 */
export function pickFreeSubnets(
  config: NetworkConfig,
  occupied: ReadonlySet<number>,
  max: number,
  random: () => number = Math.random,
): number[] {
  const count = allocatableCount(config);
  if (count > ENUMERATION_LIMIT && occupied.size < count / 2) {
    // Mostly free: probing finds free subnets fast without touching the whole range.
    const picked = new Set<number>();
    for (let tries = 0; tries < max * 64 && picked.size < max; tries++) {
      const subnet = allocatableSubnet(config, Math.floor(random() * count));
      if (!occupied.has(subnet)) picked.add(subnet);
    }
    if (picked.size > 0) return [...picked];
  }
  const free: number[] = [];
  for (let i = 0; i < count; i++) {
    const subnet = allocatableSubnet(config, i);
    if (!occupied.has(subnet)) free.push(subnet);
  }
  // Partial Fisher-Yates: the first `max` slots become a uniform sample.
  const n = Math.min(max, free.length);
  for (let i = 0; i < n; i++) {
    const j = i + Math.floor(random() * (free.length - i));
    const chosen = free[j]!;
    free[j] = free[i]!;
    free[i] = chosen;
  }
  free.length = n;
  return free;
}
