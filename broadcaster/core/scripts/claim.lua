-- Make ARGV[1] the only writer of a generation and count the attempt.
-- Returns {status, seq, attempt}.
local meta = KEYS[1]
local m = redis.call('HMGET', meta, 'kind', 'seq', 'ended')
if m[1] ~= 'generation' then return {'NOSTREAM', 0, 0} end
if m[3] then return {'ENDED', tonumber(m[2]), 0} end
local attempt = redis.call('HINCRBY', meta, 'attempt', 1)
redis.call('HSET', meta, 'owner', ARGV[1], 'status', 'running')
return {'OK', tonumber(m[2]), attempt}
