// The Lua scripts: every write to the lease keys happens inside one of them,
// so each write is atomic with its change event, its push to watchers, the
// allocation bitmap and the reaping of expired leases that precedes it.
//
// KEYS (all under one hash tag, so the scripts also run on Redis Cluster):
//   1 {p}:leases       hash    subnet -> owner attributes (JSON)
//   2 {p}:expiry       zset    subnet -> expiry, ms by the Redis clock (absent: reservation)
//   3 {p}:owners       hash    owner address -> subnet (an index; trusted only when the lease
//                              agrees). The owner's address is its PublicIP, or PublicIPv6 when
//                              it has no PublicIP (lease.ts's ownerAddress)
//   4 {p}:events       stream  change feed: n (sequence), t (type), s (subnet), l (attributes), e (expiry)
//   5 {p}:seq          string  last sequence number written to the stream
//   6 {p}:epoch        string  random ID of this incarnation of the data; a store that lost its
//                              data has none, or a new one, so watchers can tell loss from change
//   7 {p}:allocated    string  bitmap of the allocatable range: bit i set = subnet i is held
//   8 {p}:allocatable  string  the range the bitmap describes: "first size count prefixLength"
//                              for IPv4 subnets (first as a number), "first count prefixLength"
//                              for IPv6 ones (an IPv6-only cluster; first as canonical text)
//   9 {p}:revoked      hash    subnet -> owner address whose lease an operator revoked (cleared when
//                              the subnet is taken again), so a daemon never re-asserts a revoked lease
//  10 {p}:settling     string  present (with a TTL) while running nodes put back what the store
//                              lost: no new subnet is handed out meanwhile, so none is given away
//                              before its holder has re-asserted it
//  11 {p}:config       string  the network config (net-conf.json as written)
// ARGV: 1 stream cap (XADD MAXLEN ~), 2 reap limit (0: all), 3 an epoch for a store that has
// none (fresh on every call), 4 the change channel (PUBLISH), then per script.
//
// Every script returns {now, status, ...}: now is the Redis clock in ms, the
// clock that expiries are measured by.
//
// Each change that peers use ("added", "removed", "expired") is written to the
// stream and published on the channel as one line:
//   <epoch> <n> <type> <subnet> <expiry or -> <stream ID> <attributes JSON>
// A renewal that changes nothing but the expiry writes neither: nobody else
// needs to wake for it.

import { createHash } from 'node:crypto';

/**
 * How long after a node put back a lease (or the network config) that the
 * store had lost, no new subnet is handed out. Nodes re-assert within a few
 * seconds of noticing the loss, and notice it at their reconnection (at most
 * about 12 s apart with the watch's backoff); each re-assertion extends it.
 */
export const SETTLE_MS = 15_000;

export interface LuaScript {
  readonly name: string;
  readonly lua: string;
  readonly sha: string;
}

