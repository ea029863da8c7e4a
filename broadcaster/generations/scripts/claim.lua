-- Make ARGV[1] the only writer of a generation, unless a live worker holds it.
-- KEYS: meta. ARGV: owner, lease (ms), mode ('' or 'repair'), the claim's token (''
-- for none), then the workers the claimer found dead (generations/liveness.py).
-- One owner at a time: a running generation whose owner refreshed its hold ('held_at',
-- Redis time in ms, set here and by hold.lua) within the lease is that owner's, and the
-- claim answers HELD (a duplicate job of a live generation; never a takeover), unless
-- that owner is one of the dead. A lapsed hold, or a dead owner, is a lost worker: 'lost'
-- counts those, the budget of WORKER_MAX_ATTEMPTS.
-- 'attempt' numbers the runs (a new run after a hand-back too: its part ids must differ);
-- a run after a person's decision ('resume' set) goes on with the same number, and a
-- repair ('repair': the writer taking its own stream again after Redis lost writes)
-- counts nothing. A generation waiting for a person is nobody's to run.
-- A claim sent again with the same token (its first reply was lost: a failover, a cut
-- connection) finds itself the owner ('claim' is its token and what it decided): it
-- answers as the first did, counting nothing again, whatever the hold's age.
-- Returns {status, seq, attempt, lost, decided}: decided is 1 when this run follows a
-- person's decision ('resume' was set), so no worker was lost under it.
local meta = KEYS[1]
local owner, lease, mode, token = ARGV[1], tonumber(ARGV[2]), ARGV[3], ARGV[4]
local m = redis.call('HMGET', meta, 'kind', 'seq', 'ended', 'status', 'attempt', 'resume',
  'owner', 'held_at', 'lost', 'claim')
if m[1] ~= 'generation' then return {'NOSTREAM', 0, 0, 0} end
local seq = tonumber(m[2])
if m[3] then return {'ENDED', seq, 0, 0} end
if m[4] == 'waiting' then return {'WAITING', seq, 0, 0} end
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local attempt, lost = tonumber(m[5]) or 0, tonumber(m[9]) or 0
if mode == 'repair' then
  redis.call('HSET', meta, 'owner', owner, 'status', 'running', 'held_at', now)
  return {'OK', seq, math.max(attempt, 1), lost}
end
if token ~= '' and m[4] == 'running' and m[7] == owner and m[10]
    and string.sub(m[10], 1, -3) == token then
  redis.call('HSET', meta, 'held_at', now)
  return {'OK', seq, math.max(attempt, 1), lost, tonumber(string.sub(m[10], -1))}
end
local function dead(who)
  for i = 5, #ARGV do
    if ARGV[i] == who then return true end
  end
  return false
end
if m[4] == 'running' and m[7] then
  local held = tonumber(m[8])
  if held and now - held < lease and not dead(m[7]) then return {'HELD', seq, attempt, lost} end
  lost = redis.call('HINCRBY', meta, 'lost', 1)
end
local decided = 0
if m[6] then
  attempt = math.max(attempt, 1)
  redis.call('HDEL', meta, 'resume')
  decided = 1
else
  attempt = redis.call('HINCRBY', meta, 'attempt', 1)
end
redis.call('HSET', meta, 'owner', owner, 'status', 'running', 'held_at', now,
  'claim', token .. ':' .. decided)
return {'OK', seq, attempt, lost, decided}
