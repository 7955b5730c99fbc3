-- Check every park scope and window of one bucket, and record the request only if all pass.
-- KEYS: park keys (ARGV[2] of them), then one hash per window.
-- ARGV: now, n_parks, n_windows, then per window 10 values: name, limit, need, slot, live_from,
-- fixed, period_end, width, length, ttl.
-- Mirrors MemoryBuckets.acquire + plan.decide(); tests run the same cases against both.
local now = tonumber(ARGV[1])
local np = tonumber(ARGV[2])
local nw = tonumber(ARGV[3])
local parked, why = 0, ''
for i = 1, np do
  local v = redis.call('GET', KEYS[i])
  if v then
    local sep = string.find(v, '|', 1, true)
    local untilv = tonumber(string.sub(v, 1, sep - 1))
    if untilv > now and untilv > parked then parked = untilv; why = string.sub(v, sep + 1) end
  end
end
if parked > now then return {0, tostring(parked), 'parked:' .. why} end
local wake, reason = 0, ''
local fields = {}
for j = 1, nw do
  local b = 3 + (j - 1) * 10
  local name, limit, need = ARGV[b + 1], tonumber(ARGV[b + 2]), tonumber(ARGV[b + 3])
  local livefrom, fixed = tonumber(ARGV[b + 5]), ARGV[b + 6] == '1'
  local pend, width, len = tonumber(ARGV[b + 7]), tonumber(ARGV[b + 8]), tonumber(ARGV[b + 9])
  if need > limit then return {0, 'inf', 'too_large:' .. name} end
  local key = KEYS[np + j]
  local h = redis.call('HGETALL', key)
  local used, live = 0, {}
  for k = 1, #h, 2 do
    local s, a = tonumber(h[k]), tonumber(h[k + 1])
    if (fixed and s ~= livefrom) or ((not fixed) and s < livefrom) then
      redis.call('HDEL', key, h[k])
    else
      used = used + a
      live[#live + 1] = {s, a}
    end
  end
  if used + need > limit then
    local w = math.huge
    if fixed then
      w = pend
    else
      table.sort(live, function(x, y) return x[1] < y[1] end)
      local freed = 0
      for _, sa in ipairs(live) do
        freed = freed + sa[2]
        if used - freed + need <= limit then w = (sa[1] + 1) * width + len; break end
      end
    end
    if w > wake then wake = w; reason = name end
  end
end
if reason ~= '' then
  if wake == math.huge then return {0, 'inf', reason} end
  return {0, tostring(wake), reason}
end
for j = 1, nw do
  local b = 3 + (j - 1) * 10
  local key = KEYS[np + j]
  redis.call('HINCRBY', key, ARGV[b + 4], tonumber(ARGV[b + 3]))
  redis.call('EXPIRE', key, tonumber(ARGV[b + 10]))
end
return {1}