const PRELUDE = `
local LEASES, EXPIRY, OWNERS, EVENTS, SEQ, EPOCH, ALLOCATED, ALLOCATABLE, REVOKED, SETTLING, CONFIG =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8], KEYS[9], KEYS[10], KEYS[11]
local MAXLEN = ARGV[1]
local REAP_LIMIT = tonumber(ARGV[2])
local EPOCH_IF_NONE = ARGV[3]
local CHANNEL = ARGV[4]
local clock = redis.call('TIME')
local NOW = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)

local function int(x)
  if x == '' or not x then return '' end
  return string.format('%d', x)
end

local function epoch()
  local e = redis.call('GET', EPOCH)
  if e then return e end
  redis.call('SET', EPOCH, EPOCH_IF_NONE)
  return EPOCH_IF_NONE
end

local function emit(kind, subnet, attrs, expires)
  local e = epoch()
  local n = redis.call('INCR', SEQ)
  local ex = int(expires)
  local id = redis.call('XADD', EVENTS, 'MAXLEN', '~', MAXLEN, '*', 'n', n, 't', kind, 's', subnet, 'l', attrs, 'e', ex)
  if ex == '' then ex = '-' end
  redis.call('PUBLISH', CHANNEL, e .. ' ' .. string.format('%d', n) .. ' ' .. kind .. ' ' .. subnet .. ' ' .. ex .. ' ' .. id .. ' ' .. attrs)
end

-- The owner's address inside stored attributes (PublicIP, or PublicIPv6 on a
-- node without one), or nil if they are absent or corrupt.
local function owner_of(attrs)
  if not attrs then return nil end
  local ok, doc = pcall(cjson.decode, attrs)
  if not ok or type(doc) ~= 'table' then return nil end
  if type(doc['PublicIP']) == 'string' then return doc['PublicIP'] end
  if type(doc['PublicIPv6']) == 'string' then return doc['PublicIPv6'] end
  return nil
end

-- IPv6 addresses are eight 16-bit groups, most significant first: Lua's
-- numbers are doubles, exact only up to 2^53, so no arithmetic here ever
-- holds more than a group and a carry, or an index below the range's count.

-- Appends the ':'-separated groups of text (1 to 4 hex digits each) to groups; false on anything else.
local function scan_groups(text, groups)
  if text == '' then return true end
  for group in string.gmatch(text .. ':', '([^:]*):') do
    if not string.match(group, '^%x%x?%x?%x?$') then return false end
    groups[#groups + 1] = tonumber(group, 16)
  end
  return true
end

-- Any RFC 4291 text without an embedded dotted quad (the store writes none), or nil.
local function parse_ipv6(text)
  local groups = {}
  local gap = string.find(text, '::', 1, true)
  if not gap then
    if not scan_groups(text, groups) or #groups ~= 8 then return nil end
    return groups
  end
  local tail = {}
  if not scan_groups(string.sub(text, 1, gap - 1), groups) or not scan_groups(string.sub(text, gap + 2), tail) then return nil end
  if #groups + #tail > 7 then return nil end
  for _ = 1, 8 - #groups - #tail do groups[#groups + 1] = 0 end
  for _, group in ipairs(tail) do groups[#groups + 1] = group end
  return groups
end

-- RFC 5952, as formatIPv6 in daemon/net/ipv6.ts writes it: lower-case hex
-- without leading zeros, the longest run of two or more zero groups (the
-- first, on a tie) as '::'. formatIPv6's dotted quad for IPv4-mapped
-- addresses never applies: the network config refuses ::/8, which holds them.
local function format_ipv6(groups)
  local run_start, run_length = 0, 1
  local g = 1
  while g <= 8 do
    if groups[g] ~= 0 then
      g = g + 1
    else
      local start = g
      while g <= 8 and groups[g] == 0 do g = g + 1 end
      if g - start > run_length then run_start, run_length = start, g - start end
    end
  end
  local hex = {}
  for i = 1, 8 do hex[i] = string.format('%x', groups[i]) end
  if run_start == 0 then return table.concat(hex, ':') end
  return table.concat(hex, ':', 1, run_start - 1) .. '::' .. table.concat(hex, ':', run_start + run_length, 8)
end

-- a - b, or nil if b is the larger.
local function minus_ipv6(a, b)
  local difference, borrow = {}, 0
  for g = 8, 1, -1 do
    local value = a[g] - b[g] - borrow
    borrow = 0
    if value < 0 then value, borrow = value + 65536, 1 end
    difference[g] = value
  end
  if borrow == 1 then return nil end
  return difference
end

-- address + n * 2^shift, for a bit index n (below 2^24), so n * 2^15 stays exact.
local function plus_shifted_ipv6(address, n, shift)
  local sum, carry = {}, 0
  for g = 8, 1, -1 do
    local low = (8 - g) * 16 -- the bit this group starts at, counted from the least significant
    local piece = 0
    if shift >= low then
      if shift - low < 16 then piece = (n * 2 ^ (shift - low)) % 65536 end
    else
      piece = math.floor(n / 2 ^ (low - shift)) % 65536
    end
    local value = address[g] + piece + carry
    sum[g] = value % 65536
    carry = math.floor(value / 65536)
  end
  return sum
end

-- value / 2^shift, or nil if any of the low shift bits is set or the quotient is limit or more.
local function shifted_down_ipv6(value, shift, limit)
  local quotient = 0
  for g = 1, 8 do
    local below = shift - (8 - g) * 16 -- how many of this group's bits lie below the shift
    local group = value[g]
    if below >= 16 then
      if group ~= 0 then return nil end
    else
      if below > 0 then
        if group % 2 ^ below ~= 0 then return nil end
        quotient = quotient * 2 ^ (16 - below) + group / 2 ^ below
      else
        quotient = quotient * 65536 + group
      end
      -- The quotient only grows, so checking at each step keeps it exact (below limit * 2^16).
      if quotient >= limit then return nil end
    end
  end
  return quotient
end

-- The allocation bitmap. The range it describes is stored beside it, so a
-- change of the network config is noticed and the bitmap rebuilt. An IPv6
-- range's first subnet may lie anywhere in its network, far more than 2^53
-- subnets past the network address, so a subnet's bit is counted from first,
-- never from the network.
local function parse_range(text)
  if not text then return nil end
  local first, size, count, len = string.match(text, '^(%d+) (%d+) (%d+) (%d+)$')
  if first then return {family = 4, first = tonumber(first), size = tonumber(size), count = tonumber(count), len = len} end
  first, count, len = string.match(text, '^([%x:]+) (%d+) (%d+)$')
  if not first then return nil end
  local groups = parse_ipv6(first)
  if not groups or tonumber(len) > 128 then return nil end
  return {family = 6, first = groups, count = tonumber(count), len = len, shift = 128 - tonumber(len)}
end

local function address_of(subnet)
  local a, b, c, d, len = string.match(subnet, '^(%d+)%.(%d+)%.(%d+)%.(%d+)/(%d+)$')
  if not a then return nil end
  return ((tonumber(a) * 256 + tonumber(b)) * 256 + tonumber(c)) * 256 + tonumber(d), len
end

-- The subnet of bit i in the range, as canonical text.
local function format_subnet(range, i)
  if range.family == 6 then return format_ipv6(plus_shifted_ipv6(range.first, i, range.shift)) .. '/' .. range.len end
  local address = range.first + i * range.size
  local d = address % 256
  address = (address - d) / 256
  local c = address % 256
  address = (address - c) / 256
  local b = address % 256
  local a = (address - b) / 256
  return string.format('%d.%d.%d.%d/%s', a, b, c, d, range.len)
end

-- The subnet's bit in the range, or nil if it lies outside it.
local function index_of(subnet, range)
  if range.family == 6 then
    local text, len = string.match(subnet, '^([^/]+)/(%d+)$')
    if not text or len ~= range.len then return nil end
    local address = parse_ipv6(text)
    if not address then return nil end
    local offset = minus_ipv6(address, range.first)
    if not offset then return nil end
    return shifted_down_ipv6(offset, range.shift, range.count)
  end
  local address, len = address_of(subnet)
  if not address or len ~= range.len or address < range.first then return nil end
  local offset = address - range.first
  if offset % range.size ~= 0 then return nil end
  local i = offset / range.size
  if i >= range.count then return nil end
  return i
end

local function mark(subnet, bit)
  local range = parse_range(redis.call('GET', ALLOCATABLE))
  if not range then return end
  local i = index_of(subnet, range)
  if i then redis.call('SETBIT', ALLOCATED, i, bit) end
end

local function drop(subnet, attrs, kind, expires)
  redis.call('HDEL', LEASES, subnet)
  redis.call('ZREM', EXPIRY, subnet)
  local ip = owner_of(attrs)
  if ip and redis.call('HGET', OWNERS, ip) == subnet then redis.call('HDEL', OWNERS, ip) end
  mark(subnet, 0)
  emit(kind, subnet, attrs or '', expires)
  return ip
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
-- write follows, and each leaves an "expired" event. Redis key expiry is not
-- used: its notifications are fire-and-forget.
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

local SETTLE = ${SETTLE_MS}

-- A lease (expires > 0) or a reservation (expires == '') for ip on subnet.
local function put(subnet, ip, attrs, expires)
  redis.call('HSET', LEASES, subnet, attrs)
  if expires ~= '' then redis.call('ZADD', EXPIRY, expires, subnet) end
  redis.call('HSET', OWNERS, ip, subnet)
  redis.call('HDEL', REVOKED, subnet)
  mark(subnet, 1)
  emit('added', subnet, attrs, expires)
end
`;

