-- Settle a claimed idempotency key: record the answer (ARGV[2] non-empty) for the key's
-- TTL, or drop the claim (ARGV[2] empty: the request failed, a retry runs again). Only
-- the claim's own token may (a claim that lapsed and was taken again is not ours).
-- KEYS[1]: the key's hash. ARGV: the claim's token, the answer (JSON or ""), TTL (s).
-- Returns 1, or 0 when the claim is no longer ours.
local key = KEYS[1]
if redis.call('HGET', key, 'token') ~= ARGV[1] then return 0 end
if ARGV[2] == '' then
  redis.call('DEL', key)
  return 1
end
redis.call('HSET', key, 'state', 'done', 'answer', ARGV[2])
redis.call('EXPIRE', key, tonumber(ARGV[3]))
return 1
