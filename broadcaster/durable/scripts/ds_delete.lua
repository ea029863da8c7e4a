-- Delete a Durable Stream: at once if nothing was forked from it, else soft (it answers
-- 410 and keeps its data, which forks still being made read, until its last fork goes).
-- KEYS: log, meta, producers, forks. ARGV: channel, publish command, then names of forks
-- found gone (expired) to forget first.
-- Returns {status, fork source}: DELETED, SOFT, NOSTREAM, READONLY, GONE.
local log, meta, producers, forks = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local m = redis.call('HMGET', meta, 'kind', 'deleted', 'pending', 'fsrc', 'seq', 'tag')
if not m[1] or m[3] then return {'NOSTREAM', ''} end
if m[1] ~= 'ds' then return {'READONLY', ''} end
if m[2] then return {'GONE', ''} end
for i = 3, #ARGV do redis.call('SREM', forks, ARGV[i]) end
-- Live readers are told (flag X): their responses end, and they learn 404 or 410.
if ARGV[1] ~= '' then
  redis.call(ARGV[2], ARGV[1], string.format('%d %d %s X\n', tonumber(m[5]) + 1,
    tonumber(m[5]), m[6] or ''))
end
if redis.call('SCARD', forks) > 0 then
  redis.call('HSET', meta, 'deleted', '1')
  return {'SOFT', ''}
end
redis.call('DEL', log, meta, producers, forks)
return {'DELETED', m[4] or ''}
