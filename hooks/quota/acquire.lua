-- Check every park scope and window of one bucket, and record the request only if all pass.
-- KEYS: park keys (ARGV[3] of them), then one hash per window.
-- ARGV: caller_now, use_server_clock, n_parks, n_windows, then 10 values per window (window.lua).
-- Returns {1, now, slot per window} or {0, wake_at, reason, now}, times in the clock used.
-- Mirrors MemoryBuckets.acquire + plan.decide(); tests run the same cases against both.
local now = clock(ARGV[1], ARGV[2])
local np, nw = tonumber(ARGV[3]), tonumber(ARGV[4])
local parked, why = 0, ''
for i = 1, np do
  local v = redis.call('GET', KEYS[i])
  if v then
    local sep = string.find(v, '|', 1, true)
    local untilv = num(string.sub(v, 1, sep - 1))
    if untilv > now and untilv > parked then parked = untilv; why = string.sub(v, sep + 1) end
  end
end
if parked > now then return {0, fmt(parked), 'parked:' .. why, fmt(now)} end
local wake, reason = 0, ''
local wins = {}
for j = 1, nw do
  local w = window(4 + (j - 1) * 10, now)
  if not w then return clock_error() end
  wins[j] = w
  if w.need > w.limit then return {0, 'inf', 'too_large:' .. w.name, fmt(now)} end
  local used, slots = live(KEYS[np + j], w)
  if used + w.need > w.limit then
    local t = math.huge
    if w.fixed then
      t = w.period_end
    else
      table.sort(slots, function(x, y) return x[1] < y[1] end)
      local freed = 0
      for _, sa in ipairs(slots) do
        freed = freed + sa[2]
        if used - freed + w.need <= w.limit then t = (sa[1] + 1) * w.width + w.len; break end
      end
    end
    if t > wake then wake = t; reason = w.name end
  end
end
if reason ~= '' then return {0, fmt(wake), reason, fmt(now)} end
local out = {1, fmt(now)}
for j = 1, nw do
  local w, key = wins[j], KEYS[np + j]
  local slot = string.format('%d', w.slot)
  redis.call('HINCRBY', key, slot, w.need)
  redis.call('EXPIRE', key, w.ttl)
  out[#out + 1] = slot
end
return out
