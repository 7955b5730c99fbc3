-- KEYS: one window's hash. ARGV: caller_now, use_server_clock, 10 window values (window.lua),
-- at_least. Raise the window's live count to at least `at_least`, never lower it, in one step:
-- two processes reading a provider's header at once cannot both add. Returns the units added.
local now = clock(ARGV[1], ARGV[2])
local w = window(2, now)
if not w then return clock_error() end
local used = live(KEYS[1], w)
local missing = tonumber(ARGV[13]) - used
if missing <= 0 then return 0 end
redis.call('HINCRBY', KEYS[1], string.format('%d', w.slot), missing)
redis.call('EXPIRE', KEYS[1], w.ttl)
return missing