function script(name: string, body: string): LuaScript {
  const lua = `${PRELUDE}\n${body}`;
  return { name, lua, sha: createHash('sha1').update(lua).digest('hex') };
}

/**
 * ARGV 5 owner address, 6 attributes, 7 TTL ms, 8 previous subnet ('' for none),
 * 9 the allocatable range, 10 where to start looking in it (an index, chosen
 * at random by the caller). The range is "first size count prefixLength" for
 * IPv4 subnets (first: the address of SubnetMin as a number, size: addresses
 * per subnet), or "first count prefixLength" for IPv6 ones (first: the first
 * subnet's network address as canonical text); a ':' tells them apart. Bit i
 * of the bitmap is the subnet first + i subnets.
 *
 * flannel's order, inside one atomic step: the lease this owner already holds
 * is reported (the caller checks it still fits the config, then claims it);
 * else the previous subnet if nobody holds it; else the first free subnet of
 * the range from the start index on, wrapping around, found in the bitmap
 * (rebuilt from the leases when the range changed). Nothing is listed.
 * Returns {now, 'ok', subnet, expiry, 'previous'|'new', leases},
 * {now, 'ip-held', subnet, expiry or ''} or {now, 'full', leases}.
 */
export const CREATE = script(
  'create',
  `
reap(REAP_LIMIT)
local ip, attrs, ttl, previous, range_text, start = ARGV[5], ARGV[6], tonumber(ARGV[7]), ARGV[8], ARGV[9], tonumber(ARGV[10])
local held = held_by(ip)
if held then return {NOW, 'ip-held', held, int(redis.call('ZSCORE', EXPIRY, held))} end
local expires = NOW + ttl
if previous ~= '' and not live(previous) then
  put(previous, ip, attrs, expires)
  return {NOW, 'ok', previous, expires, 'previous', redis.call('HLEN', LEASES)}
end

local settling = redis.call('PTTL', SETTLING)
if settling > 0 then return {NOW, 'settling', settling} end

local range = parse_range(range_text)
local function rebuild()
  redis.call('DEL', ALLOCATED)
  -- Bits past the range in its last byte are set, so BITPOS never offers them.
  redis.call('SETBIT', ALLOCATED, range.count - 1, 0)
  for i = range.count, math.floor((range.count - 1) / 8) * 8 + 7 do redis.call('SETBIT', ALLOCATED, i, 1) end
  for _, subnet in ipairs(redis.call('HKEYS', LEASES)) do
    local i = index_of(subnet, range)
    if i then redis.call('SETBIT', ALLOCATED, i, 1) end
  end
  redis.call('SET', ALLOCATABLE, range_text)
end
if redis.call('GET', ALLOCATABLE) ~= range_text then rebuild() end

local last_byte = math.floor((range.count - 1) / 8)
local from = math.floor(start / 8)
local function free_bit()
  local bit = redis.call('BITPOS', ALLOCATED, 0, from, last_byte)
  if bit < 0 and from > 0 then bit = redis.call('BITPOS', ALLOCATED, 0, 0, last_byte) end
  if bit < 0 then return nil end
  return bit
end
local rebuilt = false
while true do
  local bit = free_bit()
  if not bit then
    -- Full, unless the bitmap drifted from the leases (a hand edit): count, and rebuild once.
    if rebuilt or redis.call('HLEN', LEASES) >= range.count then return {NOW, 'full', redis.call('HLEN', LEASES)} end
    rebuild()
    rebuilt = true
  else
    local subnet = format_subnet(range, bit)
    if not live(subnet) then
      put(subnet, ip, attrs, expires)
      return {NOW, 'ok', subnet, expires, 'new', redis.call('HLEN', LEASES)}
    end
    -- Held, but the bitmap did not say so: record it and look further.
    redis.call('SETBIT', ALLOCATED, bit, 1)
  end
end
`,
);

