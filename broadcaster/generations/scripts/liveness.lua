-- One worker's look at the job queues (generations/liveness.py), in one step on the node
-- that holds them: which workers died, whose jobs it takes over, and its advertisement.
-- A worker is alive while its liveness subscription (keys.alive_channel) is: a process
-- that dies closes its connections, and Redis drops the subscription at once; one that is
-- frozen keeps it, and is taken over only when its lease lapses.
-- KEYS: registry (keys.WORKERS_KEY), dead set, judge lock, scan lock, providers seen, then
--   the nq queues this worker serves, then the providers' advertisement keys.
-- ARGV: group, me, count (free slots), channel prefix, 'NUMSUB' or 'SHARDNUMSUB',
--   may judge ('1': its own subscription has lasted long enough to trust the others'
--   absence), suspect ms, lapsed ms (0: not this time), advertisement ttl ms (0: not this
--   time), judge every ms, scan every ms (0: not this time), forget ms, nq, then the
--   providers advertised.
-- A registered worker's state: 'a<ms>' subscribed; 's<ms>' its subscription gone since
-- then; 'd<ms>' still gone suspect ms later: dead. A consumer not registered (an older
-- worker, the HTTP consumer) is judged by its lease alone.
-- Returns {jobs pending in the queues, 1 if my subscription is here, suspects, dead
--   workers still holding jobs here, then queue, entry id, generation id, dead owner ('' for
--   a lapsed lease) of each job taken}.
local registry, dead_set, judge_lock, scan_lock, seen = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local group, me, count = ARGV[1], ARGV[2], tonumber(ARGV[3])
local prefix, numsub, may_judge = ARGV[4], ARGV[5], ARGV[6] == '1'
local suspect_ms, lapsed_ms, ttl = tonumber(ARGV[7]), tonumber(ARGV[8]), tonumber(ARGV[9])
local judge_every, scan_every, forget_ms = tonumber(ARGV[10]), tonumber(ARGV[11]), tonumber(ARGV[12])
local nq = tonumber(ARGV[13])
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local queues = {}
for i = 1, nq do queues[i] = KEYS[5 + i] end

-- A worker's subscriptions here; -1 when Redis will not say (an ACL without PUBSUB
-- NUMSUB): then nobody is judged, and only leases take workers over, as before.
local function subscribers(c)
  local r = redis.pcall('PUBSUB', numsub, prefix .. c)
  if type(r) ~= 'table' or r.err then return -1 end
  return tonumber(r[2])
end

local function ok(reply)
  return type(reply) == 'table' and not reply.err
end

if ttl > 0 then
  for i = 6 + nq, #KEYS do redis.call('SET', KEYS[i], '1', 'PX', ttl) end
  for i = 14, #ARGV do redis.call('HSET', seen, ARGV[i], now) end
end

-- Without its own subscription here (Redis restarted or failed over, a slot moved), this
-- worker's view of the others is no better than theirs of it: it judges nobody.
local subscribed = subscribers(me) > 0
if subscribed and ttl > 0 then
  local state = redis.call('HGET', registry, me)
  if not state or string.sub(state, 1, 1) ~= 'a' then
    redis.call('HSET', registry, me, 'a' .. now)
  end
end

local pending = 0
for _, q in ipairs(queues) do
  local p = redis.pcall('XPENDING', q, group)
  if ok(p) then pending = pending + tonumber(p[1]) end
end

local states, suspects = {}, 0
local function dead(c)
  if states[c] ~= nil then return states[c] end
  local state = redis.call('HGET', registry, c)
  local verdict = false
  if state then
    local kind, since = string.sub(state, 1, 1), tonumber(string.sub(state, 2)) or now
    if subscribers(c) ~= 0 then
      if kind ~= 'a' then redis.call('HSET', registry, c, 'a' .. now) end
    elseif kind == 'a' then
      redis.call('HSET', registry, c, 's' .. now)
      suspects = suspects + 1
    elseif kind == 's' and now - since < suspect_ms then
      suspects = suspects + 1
    else
      if kind == 's' then redis.call('HSET', registry, c, 'd' .. now) end
      verdict = true
    end
  end
  states[c] = verdict
  return verdict
end

local holders = {}
local function judge()
  for _, q in ipairs(queues) do
    local p = redis.pcall('XPENDING', q, group)
    if ok(p) and p[4] then
      for _, pair in ipairs(p[4]) do
        local c = pair[1]
        holders[c] = true
        if c ~= me and dead(c) then redis.call('SADD', dead_set, c) end
      end
    end
  end
end

-- Every registered worker, now and then: one that died holding nothing here is forgotten
-- forget ms after it was found dead.
local function scan()
  local all = redis.pcall('HKEYS', registry)
  if not ok(all) then return end
  for _, c in ipairs(all) do
    if c ~= me and not holders[c] and dead(c) then
      local since = tonumber(string.sub(redis.call('HGET', registry, c), 2)) or now
      if now - since >= forget_ms then redis.call('HDEL', registry, c) end
    end
  end
end

if subscribed and may_judge then
  if pending > 0 and redis.call('SET', judge_lock, me, 'NX', 'PX', judge_every) then judge() end
  if scan_every > 0 and redis.call('SET', scan_lock, me, 'NX', 'PX', scan_every) then scan() end
end

local found, taken, dead_left = {}, 0, 0
local function take(q, entries, owner)
  for _, e in ipairs(entries) do
    if type(e) == 'table' and type(e[2]) == 'table' then
      local f = e[2]
      for i = 1, #f, 2 do
        if f[i] == 'id' then
          found[#found + 1] = q
          found[#found + 1] = e[1]
          found[#found + 1] = f[i + 1]
          found[#found + 1] = owner
          taken = taken + 1
        end
      end
    end
  end
end

-- The jobs of the dead: this worker's share, up to its free slots.
local function take_from(c)
  local left = 0
  for _, q in ipairs(queues) do
    local want = count - taken
    if want > 0 then
      local p = redis.pcall('XPENDING', q, group, '-', '+', want, c)
      if ok(p) and #p > 0 then
        local ids = {}
        for _, e in ipairs(p) do ids[#ids + 1] = e[1] end
        take(q, redis.call('XCLAIM', q, group, me, 0, unpack(ids)), c)
      end
    end
    local rest = redis.pcall('XPENDING', q, group, '-', '+', 1, c)
    if ok(rest) and #rest > 0 then
      left = left + 1
    elseif ok(rest) then
      redis.pcall('XGROUP', 'DELCONSUMER', q, group, c)
    end
  end
  if left == 0 then redis.call('SREM', dead_set, c) else dead_left = dead_left + 1 end
end

if subscribed and count > 0 and pending > 0 then
  for _, c in ipairs(redis.call('SMEMBERS', dead_set)) do
    if subscribers(c) ~= 0 then
      -- It was only cut off for a moment (it subscribed again): not dead.
      redis.call('SREM', dead_set, c)
      redis.call('HSET', registry, c, 'a' .. now)
    elseif count > taken then
      take_from(c)
    end
  end
end

-- Jobs whose holder stopped refreshing them for a lease (frozen, cut off, or not
-- registered): the lease's takeover, as before liveness.
if lapsed_ms > 0 and pending > 0 then
  for _, q in ipairs(queues) do
    local want = count - taken
    if want <= 0 then break end
    local r = redis.pcall('XAUTOCLAIM', q, group, me, lapsed_ms, '0-0', 'COUNT', want)
    if ok(r) then take(q, r[2], '') end
  end
end

local reply = {pending, subscribed and 1 or 0, suspects, dead_left}
for _, v in ipairs(found) do reply[#reply + 1] = v end
return reply
