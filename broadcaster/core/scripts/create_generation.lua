-- Create a queued generation's metadata, unless the id is taken. Returns 1 or 0.
-- ARGV: request, idle TTL, webhook flag ('d': the deployment's receiver, 'u': its own
-- webhook_url, or both; '' for none), webhook_url.
local meta = KEYS[1]
if redis.call('EXISTS', meta) == 1 then return 0 end
local t = redis.call('TIME')
local now = tostring(t[1] * 1000 + math.floor(t[2] / 1000))
redis.call('HSET', meta, 'kind', 'generation', 'seq', 0, 'status', 'queued', 'attempt', 0,
  'created_at', now, 'updated_at', now, 'request', ARGV[1])
if ARGV[3] and ARGV[3] ~= '' then
  redis.call('HSET', meta, 'webhook', ARGV[3], 'webhook_url', ARGV[4])
end
redis.call('EXPIRE', meta, tonumber(ARGV[2]))
return 1
