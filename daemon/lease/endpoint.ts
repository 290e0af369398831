// Where Redis is: the URL forms accepted by connectLeaseStore.
//
//   redis://[user[:password]@]host[:port][/db]                 one server (port 6379)
//   rediss://...                                               the same over TLS
//   redis+sentinel://[user[:password]@]host[:port][,host[:port]...]/master[/db]
//       [?sentinelUsername=...&sentinelPassword=...]           Sentinel (port 26379); the
//                                                              credentials before @ are the data nodes'
//   rediss+sentinel://...                                      Sentinel, TLS to sentinels and data nodes
//   redis+cluster://[user[:password]@]host[:port][,host[:port]...]   Redis Cluster seed nodes (port 6379)
//   rediss+cluster://...                                       Cluster over TLS
//
// A comma-separated host list is not a WHATWG URL, so the parsing is done by
// hand. IPv6 hosts go in brackets: redis://[::1]:6379.

import { OptionsError } from './errors.js';

export interface HostPort {
  readonly host: string;
  readonly port: number;
}

interface Credentials {
  readonly username?: string;
  readonly password?: string;
}

export interface StandaloneEndpoint extends Credentials {
  readonly kind: 'standalone';
  readonly tls: boolean;
  readonly node: HostPort;
  readonly db: number;
}

export interface SentinelEndpoint extends Credentials {
  readonly kind: 'sentinel';
  readonly tls: boolean;
  readonly sentinels: readonly HostPort[];
  readonly masterName: string;
  readonly db: number;
  readonly sentinelUsername?: string;
  readonly sentinelPassword?: string;
}

export interface ClusterEndpoint extends Credentials {
  readonly kind: 'cluster';
  readonly tls: boolean;
  readonly nodes: readonly HostPort[];
}

export type RedisEndpoint = StandaloneEndpoint | SentinelEndpoint | ClusterEndpoint;

const SCHEMES: Record<string, { kind: RedisEndpoint['kind']; tls: boolean; defaultPort: number }> = {
  'redis:': { kind: 'standalone', tls: false, defaultPort: 6379 },
  'rediss:': { kind: 'standalone', tls: true, defaultPort: 6379 },
  'redis+sentinel:': { kind: 'sentinel', tls: false, defaultPort: 26379 },
  'rediss+sentinel:': { kind: 'sentinel', tls: true, defaultPort: 26379 },
  'redis+cluster:': { kind: 'cluster', tls: false, defaultPort: 6379 },
  'rediss+cluster:': { kind: 'cluster', tls: true, defaultPort: 6379 },
};

function invalid(url: string, why: string): OptionsError {
  return new OptionsError('url', `Redis URL "${redactUrl(url)}" is invalid: ${why}. See docs/redis.md for the accepted forms.`);
}

/**
 * Masks the passwords in a URL-ish string, even one that does not parse, so
 * it can be logged: the one before @ and a sentinelPassword parameter.
 */
export function redactUrl(url: string): string {
  let text = url;
  const start = text.indexOf('//');
  // The last @ anywhere: a password may hold unencoded / ? or @, and masking too much is harmless.
  const at = text.lastIndexOf('@');
  if (start >= 0 && at > start) {
    const userinfo = text.slice(start + 2, at);
    const colon = userinfo.indexOf(':');
    if (colon >= 0) text = `${text.slice(0, start + 2)}${userinfo.slice(0, colon)}:***${text.slice(at)}`;
  }
  return text.replace(/([?&]sentinelPassword=)[^&]*/gi, '$1***');
}

/**
 * The minReplicas the daemon and the CLI use unless told otherwise: 1 with
 * Sentinel, whose failover promotes a replica, so a lease write must reach
 * one before it counts; 0 otherwise (a lone server has nothing to wait for,
 * and on Cluster the replica count is the operator's to state).
 */
export function minReplicasFor(endpoint: RedisEndpoint): number {
  return endpoint.kind === 'sentinel' ? 1 : 0;
}

function decode(url: string, text: string, what: string): string {
  try {
    return decodeURIComponent(text);
  } catch {
    throw invalid(url, `the ${what} is not validly percent-encoded`);
  }
}

function parseHostPort(url: string, text: string, defaultPort: number): HostPort {
  let host: string;
  let portText: string | undefined;
  if (text.startsWith('[')) {
    const close = text.indexOf(']');
    if (close < 0) throw invalid(url, `"${text}" opens an IPv6 bracket that is not closed`);
    host = text.slice(1, close);
    const rest = text.slice(close + 1);
    if (rest !== '' && !rest.startsWith(':')) throw invalid(url, `unexpected "${rest}" after "${text.slice(0, close + 1)}"`);
    portText = rest === '' ? undefined : rest.slice(1);
  } else {
    const colon = text.lastIndexOf(':');
    host = colon < 0 ? text : text.slice(0, colon);
    portText = colon < 0 ? undefined : text.slice(colon + 1);
  }
  if (host === '') throw invalid(url, 'a host is empty');
  if (portText === undefined) return { host, port: defaultPort };
  const port = /^[0-9]{1,5}$/.test(portText) ? Number(portText) : NaN;
  if (!(port >= 1 && port <= 65535)) throw invalid(url, `port "${portText}" is not an integer in 1..65535`);
  return { host, port };
}

