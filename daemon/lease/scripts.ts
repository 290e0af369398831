// The Lua scripts: every write to the lease keys happens inside one of them,
// so each write is atomic with its change-stream event and with the reaping
// of expired leases that precedes it.
//
// KEYS (all under one hash tag, so the scripts also run on Redis Cluster):
//   1 {p}:leases  hash    subnet -> owner attributes (JSON)
//   2 {p}:expiry  zset    subnet -> expiry, ms by the Redis clock (absent: reservation)
//   3 {p}:owners  hash    public IP -> subnet (an index; trusted only when the lease agrees)
//   4 {p}:events  stream  change feed: n (sequence), t (type), s (subnet), l (attributes), e (expiry)
//   5 {p}:seq     string  last sequence number written to the stream
// ARGV: 1 stream cap (XADD MAXLEN ~), 2 reap limit (0: all), then per script.
//
// Every script returns {now, status, ...}: now is the Redis clock in ms, the
// clock that expiries are measured by.

import { createHash } from 'node:crypto';

export interface LuaScript {
  readonly name: string;
  readonly lua: string;
  readonly sha: string;
}

const PRELUDE = `
local LEASES, EXPIRY, OWNERS, EVENTS, SEQ = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local MAXLEN = ARGV[1]
local REAP_LIMIT = tonumber(ARGV[2])
local clock = redis.call('TIME')
local NOW = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)

local function int(x)
  if x == '' then return '' end
  return string.format('%d', x)
end

local function emit(kind, subnet, attrs, expires)
  local n = redis.call('INCR', SEQ)
  redis.call('XADD', EVENTS, 'MAXLEN', '~', MAXLEN, '*', 'n', n, 't', kind, 's', subnet, 'l', attrs, 'e', int(expires))
end

-- The PublicIP inside stored attributes, or nil if they are absent or corrupt.
local function owner_of(attrs)
  if not attrs then return nil end
  local ok, doc = pcall(cjson.decode, attrs)
  if ok and type(doc) == 'table' and type(doc['PublicIP']) == 'string' then return doc['PublicIP'] end
  return nil
end

local function drop(subnet, attrs, kind, expires)
  redis.call('HDEL', LEASES, subnet)
  redis.call('ZREM', EXPIRY, subnet)
  local ip = owner_of(attrs)
  if ip and redis.call('HGET', OWNERS, ip) == subnet then redis.call('HDEL', OWNERS, ip) end
  emit(kind, subnet, attrs or '', expires)
end

-- The live lease on subnet: its attributes (false if none) and its expiry
-- score (false for a reservation). A lease past its expiry is reaped here,
-- so no write ever acts on an expired lease, however far behind reaping is.
local function live(subnet)
  local attrs = redis.call('HGET', LEASES, subnet)
  local score = redis.call('ZSCORE', EXPIRY, subnet)
  if score and tonumber(score) <= NOW then
    drop(subnet, attrs, 'expired', tonumber(score))
    return false, false
  end
  return attrs, score
end

-- The subnet leased to ip, if the owners index says so and the lease agrees.
local function held_by(ip)
  local subnet = redis.call('HGET', OWNERS, ip)
  if not subnet then return nil end
  local attrs = live(subnet)
  if owner_of(attrs) == ip then return subnet end
  return nil
end

-- Expired leases are removed here, inside the same atomic step as whatever
-- write follows, and each leaves an "expired" event in the stream. Redis key
-- expiry is not used: its notifications are fire-and-forget.
local function reap(limit)
  local due
  if limit > 0 then
    due = redis.call('ZRANGEBYSCORE', EXPIRY, '-inf', NOW, 'WITHSCORES', 'LIMIT', 0, limit)
  else
    due = redis.call('ZRANGEBYSCORE', EXPIRY, '-inf', NOW, 'WITHSCORES')
  end
  for i = 1, #due, 2 do
    drop(due[i], redis.call('HGET', LEASES, due[i]), 'expired', tonumber(due[i + 1]))
  end
  return #due / 2
end
`;

function script(name: string, body: string): LuaScript {
  const lua = `${PRELUDE}\n${body}`;
  return { name, lua, sha: createHash('sha1').update(lua).digest('hex') };
}

/** Reaps everything due, then returns {now, seq, lastStreamId, HGETALL leases, ZRANGE expiry WITHSCORES}. */
export const SNAPSHOT = script(
  'snapshot',
  `
reap(0)
local last = redis.call('XREVRANGE', EVENTS, '+', '-', 'COUNT', 1)
local last_id = '0-0'
if #last > 0 then last_id = last[1][1] end
return {NOW, redis.call('GET', SEQ) or '0', last_id, redis.call('HGETALL', LEASES), redis.call('ZRANGE', EXPIRY, 0, -1, 'WITHSCORES')}
`,
);

