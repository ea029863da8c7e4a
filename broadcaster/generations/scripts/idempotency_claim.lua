-- Claim an idempotency key for a request, or say what holds it.
-- KEYS[1]: the key's hash (keys.idempotency_key).
-- ARGV: the body's hash, a token naming this claim, the claim's TTL while pending (ms).
-- Returns {'claimed'}; {'mismatch'} when the key was used with another body; {'pending'}
-- while the first request is handled; {'done', answer} once it answered. The same claim
-- sent again (its token: its reply was lost to a failover or a cut connection) is
-- {'claimed'} again while pending: the request it made goes on.
local key = KEYS[1]
local found = redis.call('HMGET', key, 'body', 'state', 'answer', 'token')
if not found[1] then
  redis.call('HSET', key, 'body', ARGV[1], 'state', 'pending', 'token', ARGV[2])
  redis.call('PEXPIRE', key, tonumber(ARGV[3]))
  return {'claimed'}
end
if found[1] ~= ARGV[1] then return {'mismatch'} end
if found[2] ~= 'done' then
  if found[4] == ARGV[2] then return {'claimed'} end
  return {'pending'}
end
return {'done', found[3]}
