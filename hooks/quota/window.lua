-- Prepended to every script that reads a window (redis.py `_script`): the clock and the window
-- arithmetic of plan.py, computed with Redis server time so no host's clock decides alone which
-- slots still count (a host running ahead would otherwise delete what others recorded).
-- A window is 10 ARGV values from `base + 1` (redis.py `_window_args`): name, limit, need, width,
-- length, fixed, then for fixed windows the calendar periods around the caller's now: previous
-- start, start, end, next end.

local function clock(caller_now, use_server)
  if use_server == '1' then
    local t = redis.call('TIME')
    return tonumber(t[1]) + tonumber(t[2]) / 1000000
  end
  return tonumber(caller_now)
end

local function num(s)
  if s == 'inf' then return math.huge end
  return tonumber(s)
end

local function fmt(x)
  if x == math.huge then return 'inf' end
  return string.format('%.17g', x)
end

-- The window at ARGV[base + 1 ..] as a table: name, limit, need, width, len, fixed, and for `now`
-- its slot, live_from (rolling: oldest counted slot; fixed: the only one), period_end and ttl.
-- nil when `now` lies outside the periods the caller sent (its clock is off by over a day).
local function window(base, now)
  local w = {
    name = ARGV[base + 1], limit = tonumber(ARGV[base + 2]), need = tonumber(ARGV[base + 3]),
    width = tonumber(ARGV[base + 4]), len = tonumber(ARGV[base + 5]), fixed = ARGV[base + 6] == '1',
  }
  if not w.fixed then
    w.slot = math.floor(now / w.width)
    w.live_from = math.floor((now - w.len) / w.width)
    w.period_end = 0
    w.ttl = w.len + 2 * w.width
    return w
  end
  for i = 1, 3 do
    local from, to = tonumber(ARGV[base + 6 + i]), tonumber(ARGV[base + 7 + i])
    if now >= from and now < to then
      w.slot, w.live_from, w.period_end = from, from, to
      w.ttl = math.floor(to - now) + 60
      return w
    end
  end
  return nil
end

-- Live (slot, amount) pairs of the window's hash and their sum; dead slots are deleted.
local function live(key, w)
  local h = redis.call('HGETALL', key)
  local used, pairs_ = 0, {}
  for k = 1, #h, 2 do
    local s, a = tonumber(h[k]), tonumber(h[k + 1])
    if (w.fixed and s ~= w.live_from) or ((not w.fixed) and s < w.live_from) then
      redis.call('HDEL', key, h[k])
    else
      used = used + a
      pairs_[#pairs_ + 1] = {s, a}
    end
  end
  return used, pairs_
end

local function clock_error()
  return redis.error_reply('keypool: this host clock differs from Redis server time by more than a day')
end
