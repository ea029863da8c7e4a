-- Add a message to a chat's queue unless it holds ARGV[2] already.
-- ARGV: the entry (JSON), the limit, the TTL (s). Returns its position (1: next) or 0.
-- An entry sent again after its reply was lost (a failover, a cut connection) is the
-- queue's last already (each names a generation of its own): its position, once.
local queue = KEYS[1]
if redis.call('LINDEX', queue, -1) == ARGV[1] then return redis.call('LLEN', queue) end
if redis.call('LLEN', queue) >= tonumber(ARGV[2]) then return 0 end
local n = redis.call('RPUSH', queue, ARGV[1])
redis.call('EXPIRE', queue, tonumber(ARGV[3]))
return n
