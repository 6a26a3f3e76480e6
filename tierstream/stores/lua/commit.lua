#!lua
-- The commit script of RedisStore and AsyncRedisStore (tierstream/stores/redis.py):
-- one Batch (tierstream/stores/commit_recipe.py builds it) written to one shard,
-- atomically. tierstream.stores.redis.commit_request lays KEYS and ARGV out as below
-- (the one description of that layout; docs/state-layout.md points here).
--
-- KEYS: meta, due, outbox, stats, then one state key per state, then one history key per
-- customer with history entries.
-- ARGV: epoch, commit number, outbox position to trim to ('' = none), then counted sections:
--   n, n x (topic, offset the batch was built on ('' = none stored), new offset) |
--   n, n states (values in KEYS order) | n, n changes |
--   n, n x (score, customer id) to schedule | n, n customer ids to unschedule |
--   cap, n, n x (m, m history entries oldest first) | n, n x (tally name, increment) |
--   n, n x (customer id, digest, marker, audit record, m extra keys) erasures |
--   n, n x (m, m customer ids leaving, k, k customer ids joining) audience memberships
-- Erasures add KEYS after the history keys: the shard's erased hash and audit list, then
-- per erasure its state key, history key and m extra keys (tierstream.erasure). Then one
-- KEY per audience whose membership changes (its sorted set, see members_key), last.
-- Returns {code, commit number or current epoch, outbox end (entries ever queued)}.
--
-- All or nothing: the "#!lua" line declares a script that writes, so Redis refuses it
-- whole, before it runs, on a read-only replica (READONLY) or over maxmemory (OOM); the
-- script then checks every argument and the stored offsets before its first write, and
-- records the commit number last. A script that stops half-way would otherwise leave a
-- partial commit that a retry takes for an applied one.
local meta, due, outbox, stats = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local epoch = tonumber(redis.call('HGET', meta, 'epoch') or '0')
if epoch ~= tonumber(ARGV[1]) then
  return {-1, epoch, 0}
end
local function outbox_end()
  return tonumber(redis.call('HGET', meta, 'head') or '0') + redis.call('LLEN', outbox)
end
local number = tonumber(ARGV[2])
local last = tonumber(redis.call('HGET', meta, 'seq') or '0')
if number == nil then
  return {-4, 2, 0}
elseif number == last then
  return {1, last, outbox_end()}
elseif number < last then
  return {-2, last, 0}
end

-- Validate before writing: every count is a number and the sections end at #ARGV.
local function count(at)
  local n = tonumber(ARGV[at])
  if n == nil or n < 0 then
    error('malformed commit: argument ' .. at .. ' is not a count')
  end
  return n
