-- Make ARGV[1] the only writer of a generation and count the attempt.
-- A generation waiting for a person is nobody's to run (its job was settled); one whose
-- wait was just decided ('resume' set) goes on without counting an attempt: a decision
-- is no lost worker. Returns {status, seq, attempt}.
local meta = KEYS[1]
local m = redis.call('HMGET', meta, 'kind', 'seq', 'ended', 'status', 'attempt', 'resume')
if m[1] ~= 'generation' then return {'NOSTREAM', 0, 0} end
if m[3] then return {'ENDED', tonumber(m[2]), 0} end
if m[4] == 'waiting' then return {'WAITING', tonumber(m[2]), 0} end
local attempt
if m[6] then
  attempt = tonumber(m[5]) or 1
  redis.call('HDEL', meta, 'resume')
else
  attempt = redis.call('HINCRBY', meta, 'attempt', 1)
end
redis.call('HSET', meta, 'owner', ARGV[1], 'status', 'running')
return {'OK', tonumber(m[2]), attempt}