/**
 * ARGV 3 public IP, 4 attributes, 5 TTL ms, 6.. candidate subnets in order of preference.
 * Takes the first candidate that is free. Returns {now, 'ok', subnet, expiry},
 * {now, 'taken'} when every candidate is held, or {now, 'ip-held', subnet} when
 * the public IP already holds a lease (the caller should reuse that one).
 */
export const CREATE = script(
  'create',
  `
reap(REAP_LIMIT)
local ip, attrs, ttl = ARGV[3], ARGV[4], tonumber(ARGV[5])
local held = held_by(ip)
if held then return {NOW, 'ip-held', held} end
for i = 6, #ARGV do
  local subnet = ARGV[i]
  if not live(subnet) then
    local expires = NOW + ttl
    redis.call('HSET', LEASES, subnet, attrs)
    redis.call('ZADD', EXPIRY, expires, subnet)
    redis.call('HSET', OWNERS, ip, subnet)
    emit('added', subnet, attrs, expires)
    return {NOW, 'ok', subnet, expires}
  end
end
return {NOW, 'taken'}
`,
);

/**
 * ARGV 3 subnet, 4 public IP, 5 attributes, 6 TTL ms.
 * Renews (and updates the attributes of) a lease held by the public IP. A
 * reservation keeps no expiry. Emits "renewed", or "added" when the
 * attributes changed; nothing for an unchanged reservation.
 * Returns {now, 'ok', subnet, expiry or ''}, {now, 'missing'} or {now, 'taken', owner}.
 */
export const CLAIM = script(
  'claim',
  `
reap(REAP_LIMIT)
local subnet, ip, attrs, ttl = ARGV[3], ARGV[4], ARGV[5], tonumber(ARGV[6])
local current, score = live(subnet)
if not current then return {NOW, 'missing'} end
local owner = owner_of(current)
-- Attributes overwritten with garbage: the owners index decides, and the write below repairs them.
if owner ~= ip and not (owner == nil and redis.call('HGET', OWNERS, ip) == subnet) then
  return {NOW, 'taken', owner or ''}
end
local expires = ''
if score then
  expires = NOW + ttl
  redis.call('ZADD', EXPIRY, expires, subnet)
end
local kind = 'renewed'
if attrs ~= current then
  redis.call('HSET', LEASES, subnet, attrs)
  kind = 'added'
end
redis.call('HSET', OWNERS, ip, subnet)
if score or kind == 'added' then emit(kind, subnet, attrs, expires) end
return {NOW, 'ok', subnet, int(expires)}
`,
);

/**
 * ARGV 3 subnet, 4 public IP or '' (any owner), 5 'any' or 'reservation'.
 * Deletes the lease and emits "removed". Returns {now, 'ok'}, {now, 'missing'},
 * {now, 'taken', owner} or {now, 'not-reserved'}.
 */
export const REMOVE = script(
  'remove',
  `
reap(REAP_LIMIT)
local subnet, ip, mode = ARGV[3], ARGV[4], ARGV[5]
local current, score = live(subnet)
if not current then return {NOW, 'missing'} end
if ip ~= '' and owner_of(current) ~= ip then return {NOW, 'taken', owner_of(current) or ''} end
if mode == 'reservation' and score then return {NOW, 'not-reserved'} end
drop(subnet, current, 'removed', tonumber(score) or '')
return {NOW, 'ok'}
`,
);

/**
 * ARGV 3 subnet, 4 public IP, 5 attributes for a new reservation.
 * Makes the subnet a reservation (no expiry) for the public IP: creates it, or
 * converts the IP's own lease on it. Returns {now, 'ok', 'created'|'converted'|'unchanged', attributes},
 * {now, 'taken', owner} or {now, 'ip-held', subnet}.
 */
export const RESERVE = script(
  'reserve',
  `
reap(REAP_LIMIT)
local subnet, ip, attrs = ARGV[3], ARGV[4], ARGV[5]
local current, score = live(subnet)
if current then
  local owner = owner_of(current)
  if owner ~= ip then return {NOW, 'taken', owner or ''} end
  if not score then return {NOW, 'ok', 'unchanged', current} end
  redis.call('ZREM', EXPIRY, subnet)
  redis.call('HSET', OWNERS, ip, subnet)
  emit('added', subnet, current, '')
  return {NOW, 'ok', 'converted', current}
end
local held = held_by(ip)
if held then return {NOW, 'ip-held', held} end
redis.call('HSET', LEASES, subnet, attrs)
redis.call('HSET', OWNERS, ip, subnet)
emit('added', subnet, attrs, '')
return {NOW, 'ok', 'created', attrs}
`,
);

/** Removes expired leases (up to the reap limit). Returns {now, count}. */
export const REAP = script(
  'reap',
  `
return {NOW, reap(REAP_LIMIT)}
`,
);