/**
 * ARGV 5 subnet, 6 owner address, 7 attributes, 8 TTL ms, 9 'lease' or 'reservation'
 * (what to put back if it is gone).
 * Renews a lease held by the owner (a reservation keeps no expiry), and
 * updates its attributes if they changed ("added"); a plain renewal writes no
 * event. A lease that is gone without having been revoked (the store lost it,
 * or it expired) is put back as it was ("added"): this is how a running node
 * re-asserts its lease after the store lost its data.
 * Returns {now, 'ok', 'renewed'|'updated'|'restored', expiry or '', leases},
 * {now, 'revoked'}, {now, 'taken', owner} or {now, 'ip-held', subnet}.
 */
export const CLAIM = script(
  'claim',
  `
reap(REAP_LIMIT)
local subnet, ip, attrs, ttl, kind = ARGV[5], ARGV[6], ARGV[7], tonumber(ARGV[8]), ARGV[9]
local current, score = live(subnet)
if current then
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
  local change = 'renewed'
  if attrs ~= current then
    redis.call('HSET', LEASES, subnet, attrs)
    redis.call('HSET', OWNERS, ip, subnet)
    emit('added', subnet, attrs, expires)
    change = 'updated'
  end
  return {NOW, 'ok', change, int(expires), redis.call('HLEN', LEASES)}
end
if redis.call('HGET', REVOKED, subnet) == ip then return {NOW, 'revoked'} end
local held = held_by(ip)
if held then return {NOW, 'ip-held', held} end
local expires = ''
if kind == 'lease' then expires = NOW + ttl end
put(subnet, ip, attrs, expires)
redis.call('SET', SETTLING, '1', 'PX', SETTLE)
return {NOW, 'ok', 'restored', int(expires), redis.call('HLEN', LEASES)}
`,
);

