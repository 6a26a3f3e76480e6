#!lua
-- The outbox trim of RedisStore.ack and AsyncRedisStore.trim (tierstream/stores/redis.py).
--
-- KEYS: meta, outbox. ARGV: epoch, absolute position to trim to ('' = head + count), count.
-- The head (entries ever trimmed) makes a repeated ack harmless: the position is reached.
local epoch = tonumber(redis.call('HGET', KEYS[1], 'epoch') or '0')
if epoch ~= tonumber(ARGV[1]) then
  return {-1, epoch}
end
local head = tonumber(redis.call('HGET', KEYS[1], 'head') or '0')
local target = head + tonumber(ARGV[3])
if ARGV[2] ~= '' then
  target = tonumber(ARGV[2])
end
local drop = math.min(target - head, redis.call('LLEN', KEYS[2]))
if drop <= 0 then
  return {1, head}
end
redis.call('LTRIM', KEYS[2], drop, -1)
head = head + drop
redis.call('HSET', KEYS[1], 'head', head)
return {0, head}
