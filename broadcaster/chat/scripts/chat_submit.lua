-- Make a generation the chat's latest, unless another submit got there first: the chat's
-- generation must still be the one the caller saw (ARGV[1], "" for none).
-- ARGV: seen generation, new generation, assistant message id, messages JSON, TTL (s).
-- Returns 1, or 0 when the chat's generation changed meanwhile.
local chat = KEYS[1]
local current = redis.call('HGET', chat, 'generation') or ''
if current ~= ARGV[1] then return 0 end
redis.call('HSET', chat, 'generation', ARGV[2], 'message_id', ARGV[3], 'messages', ARGV[4])
redis.call('EXPIRE', chat, tonumber(ARGV[5]))
return 1