end
local erase_at, erase_key_at, members_at, members_key_at = 0, 0, 0, 0
local ok, problem = pcall(function()
  local i = 4
  local n = count(i)
  for k = 0, n - 1 do
    if tonumber(ARGV[i + 3 + 3 * k]) == nil then error('malformed commit: offset') end
  end
  i = i + 1 + 3 * n
  local states = count(i)
  i = i + 1 + states
  if #KEYS < 4 + states then error('malformed commit: state keys') end
  i = i + 1 + count(i)
  n = count(i)
  for k = 0, n - 1 do
    if tonumber(ARGV[i + 1 + 2 * k]) == nil then error('malformed commit: score') end
  end
  i = i + 1 + 2 * n
  i = i + 1 + count(i)
  if tonumber(ARGV[i]) == nil then error('malformed commit: history cap') end
  n = count(i + 1)
  local keys = 4 + states + n
  erase_key_at = keys + 1
  i = i + 2
  for _ = 1, n do
    i = i + 1 + count(i)
  end
  n = count(i)
  for k = 0, n - 1 do
    if tonumber(ARGV[i + 2 + 2 * k]) == nil then error('malformed commit: tally') end
  end
  i = i + 1 + 2 * n
  erase_at = i
  n = count(i)
  if n > 0 then keys = keys + 2 end
  for k = 0, n - 1 do
    local m = count(i + 5 + 5 * k)
    keys = keys + 2 + m
  end
  i = i + 1 + 5 * n
  members_at = i
  members_key_at = keys + 1
  n = count(i)
  keys = keys + n
  i = i + 1
  for _ = 1, n do
    i = i + 1 + count(i)
    i = i + 1 + count(i)
  end
  if #KEYS ~= keys then error('malformed commit: ' .. #KEYS .. ' keys, expected ' .. keys) end
  if i ~= #ARGV + 1 then
    error('malformed commit: ' .. #ARGV .. ' arguments, expected ' .. (i - 1))
  end
end)
if not ok then
  return {-4, tostring(problem), 0}
end
-- The applied offsets must be the ones the batch was built on (see Batch.expected).
local n = tonumber(ARGV[4])
for k = 0, n - 1 do
  local at = 5 + 3 * k
  local stored = redis.call('HGET', meta, 'o:' .. ARGV[at])
  if (stored or '') ~= ARGV[at + 1] then
    return {-3, ARGV[at], 0}
  end
end

-- unpack() is bounded by Lua's C stack: variadic commands go in slices of 1000.
local function slices(command, key, first, total)
  local done = 0
  while done < total do
    local size = math.min(total - done, 1000)
    redis.call(command, key, unpack(ARGV, first + done, first + done + size - 1))
    done = done + size
  end
end

-- Trim what was published (an absolute position, so a repeat drops nothing more).
if ARGV[3] ~= '' then
  local head = tonumber(redis.call('HGET', meta, 'head') or '0')
  local drop = math.min(tonumber(ARGV[3]) - head, redis.call('LLEN', outbox))
  if drop > 0 then
    redis.call('LTRIM', outbox, drop, -1)
    redis.call('HSET', meta, 'head', head + drop)
  end
end
local i = 5
for _ = 1, n do
  redis.call('HSET', meta, 'o:' .. ARGV[i], ARGV[i + 2])
  i = i + 3
end
local states = tonumber(ARGV[i])
-- Erasures first: a state of the same id in this batch is a fresh one, begun after it.
local erasures = tonumber(ARGV[erase_at])
if erasures > 0 then
  local at_key = erase_key_at
  local erased, audit = KEYS[at_key], KEYS[at_key + 1]
  at_key = at_key + 2
  for k = 0, erasures - 1 do
    local at = erase_at + 1 + 5 * k
    local m = tonumber(ARGV[at + 4])
    for j = 0, 1 + m do
      redis.call('DEL', KEYS[at_key + j])
    end
    at_key = at_key + 2 + m
    redis.call('ZREM', due, ARGV[at])
    redis.call('HSET', erased, ARGV[at + 1], ARGV[at + 2])
    redis.call('RPUSH', audit, ARGV[at + 3])
  end
end
i = i + 1
for k = 1, states do
  redis.call('SET', KEYS[4 + k], ARGV[i])
  i = i + 1
end
n = tonumber(ARGV[i])
slices('RPUSH', outbox, i + 1, n)
i = i + 1 + n
n = tonumber(ARGV[i])
slices('ZADD', due, i + 1, 2 * n)
i = i + 1 + 2 * n
n = tonumber(ARGV[i])
slices('ZREM', due, i + 1, n)
i = i + 1 + n
-- LPUSH of the entries oldest first leaves the newest at the head.
local cap = tonumber(ARGV[i])
n = tonumber(ARGV[i + 1])
i = i + 2
for h = 1, n do
  local key, m = KEYS[4 + states + h], tonumber(ARGV[i])
  slices('LPUSH', key, i + 1, m)
  redis.call('LTRIM', key, 0, cap - 1)
  i = i + 1 + m
end
n = tonumber(ARGV[i])
i = i + 1
for _ = 1, n do
  redis.call('HINCRBY', stats, ARGV[i], ARGV[i + 1])
  i = i + 2
end
-- Audience memberships: sorted sets of score 0, so members page in byte order (BYLEX).
n = tonumber(ARGV[members_at])
i = members_at + 1
for k = 0, n - 1 do
  local key = KEYS[members_key_at + k]
  local m = tonumber(ARGV[i])
  slices('ZREM', key, i + 1, m)
  i = i + 1 + m
  m = tonumber(ARGV[i])
  for j = 1, m do
    redis.call('ZADD', key, 0, ARGV[i + j])
  end
  i = i + 1 + m
end
redis.call('HSET', meta, 'seq', ARGV[2])
return {0, number, outbox_end()}
