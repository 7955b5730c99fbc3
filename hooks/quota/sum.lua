-- Units counted now in many windows, in one call (the status and the metrics read every
-- bucket of the pool): returning one number per window instead of every slot of every hash
-- is what keeps a scrape cheap at a thousand buckets.
-- KEYS: window hashes. ARGV: per key, "1" (calendar: count only the slot named) or "0"
-- (rolling: count every slot at or after the one named), then that slot.
local out = {}
for i, key in ipairs(KEYS) do
  local fixed = ARGV[2 * i - 1] == "1"
  local from = ARGV[2 * i]
  local total = 0
  if fixed then
    total = tonumber(redis.call("HGET", key, from) or "0") or 0
  else
    local oldest = tonumber(from)
    local raw = redis.call("HGETALL", key)
    for j = 1, #raw, 2 do
      if tonumber(raw[j]) >= oldest then
        total = total + tonumber(raw[j + 1])
      end
    end
  end
  out[i] = total
end
return out
