-- Create a queued generation's metadata, unless the id is taken; name it in its group's
-- index and announce it on its group's channel. Returns 1 or 0.
-- KEYS: meta, names. ARGV: request, idle TTL, webhook flag ('d': the deployment's
-- receiver, 'u': its own webhook_url, or both; '' for none), webhook_url, the stream's
-- push channel, the publish command, this create's token, then field and value pairs to
-- set beside the request (who it is for and what it asked: generations.lifecycle.NAMED).
-- An error, with nothing written, for a name that is not a stream id (names.py): it would
-- be announced to every /v1/events connection.
-- The generation keeps its create's token ('create'): a create sent again after its reply
-- was lost (a failover, a cut connection) finds the generation it made, and answers 1.
local meta, names = KEYS[1], KEYS[2]
local id = string.match(meta, '}:(.+):meta$')
if not id or #id > 64 or not string.find(id, '^[A-Za-z0-9_%-]+$') then
  return redis.error_reply('INVALID not a stream id')
end
if redis.call('EXISTS', meta) == 1 then
  return redis.call('HGET', meta, 'create') == ARGV[7] and 1 or 0
end
local t = redis.call('TIME')
local now = tostring(t[1] * 1000 + math.floor(t[2] / 1000))
redis.call('HSET', meta, 'kind', 'generation', 'seq', 0, 'status', 'queued', 'attempt', 0,
  'created_at', now, 'updated_at', now, 'request', ARGV[1])
if ARGV[7] and ARGV[7] ~= '' then redis.call('HSET', meta, 'create', ARGV[7]) end
for i = 8, #ARGV - 1, 2 do redis.call('HSET', meta, ARGV[i], ARGV[i + 1]) end
if ARGV[3] and ARGV[3] ~= '' then
  redis.call('HSET', meta, 'webhook', ARGV[3], 'webhook_url', ARGV[4])
end
redis.call('EXPIRE', meta, tonumber(ARGV[2]))
redis.call('ZADD', names, 0, id)
if ARGV[5] and ARGV[5] ~= '' then
  local group, db = string.match(ARGV[5], '^(.-}):.+:push:(%d+)$')
  redis.call(ARGV[6], group .. ':created:' .. db, id)
end
return 1
