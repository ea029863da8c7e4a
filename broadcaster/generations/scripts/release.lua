-- Hand a generation that is not ended back (a worker stopping): it goes back to queued,
-- nobody's, and 'handbacks' counts it (a deploy, not a lost worker: no attempt counted).
local meta = KEYS[1]
local m = redis.call('HMGET', meta, 'owner', 'ended')
if m[1] ~= ARGV[1] or m[2] then return 0 end
redis.call('HDEL', meta, 'owner', 'held_at')
redis.call('HSET', meta, 'status', 'queued')
redis.call('HINCRBY', meta, 'handbacks', 1)
return 1
