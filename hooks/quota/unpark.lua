-- KEYS: the park key. ARGV: notice channel, scope. A lifted park is announced on the channel.
local n = redis.call('DEL', KEYS[1])
if n > 0 then redis.call('PUBLISH', ARGV[1], 's:' .. ARGV[2]) end
return n
