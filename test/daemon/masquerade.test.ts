// --ip-masq on a node that lacks the rule tool: one line that names the tool and the way out.
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { installMasquerade, MASQUERADE_IPV6, MasqueradeError } from '../../daemon/node/masquerade.js';

test('without ip6tables, installing the IPv6 masquerade says which tool is missing and what to do', async () => {
  const empty = await mkdtemp(path.join(tmpdir(), 'miniflannel-no-tools-'));
  const savedPath = process.env.PATH;
  process.env.PATH = empty;
  try {
    await assert.rejects(installMasquerade(MASQUERADE_IPV6, { network: 'fd00:10:244::/56', subnet: 'fd00:10:244:3::/64' }), (err: unknown) => {
      assert.ok(err instanceof MasqueradeError);
      assert.match(err.message, /^--ip-masq needs ip6tables, which is not installed .*install it, or run without --ip-masq$/);
      assert.doesNotMatch(err.message, /\n/);
      return true;
    });
  } finally {
    process.env.PATH = savedPath;
    await rm(empty, { recursive: true });
  }
});