/**
 * ARGV 5 subnet, 6 owner address or '' (any owner), 7 'any' or 'reservation',
 * 8 '1' to record the revocation (an operator's), '0' not to (a node
 * replacing its own lease). Deletes the lease and emits "removed".
 * Returns {now, 'ok'}, {now, 'missing'}, {now, 'taken', owner} or {now, 'not-reserved'}.
 */
export const REMOVE = script(
  'remove',
  `
reap(REAP_LIMIT)
local subnet, ip, mode, record = ARGV[5], ARGV[6], ARGV[7], ARGV[8]
local current, score = live(subnet)
if not current then return {NOW, 'missing'} end
if ip ~= '' and owner_of(current) ~= ip then return {NOW, 'taken', owner_of(current) or ''} end
if mode == 'reservation' and score then return {NOW, 'not-reserved'} end
local owner = drop(subnet, current, 'removed', tonumber(score) or '')
if record == '1' and owner then redis.call('HSET', REVOKED, subnet, owner) end
return {NOW, 'ok'}
`,
);

/**
 * ARGV 5 subnet, 6 owner address, 7 attributes for a new reservation, 8 the node
 * name as a JSON string, or '' to keep the stored one.
 * Makes the subnet a reservation (no expiry) for the owner, naming the
 * node: creates it, converts the owner's own lease on it, or renames the node of
 * its reservation ("added" for each). The name is replaced inside the stored
 * text, which encodeAttrs writes in a fixed order, so the text stays the one
 * the node itself writes and its next renewal changes nothing.
 * Returns {now, 'ok', 'created'|'converted'|'updated'|'unchanged', attributes},
 * {now, 'taken', the holder's attributes, its expiry or ''}, {now, 'ip-held', subnet}
 * or {now, 'unnamed'} (the stored text is not in encodeAttrs' form, so the name cannot be replaced).
 */
export const RESERVE = script(
  'reserve',
  `
-- attrs with its NodeName string replaced by name (JSON text), or nil if attrs is not in encodeAttrs' form.
local function with_node(attrs, name)
  local head = string.match(attrs, '^{"PublicIP":"[^"\\\\]*","NodeName":"')
    or string.match(attrs, '^{"PublicIP":"[^"\\\\]*","PublicIPv6":"[^"\\\\]*","NodeName":"')
    or string.match(attrs, '^{"PublicIPv6":"[^"\\\\]*","NodeName":"')
  if not head then return nil end
  local i = #head + 1
  while true do
    local c = string.sub(attrs, i, i)
    if c == '' then return nil end
    if c == '"' then break end
    if c == '\\\\' then i = i + 2 else i = i + 1 end
  end
  return string.sub(head, 1, -2) .. name .. string.sub(attrs, i + 1)
end

reap(REAP_LIMIT)
local subnet, ip, attrs, name = ARGV[5], ARGV[6], ARGV[7], ARGV[8]
local current, score = live(subnet)
if current then
  if owner_of(current) ~= ip then return {NOW, 'taken', current, int(score)} end
  local named = current
  if name ~= '' then
    named = with_node(current, name)
    if not named then return {NOW, 'unnamed'} end
  end
  if not score and named == current then return {NOW, 'ok', 'unchanged', current} end
  local change = 'updated'
  if score then
    redis.call('ZREM', EXPIRY, subnet)
    change = 'converted'
  end
  redis.call('HSET', LEASES, subnet, named)
  redis.call('HSET', OWNERS, ip, subnet)
  emit('added', subnet, named, '')
  return {NOW, 'ok', change, named}
end
local held = held_by(ip)
if held then return {NOW, 'ip-held', held} end
put(subnet, ip, attrs, '')
return {NOW, 'ok', 'created', attrs}
`,
);

