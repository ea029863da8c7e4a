-- A fork is gone: forget it in its source, and if the source was soft-deleted and this
-- was its last fork, delete the source too (its own source is then the caller's next).
-- KEYS: source log, meta, producers, forks. ARGV: the forks gone (usually one).
-- Returns the source's own fork source when it was deleted, else ''.
local log, meta, producers, forks = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
for i = 1, #ARGV do redis.call('SREM', forks, ARGV[i]) end
local m = redis.call('HMGET', meta, 'deleted', 'fsrc')
if m[1] and redis.call('SCARD', forks) == 0 then
  redis.call('DEL', log, meta, producers, forks)
  return m[2] or ''
end
return false
