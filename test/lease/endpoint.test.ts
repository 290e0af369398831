import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { describeEndpoint, OptionsError, parseRedisUrl } from '../../daemon/lease/index.js';

describe('Redis URL forms', () => {
  it('parses a plain URL with defaults', () => {
    assert.deepEqual(parseRedisUrl('redis://127.0.0.1'), { kind: 'standalone', tls: false, node: { host: '127.0.0.1', port: 6379 }, db: 0 });
  });

  it('parses credentials, TLS and a database, and masks the password when described', () => {
    const endpoint = parseRedisUrl('rediss://flannel:s3cr%40t@redis.example:6380/2');
    assert.deepEqual(endpoint, { kind: 'standalone', tls: true, node: { host: 'redis.example', port: 6380 }, db: 2, username: 'flannel', password: 's3cr@t' });
    const text = describeEndpoint(endpoint);
    assert.equal(text, 'rediss://flannel:***@redis.example:6380/2');
    assert.ok(!text.includes('s3cr'));
  });

  it('parses a password without a username', () => {
    const endpoint = parseRedisUrl('redis://:pw@10.0.0.1:6390');
    assert.equal(endpoint.password, 'pw');
    assert.equal(endpoint.username, undefined);
    assert.equal(describeEndpoint(endpoint), 'redis://:***@10.0.0.1:6390');
  });

  it('parses IPv6 hosts in brackets', () => {
    const endpoint = parseRedisUrl('redis://[::1]:7000');
    assert.deepEqual(endpoint.kind === 'standalone' && endpoint.node, { host: '::1', port: 7000 });
    assert.equal(describeEndpoint(endpoint), 'redis://[::1]:7000');
  });

  it('parses Sentinel: several sentinels, master name, db and sentinel credentials', () => {
    const endpoint = parseRedisUrl('redis+sentinel://u:p@s1:26380,s2/mymaster/1?sentinelPassword=sp&sentinelUsername=su');
    assert.deepEqual(endpoint, {
      kind: 'sentinel',
      tls: false,
      sentinels: [
        { host: 's1', port: 26380 },
        { host: 's2', port: 26379 },
      ],
      masterName: 'mymaster',
      db: 1,
      username: 'u',
      password: 'p',
      sentinelUsername: 'su',
      sentinelPassword: 'sp',
    });
    assert.equal(describeEndpoint(endpoint), 'redis+sentinel://u:***@s1:26380,s2:26379/mymaster/1');
  });

  it('parses Cluster seed nodes', () => {
    const endpoint = parseRedisUrl('rediss+cluster://n1:7000,n2:7001,n3');
    assert.deepEqual(endpoint, {
      kind: 'cluster',
      tls: true,
      nodes: [
        { host: 'n1', port: 7000 },
        { host: 'n2', port: 7001 },
        { host: 'n3', port: 6379 },
      ],
    });
  });

  const bad: Array<[string, RegExp]> = [
    ['http://127.0.0.1', /scheme/],
    ['127.0.0.1:6379', /scheme/],
    ['redis://', /no host/],
    ['redis://h:0', /port/],
    ['redis://h:99999', /port/],
    ['redis://h:abc', /port/],
    ['redis://h1,h2', /one host/],
    ['redis://h/x', /database/],
    ['redis://h?foo=1', /unknown query parameter "foo"/],
    ['redis+sentinel://s1:26379', /master name/],
    ['redis+cluster://n1/3', /no databases/],
    ['redis://[::1:6379', /bracket/],
  ];
  for (const [url, why] of bad) {
    it(`rejects ${url} naming the url option`, () => {
      assert.throws(
        () => parseRedisUrl(url),
        (err: unknown) => err instanceof OptionsError && err.option === 'url' && why.test(err.message),
      );
    });
  }

  it('never echoes a password in an error', () => {
    assert.throws(
      () => parseRedisUrl('redis://user:hunter2@h:notaport'),
      (err: unknown) => err instanceof OptionsError && !err.message.includes('hunter2'),
    );
  });
});
