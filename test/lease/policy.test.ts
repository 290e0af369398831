import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { allocatableCount, allocatableSubnet, parseNetworkConfig } from '../../daemon/lease/config.js';
import { pickFreeSubnets } from '../../daemon/lease/policy.js';

describe('pickFreeSubnets', () => {
  const config = parseNetworkConfig({ Network: '10.5.0.0/22', SubnetLen: 26 }); // 15 allocatable /26s

  it('offers distinct, aligned, free subnets inside SubnetMin..SubnetMax', () => {
    fc.assert(
      fc.property(fc.subarray([...Array(allocatableCount(config)).keys()]), fc.integer({ min: 1, max: 20 }), (taken, max) => {
        const occupied = new Set(taken.map((i) => allocatableSubnet(config, i)));
        const picks = pickFreeSubnets(config, occupied, max);
        assert.equal(picks.length, Math.min(max, allocatableCount(config) - occupied.size));
        assert.equal(new Set(picks).size, picks.length);
        for (const subnet of picks) {
          assert.ok(!occupied.has(subnet));
          assert.ok(subnet >= config.subnetMin && subnet <= config.subnetMax);
          assert.equal((subnet - config.subnetMin) % 64, 0);
        }
      }),
    );
  });

  it('returns nothing when every subnet is taken', () => {
    const all = new Set([...Array(allocatableCount(config)).keys()].map((i) => allocatableSubnet(config, i)));
    assert.deepEqual(pickFreeSubnets(config, all, 16), []);
  });

  it('picks at random: every free subnet comes up first eventually', () => {
    const seen = new Set<number>();
    for (let i = 0; i < 2000; i++) seen.add(pickFreeSubnets(config, new Set(), 1)[0]!);
    assert.equal(seen.size, allocatableCount(config));
  });

  it('samples a huge range without enumerating it', () => {
    const huge = parseNetworkConfig({ Network: '10.0.0.0/8', SubnetLen: 30 }); // ~4M subnets
    const started = process.hrtime.bigint();
    const picks = pickFreeSubnets(huge, new Set([huge.subnetMin]), 16);
    const elapsedMs = Number(process.hrtime.bigint() - started) / 1e6;
    assert.equal(picks.length, 16);
    assert.ok(!picks.includes(huge.subnetMin));
    assert.ok(elapsedMs < 1000, `took ${elapsedMs} ms`);
  });
});
