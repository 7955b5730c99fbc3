-- KEYS: one hash per change; ARGV: slot, delta, ttl for each. A slot never goes below zero.
for i = 1, #KEYS do
  local b = (i - 1) * 3
  local v = redis.call('HINCRBY', KEYS[i], ARGV[b + 1], tonumber(ARGV[b + 2]))
  if v < 0 then redis.call('HSET', KEYS[i], ARGV[b + 1], 0) end
  redis.call('EXPIRE', KEYS[i], tonumber(ARGV[b + 3]))
end
return #KEYS
