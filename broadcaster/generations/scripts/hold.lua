-- Refresh ARGV[1]'s hold on a running generation it owns: 'held_at' is now (Redis time,
-- ms). A claim within the lease of it finds the generation held. Returns 1, or 0 when
-- ARGV[1] no longer owns it.
local meta = KEYS[1]
if redis.call('HGET', meta, 'owner') ~= ARGV[1] then return 0 end
local t = redis.call('TIME')
redis.call('HSET', meta, 'held_at', t[1] * 1000 + math.floor(t[2] / 1000))
return 1
