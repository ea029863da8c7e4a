-- Add a message to a chat's queue unless it holds ARGV[2] already.
-- ARGV: the entry (JSON), the limit, the TTL (s). Returns its position (1: next) or 0.
local queue = KEYS[1]
if redis.call('LLEN', queue) >= tonumber(ARGV[2]) then return 0 end
local n = redis.call('RPUSH', queue, ARGV[1])
redis.call('EXPIRE', queue, tonumber(ARGV[3]))
return n
