-- KEYS: one hash per change; ARGV: notice channel, bucket, then slot, delta, ttl for each.
-- A slot never goes below zero. Units given back are announced on the channel, so processes
-- whose index sleeps this bucket look at it again (redis.py `releases`).
local released = false
for i = 1, #KEYS do
  local b = 2 + (i - 1) * 3
  local delta = tonumber(ARGV[b + 2])
  local v = redis.call('HINCRBY', KEYS[i], ARGV[b + 1], delta)
  if v < 0 then redis.call('HSET', KEYS[i], ARGV[b + 1], 0) end
  redis.call('EXPIRE', KEYS[i], tonumber(ARGV[b + 3]))
  if delta < 0 then released = true end
end
if released then redis.call('PUBLISH', ARGV[1], 'b:' .. ARGV[2]) end
return #KEYS
