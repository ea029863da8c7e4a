-- Give up ownership of a generation that is not ended; it goes back to queued.
local meta = KEYS[1]
local m = redis.call('HMGET', meta, 'owner', 'ended')
if m[1] ~= ARGV[1] or m[2] then return 0 end
redis.call('HDEL', meta, 'owner')
redis.call('HSET', meta, 'status', 'queued')
return 1