/**
 * ARGV 5 the config text the caller decided on ('' for none), 6 the text to
 * store, 7 '1' to refuse while live leases exist (the write changes Network
 * or SubnetLen, unforced), 8 '1' for a dry run (decide, write nothing).
 * The caller compares the configs (the rules and defaults live in config.ts);
 * this step makes that decision hold: it writes only if the stored text is
 * still the one compared, and counts the live leases in the same step, so no
 * lease can appear between the check and the write.
 * Returns {now, 'ok', live leases}, {now, 'refused', live leases} or {now, 'changed'}.
 */
export const SET_CONFIG = script(
  'set-config',
  `
local expected, text, guard, dry = ARGV[5], ARGV[6], ARGV[7], ARGV[8]
if (redis.call('GET', CONFIG) or '') ~= expected then return {NOW, 'changed'} end
local leases = redis.call('HLEN', LEASES) - redis.call('ZCOUNT', EXPIRY, '-inf', NOW)
if guard == '1' and leases > 0 then return {NOW, 'refused', leases} end
if dry ~= '1' then redis.call('SET', CONFIG, text) end
return {NOW, 'ok', leases}
`,
);

/** Removes expired leases (up to the reap limit). Returns {now, count, leases}. */
export const REAP = script(
  'reap',
  `
local count = reap(REAP_LIMIT)
return {NOW, count, redis.call('HLEN', LEASES)}
`,
);

// Read-only scripts: they take the same KEYS and ARGV, so the registry runs
// every script the same way, but they write nothing.

/**
 * Where the data stands: {now, epoch or '', seq, stream ID of the last entry or '0-0'}.
 * One atomic read, so a watcher's position is consistent.
 */
export const POSITION = script(
  'position',
  `
local last = redis.call('XREVRANGE', EVENTS, '+', '-', 'COUNT', 1)
local last_id = '0-0'
if #last > 0 then last_id = last[1][1] end
return {NOW, redis.call('GET', EPOCH) or '', redis.call('GET', SEQ) or '0', last_id}
`,
);

/**
 * ARGV 5 HSCAN cursor, 6 COUNT. One chunk of the leases hash and the expiry
 * of each lease in it: {now, next cursor, {subnet, attributes, ...}, {expiry or false, ...}}.
 * A full listing is a loop of these, so no single reply carries the whole table.
 */
export const LIST_CHUNK = script(
  'list-chunk',
  `
local page = redis.call('HSCAN', LEASES, ARGV[5], 'COUNT', ARGV[6])
local fields = page[2]
local subnets = {}
for i = 1, #fields, 2 do subnets[#subnets + 1] = fields[i] end
local expiries = {}
if #subnets > 0 then expiries = redis.call('ZMSCORE', EXPIRY, unpack(subnets)) end
return {NOW, page[1], fields, expiries}
`,
);

/**
 * KEYS 1 {p}:config, 2 {p}:settling. ARGV 1 the network config a running node uses.
 * Stores it if the store has none (it lost its data), and starts the
 * settling window; returns {'stored'} or {'exists', the stored text}. Never
 * overwrites an operator's config.
 */
export const ENSURE_CONFIG: LuaScript = (() => {
  const lua = `
local current = redis.call('GET', KEYS[1])
if current then return {'exists', current} end
redis.call('SET', KEYS[1], ARGV[1])
redis.call('SET', KEYS[2], '1', 'PX', ${SETTLE_MS})
return {'stored'}
`;
  return { name: 'ensure-config', lua, sha: createHash('sha1').update(lua).digest('hex') };
})();
