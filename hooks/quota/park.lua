-- KEYS: the park key. ARGV: caller_now, use_server_clock, until (caller's clock, or 'inf'),
-- reason. Stored in the clock acquire compares with. A park only ever lengthens.
local now = clock(ARGV[1], ARGV[2])
local untilv = num(ARGV[3])
if untilv ~= math.huge then untilv = untilv + (now - tonumber(ARGV[1])) end
local v = redis.call('GET', KEYS[1])
if v then
  local sep = string.find(v, '|', 1, true)
  if num(string.sub(v, 1, sep - 1)) >= untilv then return 0 end
end
local ttl = 10 * 365 * 86400
if untilv ~= math.huge then ttl = math.max(1, math.ceil(untilv - now)) end
redis.call('SET', KEYS[1], fmt(untilv) .. '|' .. ARGV[4], 'EX', ttl)
return 1