function parseDb(url: string, text: string | undefined): number {
  if (text === undefined || text === '') return 0;
  if (!/^[0-9]{1,5}$/.test(text)) throw invalid(url, `database "${text}" is not a non-negative integer`);
  return Number(text);
}

/** Parses one of the URL forms above. Throws OptionsError (option "url") naming what is wrong. */
export function parseRedisUrl(url: string): RedisEndpoint {
  const schemeEnd = url.indexOf('//');
  const scheme = schemeEnd < 0 ? '' : url.slice(0, schemeEnd).toLowerCase();
  const form = SCHEMES[scheme];
  if (form === undefined) {
    throw invalid(url, `the scheme must be one of ${Object.keys(SCHEMES).map((s) => `${s}//`).join(', ')}`);
  }
  let rest = url.slice(schemeEnd + 2);
  let query = '';
  const queryStart = rest.indexOf('?');
  if (queryStart >= 0) {
    query = rest.slice(queryStart + 1);
    rest = rest.slice(0, queryStart);
  }
  const pathStart = rest.indexOf('/');
  const authority = pathStart < 0 ? rest : rest.slice(0, pathStart);
  const path = pathStart < 0 ? [] : rest.slice(pathStart + 1).split('/');

  let hosts = authority;
  const credentials: { username?: string; password?: string } = {};
  const at = authority.lastIndexOf('@');
  if (at >= 0) {
    const userinfo = authority.slice(0, at);
    hosts = authority.slice(at + 1);
    const colon = userinfo.indexOf(':');
    const username = decode(url, colon < 0 ? userinfo : userinfo.slice(0, colon), 'username');
    if (username !== '') credentials.username = username;
    if (colon >= 0) credentials.password = decode(url, userinfo.slice(colon + 1), 'password');
  }
  if (hosts === '') throw invalid(url, 'no host is given');
  const nodes = hosts.split(',').map((h) => parseHostPort(url, h, form.defaultPort));
  const params = new URLSearchParams(query);

  switch (form.kind) {
    case 'standalone': {
      if (nodes.length !== 1) throw invalid(url, `${scheme}// takes one host; use redis+cluster:// or redis+sentinel:// for several`);
      if (path.length > 1) throw invalid(url, 'the path may only hold a database number');
      const allowed = new Set<string>();
      rejectUnknownParams(url, params, allowed);
      return { kind: 'standalone', tls: form.tls, node: nodes[0]!, db: parseDb(url, path[0]), ...credentials };
    }
    case 'sentinel': {
      const masterName = path[0] === undefined ? '' : decode(url, path[0], 'master name');
      if (masterName === '') throw invalid(url, 'the master name is missing (redis+sentinel://host:26379/mymaster)');
      if (path.length > 2) throw invalid(url, 'the path may only hold the master name and a database number');
      rejectUnknownParams(url, params, new Set(['sentinelUsername', 'sentinelPassword']));
      const sentinelUsername = params.get('sentinelUsername');
      const sentinelPassword = params.get('sentinelPassword');
      return {
        kind: 'sentinel',
        tls: form.tls,
        sentinels: nodes,
        masterName,
        db: parseDb(url, path[1]),
        ...credentials,
        ...(sentinelUsername !== null ? { sentinelUsername } : {}),
        ...(sentinelPassword !== null ? { sentinelPassword } : {}),
      };
    }
    case 'cluster': {
      if (path.length > 0 && !(path.length === 1 && path[0] === '')) {
        throw invalid(url, 'Redis Cluster has no databases, so the URL takes no path');
      }
      rejectUnknownParams(url, params, new Set());
      return { kind: 'cluster', tls: form.tls, nodes, ...credentials };
    }
  }
}

function rejectUnknownParams(url: string, params: URLSearchParams, allowed: ReadonlySet<string>): void {
  for (const name of params.keys()) {
    if (!allowed.has(name)) {
      const hint = allowed.size === 0 ? 'this form takes no query parameters' : `allowed: ${[...allowed].join(', ')}`;
      throw invalid(url, `unknown query parameter "${name}" (${hint})`);
    }
  }
}

function formatHost(node: HostPort): string {
  return node.host.includes(':') ? `[${node.host}]:${node.port}` : `${node.host}:${node.port}`;
}

/** The endpoint as a URL with the password masked: safe for logs and error messages. */
export function describeEndpoint(endpoint: RedisEndpoint): string {
  const user =
    endpoint.username !== undefined || endpoint.password !== undefined
      ? `${encodeURIComponent(endpoint.username ?? '')}${endpoint.password !== undefined ? ':***' : ''}@`
      : '';
  const s = endpoint.tls ? 's' : '';
  switch (endpoint.kind) {
    case 'standalone':
      return `redis${s}://${user}${formatHost(endpoint.node)}${endpoint.db !== 0 ? `/${endpoint.db}` : ''}`;
    case 'sentinel':
      return (
        `redis${s}+sentinel://${user}${endpoint.sentinels.map(formatHost).join(',')}/` +
        `${encodeURIComponent(endpoint.masterName)}${endpoint.db !== 0 ? `/${endpoint.db}` : ''}`
      );
    case 'cluster':
      return `redis${s}+cluster://${user}${endpoint.nodes.map(formatHost).join(',')}`;
  }
}
